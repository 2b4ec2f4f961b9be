#!/bin/sh
# certbot deploy hook: copy a renewed certificate and its key to where origin-gate reads them, then
# tell origin-gate to re-read them now (it also re-reads them every tls.reload_interval, 30 s).
#
# Why a copy: certbot's /etc/letsencrypt/live/<name>/*.pem are symlinks into archive/<name>/, both
# directories are created 0700 and privkey.pem is 0600 root. A service running as the origin-gate
# user, or a container running as uid 10001 that mounts only live/<name>, can neither follow nor
# read them. (The alternative for systemd, chgrp/chmod on live/ and archive/, is in
# origin-gate.service.)
#
#   install -m 0755 deploy/systemd/certbot-deploy-hook.sh /etc/letsencrypt/renewal-hooks/deploy/origin-gate
#
# certbot runs executables in renewal-hooks/deploy after every successful `certbot renew`; for the
# first `certbot certonly`, pass --deploy-hook /etc/letsencrypt/renewal-hooks/deploy/origin-gate.
# Each certificate lands in $ORIGIN_GATE_CERT_DIR/<name>/{fullchain,privkey}.pem:
#   cert = "/etc/origin-gate/certs/example.com/fullchain.pem"
#   key  = "/etc/origin-gate/certs/example.com/privkey.pem"
#
# Settings (edit the defaults below, or set them in the environment certbot runs in):
#   ORIGIN_GATE_CERT_DIR  where the copies go                     (default /etc/origin-gate/certs)
#   ORIGIN_GATE_GROUP     the group that may read the key: origin-gate for the systemd unit,
#                         10001 for the container image             (default origin-gate)
#   ORIGIN_GATE_RELOAD    how to make origin-gate re-read them now  (default systemctl reload
#                         origin-gate; for Docker Compose e.g. "docker kill --signal=HUP <container>")
set -eu

cert_dir="${ORIGIN_GATE_CERT_DIR:-/etc/origin-gate/certs}"
group="${ORIGIN_GATE_GROUP:-origin-gate}"
reload="${ORIGIN_GATE_RELOAD:-systemctl reload origin-gate}"

: "${RENEWED_LINEAGE:?not set: run this as a certbot --deploy-hook}"
name=$(basename "$RENEWED_LINEAGE")
dest="$cert_dir/$name"

install -d -m 0755 "$cert_dir"
install -d -m 0750 -o root -g "$group" "$dest"

# New files first, then rename over the old ones: origin-gate never reads a half-written file. A
# reload that happens to see the new certificate with the old key refuses the pair and keeps
# serving the old one; the reload below reads both new files.
umask 077
cp -L "$RENEWED_LINEAGE/privkey.pem" "$dest/.privkey.pem.new"
cp -L "$RENEWED_LINEAGE/fullchain.pem" "$dest/.fullchain.pem.new"
chgrp "$group" "$dest/.privkey.pem.new" "$dest/.fullchain.pem.new"
chmod 0640 "$dest/.privkey.pem.new"
chmod 0644 "$dest/.fullchain.pem.new"
mv -f "$dest/.privkey.pem.new" "$dest/privkey.pem"
mv -f "$dest/.fullchain.pem.new" "$dest/fullchain.pem"

# A failed reload is not a failed renewal: origin-gate picks the files up on its own.
sh -c "$reload" || echo "origin-gate: '$reload' failed; the new certificate is read within tls.reload_interval anyway" >&2
