#!/usr/bin/env python3
"""Side-by-side load benchmark: origin-gate vs nginx, HAProxy and Caddy in front of one backend.

Everything runs on loopback. Each server is configured as an experienced operator would
(nginx: worker_processes auto, upstream keepalive, proxy_http_version 1.1; HAProxy: nbthread 2,
http-reuse; Caddy: reverse_proxy) with access logs on for all. Rounds are interleaved
(A B C D, then B C D A, ...) and bounded in time; medians are reported with the ratio to nginx.

Usage: benches/load/run.sh [--rounds N] [--seconds S]   (run.sh installs the packages first)
"""
import argparse
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WORK = Path("/tmp/origin-gate-load")
BACKEND = 19080
SERVERS = {
    # name: (http port, https port)
    "direct": (BACKEND, None),
    "origin-gate": (19084, 19444),
    "nginx": (19081, 19441),
    "haproxy": (19082, 19442),
    "caddy": (19083, 19443),
}
ALL_SERVERS = dict(SERVERS)
CLK_TCK = os.sysconf("SC_CLK_TCK")
BASE_BINARY = None


def sh(cmd, **kw):
    return subprocess.run(cmd, shell=True, check=True, **kw)


def wait_port(port, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listening on {port}")


def write_files():
    WORK.mkdir(parents=True, exist_ok=True)
    www = WORK / "www"
    www.mkdir(exist_ok=True)
    (www / "1k").write_bytes(b"x" * 1024)
    (www / "1m").write_bytes(b"y" * (1 << 20))
    sh(f"openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 -subj /CN=localhost "
       f"-addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout {WORK}/key.pem -out {WORK}/cert.pem 2>/dev/null")
    (WORK / "haproxy.pem").write_text((WORK / "cert.pem").read_text() + (WORK / "key.pem").read_text())
    (WORK / "backend.conf").write_text(f"""
worker_processes 1;
pid {WORK}/backend.pid;
error_log {WORK}/backend-error.log;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 300s;
  server {{
    listen 127.0.0.1:{BACKEND} backlog=4096;
    root {www};
    location /upload {{ client_max_body_size 0; proxy_request_buffering off; return 200 "ok\\n"; }}
  }}
}}
""")
    (WORK / "nginx.conf").write_text(f"""
worker_processes auto;
pid {WORK}/nginx.pid;
error_log {WORK}/nginx-error.log;
events {{ worker_connections 8192; }}
http {{
  access_log {WORK}/nginx-access.log combined buffer=64k flush=1s;
  keepalive_requests 1000000;
  upstream backend {{ server 127.0.0.1:{BACKEND}; keepalive 256; }}
  server {{
    listen 127.0.0.1:{ALL_SERVERS['nginx'][0]} backlog=4096;
    listen 127.0.0.1:{ALL_SERVERS['nginx'][1]} ssl http2 backlog=4096;
    ssl_certificate {WORK}/cert.pem;
    ssl_certificate_key {WORK}/key.pem;
    client_max_body_size 0;
    location / {{
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $remote_addr;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_request_buffering off;
    }}
  }}
}}
""")
    (WORK / "haproxy.cfg").write_text(f"""
global
  nbthread 2
  maxconn 8000
  log stdout format raw local0
defaults
  mode http
  log global
  option httplog
  option http-keep-alive
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend fe
  bind 127.0.0.1:{ALL_SERVERS['haproxy'][0]}
  bind 127.0.0.1:{ALL_SERVERS['haproxy'][1]} ssl crt {WORK}/haproxy.pem alpn h2,http/1.1
  option forwardfor
  default_backend be
backend be
  http-reuse always
  server s1 127.0.0.1:{BACKEND}
""")
    (WORK / "Caddyfile").write_text(f"""{{
  admin off
  auto_https off
}}
http://127.0.0.1:{ALL_SERVERS['caddy'][0]} {{
  bind 127.0.0.1
  reverse_proxy 127.0.0.1:{BACKEND}
  log {{
    output file {WORK}/caddy-access.log
  }}
}}
https://127.0.0.1:{ALL_SERVERS['caddy'][1]} {{
  bind 127.0.0.1
  tls {WORK}/cert.pem {WORK}/key.pem
  reverse_proxy 127.0.0.1:{BACKEND}
  log {{
    output file {WORK}/caddy-access.log
  }}
}}
""")
    for name in ("origin-gate", "origin-gate-base"):
        if name in SERVERS:
            write_origin_gate_config(name)


def write_origin_gate_config(name):
    """The same configuration for the build under test and for `--base` (its own ports, log)."""
    http, https = SERVERS[name]
    (WORK / f"{name}.toml").write_text(f"""
[listen]
http = ["127.0.0.1:{http}"]
https = ["127.0.0.1:{https}"]
[backend]
url = "http://127.0.0.1:{BACKEND}"
# The same bound as nginx's `keepalive 256` above (the default, 64, suits a php-fpm backend;
# 256 visitors' requests in flight would otherwise open backend connections per request).
max_idle_connections = 256
[log]
level = "warn"
access = "json"
access_file = "{WORK}/{name}-access.log"
[limits]
header_read_timeout = "300s"
[[tls.certs]]
cert = "{WORK}/cert.pem"
key = "{WORK}/key.pem"
""")


PROCS = {}


def start_all(binary):
    logs = open(WORK / "daemons.log", "ab")
    cmds = {
        "backend": f"nginx -c {WORK}/backend.conf -g 'daemon off;'",
        "nginx": f"nginx -c {WORK}/nginx.conf -g 'daemon off;'",
        "haproxy": f"haproxy -db -f {WORK}/haproxy.cfg > {WORK}/haproxy-access.log",
        "caddy": f"caddy run --config {WORK}/Caddyfile --adapter caddyfile",
        "origin-gate": f"{binary} --config {WORK}/origin-gate.toml",
    }
    if "origin-gate-base" in SERVERS:
        cmds["origin-gate-base"] = f"{BASE_BINARY} --config {WORK}/origin-gate-base.toml"
    cmds = {n: c for n, c in cmds.items() if n == "backend" or n in SERVERS}
    for name, cmd in cmds.items():
        PROCS[name] = subprocess.Popen(cmd, shell=True, stdout=logs, stderr=logs, start_new_session=True)
    for name, (http, https) in SERVERS.items():
        wait_port(http)
        if https:
            wait_port(https)


def stop_all():
    for p in PROCS.values():
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    for p in PROCS.values():
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)


