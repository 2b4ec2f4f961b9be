//! The deployment recipes in deploy/ say what they do: each test reads a shipped file (the
//! Kubernetes manifest and the compose file through a YAML parser, the Dockerfile and the systemd
//! unit line by line) and checks one property whose absence broke a real deployment. That the
//! embedded origin-gate configurations parse is `tests/binary.rs`'s job.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::path::Path;

use yaml_rust2::{Yaml, YamlLoader};

const MANIFEST: &str = "deploy/kubernetes/wordpress-origin-gate.yaml";
const COMPOSE: &str = "deploy/docker/docker-compose.yml";
const DOCKERFILE: &str = "deploy/docker/Dockerfile";
const UNIT: &str = "deploy/systemd/origin-gate.service";

fn read(relative: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn yaml_documents(relative: &str) -> Vec<Yaml> {
    YamlLoader::load_from_str(&read(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

/// The one document of `kind` (and `name`, when given) in the manifest.
fn manifest_object<'a>(docs: &'a [Yaml], kind: &str, name: Option<&str>) -> &'a Yaml {
    let found: Vec<&Yaml> = docs
        .iter()
        .filter(|d| d["kind"].as_str() == Some(kind))
        .filter(|d| name.is_none_or(|n| d["metadata"]["name"].as_str() == Some(n)))
        .collect();
    assert_eq!(found.len(), 1, "{MANIFEST}: expected one {kind} {name:?}");
    found[0]
}

fn deployment(docs: &[Yaml]) -> &Yaml {
    manifest_object(docs, "Deployment", None)
}

fn container<'a>(deployment: &'a Yaml, name: &str) -> &'a Yaml {
    deployment["spec"]["template"]["spec"]["containers"]
        .as_vec()
        .expect("containers")
        .iter()
        .find(|c| c["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("{MANIFEST}: no container {name}"))
}

/// The container's setting, else the pod's (Kubernetes' own precedence).
fn security_setting<'a>(deployment: &'a Yaml, container: &'a Yaml, key: &str) -> &'a Yaml {
    let own = &container["securityContext"][key];
    if own.is_badvalue() {
        &deployment["spec"]["template"]["spec"]["securityContext"][key]
    } else {
        own
    }
}

fn container_port(container: &Yaml, name: &str) -> i64 {
    container["ports"]
        .as_vec()
        .expect("ports")
        .iter()
        .find(|p| p["name"].as_str() == Some(name))
        .and_then(|p| p["containerPort"].as_i64())
        .unwrap_or_else(|| panic!("no container port named {name}"))
}

fn env_names(container: &Yaml) -> Vec<String> {
    container["env"]
        .as_vec()
        .map(|env| {
            env.iter()
                .filter_map(|e| e["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn origin_gate_runs_as_a_numeric_non_root_user_the_kubelet_can_verify() {
    // runAsNonRoot with a named USER is refused at container start ("image has non-numeric
    // user ..., cannot verify user is non-root").
    let docs = yaml_documents(MANIFEST);
    let deployment = deployment(&docs);
    let gate = container(deployment, "origin-gate");
    assert_eq!(
        security_setting(deployment, gate, "runAsNonRoot").as_bool(),
        Some(true)
    );
    let uid = security_setting(deployment, gate, "runAsUser").as_i64();
    assert_eq!(
        uid,
        Some(10001),
        "runAsUser must be set, numeric and non-zero"
    );

    let dockerfile = read(DOCKERFILE);
    let users: Vec<&str> = dockerfile
        .lines()
        .filter_map(|l| l.trim().strip_prefix("USER "))
        .collect();
    assert_eq!(users.len(), 1, "{DOCKERFILE}: one USER line");
    let user = users[0].split(':').next().unwrap().trim();
    assert_eq!(user, "10001", "{DOCKERFILE}: USER must be numeric");
    assert!(
        dockerfile.contains("--uid 10001"),
        "{DOCKERFILE}: the user with uid 10001 must exist in the image"
    );
}

#[test]
fn the_service_keeps_cloudflares_source_address() {
    // With the default externalTrafficPolicy (Cluster) the pod sees a node address, trusts no
    // Cloudflare header and loops (Flexible) or refuses (lockdown).
    let docs = yaml_documents(MANIFEST);
    let service = manifest_object(&docs, "Service", None);
    let kind = service["spec"]["type"].as_str().unwrap_or("ClusterIP");
    assert!(
        matches!(kind, "LoadBalancer" | "NodePort"),
        "the Service is reached from outside, got type {kind}"
    );
    assert_eq!(
        service["spec"]["externalTrafficPolicy"].as_str(),
        Some("Local")
    );
    // And it targets origin-gate, never WordPress.
    for port in service["spec"]["ports"].as_vec().unwrap() {
        let target = port["targetPort"].as_str().unwrap();
        assert!(matches!(target, "http" | "https"), "targetPort {target}");
    }
}

#[test]
fn a_network_policy_admits_only_origin_gates_listeners() {
    let docs = yaml_documents(MANIFEST);
    let deployment = deployment(&docs);
    let policy = manifest_object(&docs, "NetworkPolicy", None);

    // It selects the WordPress pods: every label it asks for is on the pod template.
    let wanted = policy["spec"]["podSelector"]["matchLabels"]
        .as_hash()
        .expect("podSelector.matchLabels");
    let labels = &deployment["spec"]["template"]["metadata"]["labels"];
    assert!(!wanted.is_empty());
    for (key, value) in wanted {
        assert_eq!(&labels[key.as_str().unwrap()], value, "label {key:?}");
    }
    let types: Vec<&str> = policy["spec"]["policyTypes"]
        .as_vec()
        .unwrap()
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    assert!(types.contains(&"Ingress"));

    // Its rules open origin-gate's http and https ports and nothing else (not WordPress's 80,
    // not the admin port: the kubelet's probes come from the node, which is always allowed).
    let gate = container(deployment, "origin-gate");
    let mut allowed: Vec<i64> = Vec::new();
    for rule in policy["spec"]["ingress"].as_vec().unwrap() {
        for port in rule["ports"].as_vec().expect("each rule names its ports") {
            allowed.push(match &port["port"] {
                Yaml::Integer(n) => *n,
                Yaml::String(name) => container_port(gate, name),
                other => panic!("port {other:?}"),
            });
        }
    }
    allowed.sort_unstable();
    assert_eq!(
        allowed,
        vec![container_port(gate, "http"), container_port(gate, "https")]
    );
}

#[test]
fn wordpress_listens_on_the_pod_loopback_only() {
    let docs = yaml_documents(MANIFEST);
    let wordpress = container(deployment(&docs), "wordpress");
    let mount = wordpress["volumeMounts"]
        .as_vec()
        .unwrap()
        .iter()
        .find(|m| m["mountPath"].as_str() == Some("/etc/apache2/ports.conf"))
        .expect("Apache's ports.conf is replaced");
    let volume_name = mount["name"].as_str().unwrap();
    let volume = deployment(&docs)["spec"]["template"]["spec"]["volumes"]
        .as_vec()
        .unwrap()
        .iter()
        .find(|v| v["name"].as_str() == Some(volume_name))
        .unwrap();
    let map_name = volume["configMap"]["name"].as_str().unwrap();
    let map = manifest_object(&docs, "ConfigMap", Some(map_name));
    let ports_conf = map["data"][mount["subPath"].as_str().unwrap()]
        .as_str()
        .unwrap();
    let listens: Vec<&str> = ports_conf
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("Listen"))
        .collect();
    assert_eq!(listens, ["Listen 127.0.0.1:80"]);
}

#[test]
fn liveness_does_not_restart_origin_gate_when_wordpress_is_down() {
    // /healthz answers 503 while the backend is unreachable (src/admin.rs): it belongs to
    // readiness. Liveness must not depend on the backend.
    let docs = yaml_documents(MANIFEST);
    let gate = container(deployment(&docs), "origin-gate");
    let liveness = &gate["livenessProbe"];
    assert!(!liveness.is_badvalue(), "a liveness probe is configured");
    let path = liveness["httpGet"]["path"].as_str();
    assert_ne!(
        path,
        Some("/healthz"),
        "liveness on /healthz restarts origin-gate for WordPress's faults"
    );
    assert!(
        !liveness["tcpSocket"].is_badvalue() || !liveness["httpGet"].is_badvalue(),
        "liveness probes origin-gate itself"
    );
    assert_eq!(
        gate["readinessProbe"]["httpGet"]["path"].as_str(),
        Some("/healthz")
    );
}

#[test]
fn no_private_range_is_suggested_for_trust() {
    // Trusting 10.0.0.0/8 in a cluster lets every pod forge CF-Connecting-IP.
    let docs = yaml_documents(MANIFEST);
    let config = manifest_object(&docs, "ConfigMap", Some("origin-gate"));
    let toml = config["data"]["origin-gate.toml"].as_str().unwrap();
    for line in toml.lines() {
        assert!(
            !line.contains("10.0.0.0/8")
                && !line.contains("172.16.0.0/12")
                && !line.contains("192.168.0.0/16"),
            "{MANIFEST}: {line}"
        );
    }
}

#[test]
fn the_official_wordpress_image_maps_the_scheme_itself() {
    // wordpress:*'s wp-config-docker.php already sets $_SERVER['HTTPS'] from X-Forwarded-Proto;
    // a second mapping through WORDPRESS_CONFIG_EXTRA is dead weight that drifts.
    let docs = yaml_documents(MANIFEST);
    let wordpress = container(deployment(&docs), "wordpress");
    assert!(!env_names(wordpress).contains(&"WORDPRESS_CONFIG_EXTRA".to_owned()));

    let compose = &yaml_documents(COMPOSE)[0];
    let service = &compose["services"]["wordpress"];
    let extra = match &service["environment"] {
        Yaml::Hash(map) => map
            .get(&Yaml::String("WORDPRESS_CONFIG_EXTRA".into()))
            .and_then(Yaml::as_str)
            .map(str::to_owned),
        Yaml::Array(list) => list
            .iter()
            .filter_map(Yaml::as_str)
            .find_map(|e| e.strip_prefix("WORDPRESS_CONFIG_EXTRA=").map(str::to_owned)),
        _ => None,
    };
    assert!(
        !extra.is_some_and(|php| php.contains("X_FORWARDED_PROTO")),
        "{COMPOSE}: WORDPRESS_CONFIG_EXTRA repeats the image's X-Forwarded-Proto mapping"
    );
    assert!(
        service["ports"].is_badvalue(),
        "{COMPOSE}: WordPress publishes no port"
    );
}

#[test]
fn compose_never_mounts_certbots_live_directory_alone() {
    // live/<name>/*.pem are symlinks into ../../archive/<name>/: mounted alone they dangle.
    let compose = &yaml_documents(COMPOSE)[0];
    for (name, service) in compose["services"].as_hash().unwrap() {
        for volume in service["volumes"].as_vec().into_iter().flatten() {
            let source = volume.as_str().unwrap().split(':').next().unwrap();
            assert!(
                !source.starts_with("/etc/letsencrypt/live"),
                "{COMPOSE}: service {name:?} mounts {source}"
            );
        }
    }
}

#[test]
fn the_systemd_unit_starts_without_etc_letsencrypt() {
    // A ReadOnlyPaths= entry that does not exist stops the unit from starting unless it is
    // prefixed with "-" (Origin CA-only installs have no /etc/letsencrypt).
    let unit = read(UNIT);
    for line in unit.lines().map(str::trim).filter(|l| !l.starts_with('#')) {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        if !key.ends_with("Paths") {
            continue;
        }
        for path in value.split_whitespace() {
            if path
                .trim_start_matches(['-', '+'])
                .starts_with("/etc/letsencrypt")
            {
                assert!(path.starts_with('-'), "{UNIT}: {line}");
            }
        }
    }
}