def pids_of(name):
    """All processes in the server's session (nginx master + workers, the shell wrapper …)."""
    key = "backend" if name == "direct" else name
    sid = PROCS[key].pid
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if os.getsid(int(d.name)) == sid:
                    out.append(int(d.name))
            except OSError:
                pass
    return out


def cpu_seconds(pids):
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total / CLK_TCK


def rss_mib(pids):
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def to_ms(text):
    m = re.match(r"([\d.]+)(us|ms|s|m)$", text)
    if not m:
        return None
    v, unit = float(m.group(1)), m.group(2)
    return {"us": v / 1000, "ms": v, "s": v * 1000, "m": v * 60_000}[unit]


def run_wrk(port, path, conns, seconds):
    out = subprocess.run(
        ["wrk", "-t2", f"-c{conns}", f"-d{seconds}s", "--latency", f"http://127.0.0.1:{port}{path}"],
        capture_output=True, text=True, timeout=seconds + 30).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    p50 = to_ms(re.search(r"50%\s+(\S+)", out).group(1))
    p99 = to_ms(re.search(r"99%\s+(\S+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "requests": total, "p50": p50, "p99": p99, "errors": int(errors.group(1)) if errors else 0}


def run_h2load(port, seconds):
    out = subprocess.run(
        ["h2load", "-c32", "-m8", "-t2", "-D", str(seconds), f"https://127.0.0.1:{port}/1k"],
        capture_output=True, text=True, timeout=seconds + 30).stdout
    m = re.search(r"finished in [\d.]+\w*, ([\d.]+) req/s", out)
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded", out)
    return {"rps": float(m.group(1)) if m else 0.0, "requests": int(done.group(2)) if done else 0}


def run_handshakes(port):
    """New TLS connections per second: 2000 clients, one request each."""
    out = subprocess.run(
        ["h2load", "-n2000", "-c2000", "-t2", "--h1", f"https://127.0.0.1:{port}/1k"],
        capture_output=True, text=True, timeout=120).stdout
    m = re.search(r"finished in ([\d.]+)(ms|s)", out)
    if not m:
        return 0.0
    secs = float(m.group(1)) / (1000 if m.group(2) == "ms" else 1)
    return 2000 / secs if secs else 0.0


def _keepalive_conn(port):
    s = socket.create_connection(("127.0.0.1", port))
    s.settimeout(5)
    s.sendall(f"GET /1k HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
    got = b""
    while b"\r\n\r\n" not in got or len(got) < 1024:
        chunk = s.recv(65536)
        if not chunk:
            break
        got += chunk
    return s


def _marginal(name, open_one, conns, first=200):
    """RSS per connection at the margin: `first` connections are opened (and kept) before the
    measurement starts, so one-time costs (backend pool, TLS client set-up, allocator heaps) are
    not divided among the measured ones."""
    pids = pids_of(name)
    held = [open_one() for _ in range(first)]
    time.sleep(0.5)
    before = rss_mib(pids)
    held += [open_one() for _ in range(conns)]
    time.sleep(1.0)
    after = rss_mib(pids)
    for s in held:
        s.close()
    return (after - before) * 1024 / conns


def idle_memory(name, port, conns=2000):
    """Memory per idle keep-alive connection: each connection makes one request, reads the whole
    response and stays open. Requests go one at a time, so what is measured is what an idle
    connection keeps, not the peak of a burst of concurrent requests."""
    return _marginal(name, lambda: _keepalive_conn(port), conns)


def silent_memory(name, port, conns=2000):
    """Memory per TCP connection that is accepted and then never sends a byte."""
    return _marginal(name, lambda: socket.create_connection(("127.0.0.1", port)), conns)


def peak_1m(name, port, conns=256, seconds=5):
    """Peak RSS (all the server's processes) while `conns` clients download 1 MiB responses."""
    import threading
    pids = pids_of(name)
    peak = {"mib": rss_mib(pids)}
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak["mib"] = max(peak["mib"], rss_mib(pids))
            time.sleep(0.05)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    try:
        res = run_wrk(port, "/1m", conns, seconds)
    finally:
        done.set()
        t.join(timeout=5)
    return {"peak_mib": peak["mib"], "rps": res["rps"]}


def memory_only(binary):
    """The connection-memory cells beside nginx, without the throughput rounds. Every cell runs on
    freshly started servers with no warm-up, so no earlier traffic's freed memory can hide a
    cell's growth."""
    write_files()
    global SERVERS
    SERVERS = {n: v for n, v in SERVERS.items() if n in ("direct", "origin-gate", "nginx")}
    cells = [("idle_keepalive_kib", idle_memory), ("silent_kib", silent_memory), ("peak_1m_256", peak_1m)]
    out = {"origin-gate": {}, "nginx": {}}
    for key, cell in cells:
        start_all(binary)
        try:
            for n in ("origin-gate", "nginx"):
                out[n][key] = cell(n, SERVERS[n][0])
        finally:
            stop_all()
    print()
    print(f"Date: {time.strftime('%Y-%m-%d')}; machine: {os.cpu_count()} cores; fresh servers per cell, one run")
    print()
    print("| cell | origin-gate | nginx | ratio |")
    print("| --- | ---: | ---: | ---: |")
    og, ng = out["origin-gate"], out["nginx"]
    print(f"| 2000 idle keep-alive connections, RSS KiB per connection | {og['idle_keepalive_kib']:.2f} | {ng['idle_keepalive_kib']:.2f} | – |")
    print(f"| 2000 silent connections, RSS KiB per connection | {og['silent_kib']:.2f} | {ng['silent_kib']:.2f} | – |")
    print(f"| peak RSS MiB, 256 concurrent 1 MiB responses | {og['peak_1m_256']['peak_mib']:.0f} | {ng['peak_1m_256']['peak_mib']:.0f} | {og['peak_1m_256']['peak_mib'] / ng['peak_1m_256']['peak_mib']:.2f}x |")
    print(f"| req/s in that cell | {og['peak_1m_256']['rps']:.0f} | {ng['peak_1m_256']['rps']:.0f} | {og['peak_1m_256']['rps'] / ng['peak_1m_256']['rps']:.2f}x |")
    Path(WORK / "memory.json").write_text(json.dumps(out, indent=1))


def upload_memory(binary, size=1 << 30):
    """Peak RSS growth of a fresh origin-gate while a 1 GiB chunked upload streams through it to
    a backend that reads and discards the body."""
    import threading
    sink = socket.socket()
    sink.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sink.bind(("127.0.0.1", 0))
    sink.listen(8)
    sink_port = sink.getsockname()[1]
    received = {"bytes": 0}

    def serve():
        conn, _ = sink.accept()
        f = conn.makefile("rb", buffering=1 << 20)
        while f.readline() not in (b"\r\n", b""):
            pass  # request head
        while True:  # chunked body
            line = f.readline()
            n = int(line.split(b";")[0].strip() or b"0", 16)
            if n == 0:
                f.readline()
                break
            left = n
            while left:
                got = len(f.read(min(left, 1 << 20)))
                if not got:
                    return
                left -= got
                received["bytes"] += got
            f.readline()
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n")
        conn.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    cfg = WORK / "upload.toml"
    cfg.write_text(f'[listen]\nhttp = ["127.0.0.1:19090"]\nhttps = []\n[backend]\nurl = "http://127.0.0.1:{sink_port}"\n[log]\naccess = "off"\n')
    p = subprocess.Popen([binary, "--config", str(cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(19090)
        base = rss_mib([p.pid])
        sh(f"head -c {size} /dev/zero | curl -s -o /dev/null -T - -H 'Transfer-Encoding: chunked' http://127.0.0.1:19090/upload")
        t.join(timeout=120)
        hwm = 0
        for line in Path(f"/proc/{p.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) / 1024
        return received["bytes"], hwm - base
    finally:
        p.terminate()
        p.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--binary", default=str(ROOT / "target/release/origin-gate"))
    ap.add_argument("--json", default=str(WORK / "results.json"))
    ap.add_argument("--only", choices=["memory"], help="run only the connection-memory cells (origin-gate beside nginx)")
    ap.add_argument("--no-idle", action="store_true", help="skip the idle-connection memory cell")
    ap.add_argument("--no-upload", action="store_true", help="skip the 1 GiB upload cell")
    ap.add_argument("--servers", help="comma-separated subset of the servers, e.g. origin-gate,nginx "
                    "(nginx stays in: it is the ratio's base)")
    ap.add_argument("--base", metavar="BINARY", help="also run this origin-gate build (e.g. main's) as "
                    "origin-gate-base, interleaved with the build under test: before/after in one run")
    args = ap.parse_args()
    global SERVERS, BASE_BINARY
    if args.servers:
        keep = set(args.servers.split(",")) | {"nginx"}
        unknown = keep - set(SERVERS)
        if unknown:
            raise SystemExit(f"--servers: unknown {', '.join(sorted(unknown))}; known: {', '.join(SERVERS)}")
        SERVERS = {n: v for n, v in SERVERS.items() if n in keep}
    if args.base:
        BASE_BINARY = args.base
        SERVERS["origin-gate-base"] = (19085, 19445)
    if args.only == "memory":
        memory_only(args.binary)
        return
    write_files()
    start_all(args.binary)
    names = [n for n in SERVERS]
    scenarios = [("1 KiB, 64 conns", "/1k", 64), ("1 KiB, 256 conns", "/1k", 256), ("1 MiB, 64 conns", "/1m", 64)]
    results = {}
    try:
        # Warm up every path once.
        for n in names:
            run_wrk(SERVERS[n][0], "/1k", 16, 1)
        for r in range(args.rounds):
            order = names[r % len(names):] + names[:r % len(names)]
            for label, path, conns in scenarios:
                for n in order:
                    pids = pids_of(n)
                    cpu0 = cpu_seconds(pids)
                    res = run_wrk(SERVERS[n][0], path, conns, args.seconds)
                    res["cpu_per_10k"] = (cpu_seconds(pids) - cpu0) / max(res["requests"], 1) * 10_000
                    res["rss"] = rss_mib(pids)
                    results.setdefault(label, {}).setdefault(n, []).append(res)
                    print(f"round {r + 1} {label:18} {n:16} {res['rps']:>10.0f} req/s  p99 {res['p99'] or float('nan'):.2f} ms  "
                          f"cpu/10k {res['cpu_per_10k']:.3f} s  rss {res['rss']:.0f} MiB", flush=True)
            for n in order:
                if SERVERS[n][1]:
                    pids = pids_of(n)
                    cpu0 = cpu_seconds(pids)
                    res = run_h2load(SERVERS[n][1], args.seconds)
                    res["cpu_per_10k"] = (cpu_seconds(pids) - cpu0) / max(res["requests"], 1) * 10_000
                    res["rss"] = rss_mib(pids)
                    res["handshakes"] = run_handshakes(SERVERS[n][1])
                    results.setdefault("HTTP/2 over TLS, 32 conns x 8 streams", {}).setdefault(n, []).append(res)
                    print(f"round {r + 1} {'h2 TLS':18} {n:12} {res['rps']:>10.0f} req/s  handshakes {res['handshakes']:.0f}/s", flush=True)
        idle = {n: idle_memory(n, SERVERS[n][0]) for n in names if n != "direct" and not args.no_idle}
    finally:
        stop_all()
    up_bytes, up_growth = (0, float("nan")) if args.no_upload else upload_memory(args.binary)
    Path(args.json).write_text(json.dumps({"results": results, "idle_kib_per_conn": idle, "upload_growth_mib": up_growth}, indent=1))
    print_table(results, idle)
    print(f"1 GiB chunked upload through origin-gate: {up_bytes} bytes reached the backend, peak RSS growth {up_growth:.1f} MiB")


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else float("nan")


def print_table(results, idle):
    print()
    print(f"Date: {time.strftime('%Y-%m-%d')}; machine: {os.cpu_count()} cores, {os.uname().release}; medians of the rounds; ratio = / nginx")
    print()
    print("| scenario | server | req/s | ratio | p50 ms | p99 ms | CPU s / 10k req | ratio | RSS MiB | TLS handshakes/s |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for label, by in results.items():
        base = {k: med([r.get(k) for r in by.get("nginx", [])]) for k in ("rps", "cpu_per_10k")}
        for n, runs in by.items():
            rps = med([r["rps"] for r in runs])
            cpu = med([r.get("cpu_per_10k") for r in runs])
            p50 = med([r.get("p50") for r in runs])
            p99 = med([r.get("p99") for r in runs])
            rss = med([r.get("rss") for r in runs])
            hs = med([r.get("handshakes") for r in runs])
            fmt = lambda v, f: "–" if v != v else f.format(v)  # NaN → –
            print(f"| {label} | {n} | {rps:.0f} | {rps / base['rps']:.2f}x | {fmt(p50, '{:.2f}')} | {fmt(p99, '{:.2f}')} | "
                  f"{cpu:.3f} | {cpu / base['cpu_per_10k']:.2f}x | {rss:.0f} | {fmt(hs, '{:.0f}')} |")
    print()
    print("Idle keep-alive connections (2000): memory per connection, KiB: " +
          ", ".join(f"{n} {v:.1f}" for n, v in idle.items()))


if __name__ == "__main__":
    main()
