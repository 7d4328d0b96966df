//! The deployment files hold up: the Kubernetes manifests validate against the Kubernetes
//! schemas (strict) and say what the monitoring and the services need, and the systemd units
//! pass `systemd-analyze verify` and carry the hardening. Every `VAULTMESH_*` variable they
//! set is one the service's `--help` documents.

mod common;

use common::bin;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn ops(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../ops")
        .join(rel)
}

fn python() -> Command {
    Command::new(std::env::var("VAULTMESH_PYTHON").unwrap_or_else(|_| "python3".into()))
}

fn run(mut cmd: Command) -> (bool, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?} (ops/test.sh provides it): {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The `VAULTMESH_*` variables a service's `--help` documents.
fn documented_env(service: &str) -> BTreeSet<String> {
    let mut cmd = Command::new(bin(&format!("vaultmesh-{service}")));
    cmd.arg("--help");
    let (ok, help) = run(cmd);
    assert!(ok, "{help}");
    env_names(&help)
}

fn env_names(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("VAULTMESH_"))
        .map(str::to_string)
        .collect()
}

/// The Kubernetes manifests: ops/k8s and the optional Alertmanager beside its config.
fn manifests() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = ["k8s", "alertmanager"]
        .iter()
        .flat_map(|d| std::fs::read_dir(ops(d)).unwrap_or_else(|e| panic!("{e}")))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .filter(|p| !p.ends_with("kustomization.yaml"))
        .collect();
    files.sort();
    files
}

/// Every document of every manifest, as JSON.
fn documents(files: &[PathBuf]) -> Vec<Value> {
    let mut cmd = python();
    cmd.args([
        "-c",
        "import json, sys, yaml\n\
         print(json.dumps([d for f in sys.argv[1:] for d in yaml.safe_load_all(open(f)) if d]))",
    ])
    .args(files);
    let (ok, text) = run(cmd);
    assert!(ok, "{text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn named<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|x| x.as_str().map(str::to_string))
        .collect()
}

#[test]
fn kubernetes_manifests_validate_and_fit_the_services() {
    let files = manifests();
    assert!(files.len() >= 6, "{files:?}");
    let mut cmd = python();
    cmd.args(["-m", "kubernetes_validate", "--strict"])
        .args(&files);
    let (ok, text) = run(cmd);
    assert!(ok, "kubernetes-validate: {text}");
    // The validator does reject a broken manifest.
    let broken = ledger::testing::scratch_dir("k8s-broken").join("broken.yaml");
    let portal = std::fs::read_to_string(ops("k8s/portal.yaml")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        &broken,
        portal.replace("containerPort: 8080", "containerPort: http"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut cmd = python();
    cmd.args(["-m", "kubernetes_validate", "--strict", "--quiet"])
        .arg(&broken);
    assert!(!run(cmd).0, "a string containerPort must fail validation");

    let docs = documents(&files);
    for d in &docs {
        if d["kind"] != "Namespace" {
            assert_eq!(d["metadata"]["namespace"], "vaultmesh", "{d}");
        }
    }
    assert!(docs
        .iter()
        .any(|d| d["kind"] == "Namespace" && d["metadata"]["name"] == "vaultmesh"));
    let config_maps: BTreeSet<String> = docs
        .iter()
        .filter(|d| d["kind"] == "ConfigMap")
        .filter_map(|d| d["metadata"]["name"].as_str().map(str::to_string))
        .collect();
    let shared_env: BTreeSet<String> = named(&docs, "ConfigMap", "vaultmesh-config")["data"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    for service in ["portal", "guardian", "oracle"] {
        let name = format!("vaultmesh-{service}");
        let deployment = named(&docs, "Deployment", &name);
        let pod = &deployment["spec"]["template"];
        assert_eq!(pod["metadata"]["labels"]["app.kubernetes.io/name"], service);
        assert_eq!(
            deployment["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"],
            service
        );
        assert_eq!(
            pod["metadata"]["annotations"]["prometheus.io/scrape"],
            "true"
        );
        assert_eq!(pod["metadata"]["annotations"]["prometheus.io/port"], "9090");
        let c = &pod["spec"]["containers"][0];
        assert_eq!(
            c["livenessProbe"]["httpGet"]["path"], "/v1/health",
            "{service}"
        );
        assert_eq!(
            c["readinessProbe"]["httpGet"]["path"], "/v1/ready",
            "{service}"
        );
        for part in ["requests", "limits"] {
            for res in ["cpu", "memory"] {
                assert!(
                    c["resources"][part][res].is_string(),
                    "{service}: {part}.{res}"
                );
            }
        }
        let ports: Vec<u64> = c["ports"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter_map(|p| p["containerPort"].as_u64())
            .collect();
        assert!(ports.contains(&9090), "{service}: metrics port");
        assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
        assert_eq!(pod["spec"]["securityContext"]["runAsNonRoot"], true);
        // Settings come from ConfigMaps that exist and Secrets by reference; every variable
        // is one the service documents.
        let documented = documented_env(service);
        let mut set: BTreeSet<String> = shared_env.clone();
        for e in c["env"].as_array().cloned().unwrap_or_default() {
            set.insert(e["name"].as_str().unwrap_or_default().to_string());
            if let Some(cm) = e["valueFrom"]["configMapKeyRef"]["name"].as_str() {
                assert!(config_maps.contains(cm), "{service}: ConfigMap {cm}");
            }
        }
        for from in c["envFrom"].as_array().cloned().unwrap_or_default() {
            let cm = from["configMapRef"]["name"].as_str().unwrap_or_default();
            assert!(config_maps.contains(cm), "{service}: ConfigMap {cm}");
        }
        for var in &set {
            assert!(
                documented.contains(var),
                "{service} does not document {var}"
            );
        }
        let db_url = c["env"]
            .as_array()
            .and_then(|env| {
                env.iter()
                    .find(|e| e["name"] == "VAULTMESH_DATABASE_URL")
                    .cloned()
            })
            .unwrap_or_default();
        assert_eq!(
            (
                db_url["valueFrom"]["secretKeyRef"]["name"].as_str(),
                db_url["valueFrom"]["secretKeyRef"]["key"].as_str()
            ),
            (
                Some("vaultmesh-database"),
                Some(format!("{service}-url").as_str())
            ),
            "{service}: its own role's database URL comes from a Secret"
        );
        for v in pod["spec"]["volumes"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            if let Some(cm) = v["configMap"]["name"].as_str() {
                assert!(
                    config_maps.contains(cm) || v["configMap"]["optional"] == true,
                    "{service}: volume ConfigMap {cm}"
                );
            }
        }
        let svc = named(&docs, "Service", &name);
        assert_eq!(svc["spec"]["selector"]["app.kubernetes.io/name"], service);
    }
    let guardian = named(&docs, "Deployment", "vaultmesh-guardian");
    assert_eq!(guardian["spec"]["replicas"], 2, "leader plus standby");
    let volumes = guardian["spec"]["template"]["spec"]["volumes"].to_string();
    assert!(
        volumes.contains("\"secretName\":\"vaultmesh-guardian-signing-key\""),
        "{volumes}"
    );
    let pdb = named(&docs, "PodDisruptionBudget", "vaultmesh-guardian");
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"],
        "guardian"
    );
    let journal = named(&docs, "PersistentVolumeClaim", "vaultmesh-journal");
    assert_eq!(strings(&journal["spec"]["accessModes"]), ["ReadWriteMany"]);
    // The constitution the Job adopts is the dev stack's, ops/governance/constitution.json.
    let cm = named(&docs, "ConfigMap", "vaultmesh-constitution");
    let in_k8s: Value =
        serde_json::from_str(cm["data"]["constitution.json"].as_str().unwrap_or_default())
            .unwrap_or_else(|e| panic!("constitution ConfigMap: {e}"));
    let file: Value = serde_json::from_str(
        &std::fs::read_to_string(ops("governance/constitution.json"))
            .unwrap_or_else(|e| panic!("{e}")),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        in_k8s, file,
        "ops/k8s/constitution.yaml and ops/governance/constitution.json differ"
    );
    let job = named(&docs, "Job", "vaultmesh-constitution");
    let args = strings(&job["spec"]["template"]["spec"]["containers"][0]["command"]);
    assert_eq!(
        &args[..4],
        ["vaultmesh", "constitution", "adopt", "--if-newer"]
    );
    // The kustomization.yaml beside each manifest lists it.
    for f in &files {
        let name = f.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let kustomization = std::fs::read_to_string(f.with_file_name("kustomization.yaml"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            kustomization.contains(&format!("  - {name}\n")),
            "{name} not in kustomization"
        );
    }
}

#[test]
fn systemd_units_verify_and_are_hardened() {
    let scratch = ledger::testing::scratch_dir("systemd-units");
    let mut copies = Vec::new();
    let example = std::fs::read_to_string(ops("systemd/vaultmesh.env.example"))
        .unwrap_or_else(|e| panic!("{e}"));
    for service in ["portal", "guardian", "oracle"] {
        let file = format!("vaultmesh-{service}.service");
        let unit = std::fs::read_to_string(ops(&format!("systemd/{file}")))
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        for directive in [
            "User=vaultmesh\n",
            "Group=vaultmesh\n",
            "ProtectSystem=strict\n",
            "ProtectHome=yes\n",
            "NoNewPrivileges=yes\n",
            "PrivateTmp=yes\n",
            "CapabilityBoundingSet=\n",
            "MemoryMax=",
            "Restart=on-failure\n",
            "EnvironmentFile=/etc/vaultmesh/vaultmesh.env\n",
            &format!("ExecStart=/usr/local/bin/vaultmesh-{service}\n"),
        ] {
            assert!(unit.contains(directive), "{file} lacks {directive:?}");
        }
        if service == "guardian" {
            assert!(
                unit.contains("ReadWritePaths=/var/lib/vaultmesh\n"),
                "{file}"
            );
            assert!(
                unit.contains("VAULTMESH_JOURNAL_PATH=/var/lib/vaultmesh/"),
                "{file}"
            );
        } else {
            assert!(!unit.contains("ReadWritePaths="), "{file} writes nothing");
        }
        let own = std::fs::read_to_string(ops(&format!("systemd/{service}.env.example")))
            .unwrap_or_else(|e| panic!("{service}.env.example: {e}"));
        assert!(
            own.contains(&format!(
                "VAULTMESH_DATABASE_URL=postgres://vaultmesh_{service}:"
            )),
            "{service} connects as its own role"
        );
        assert!(
            unit.contains(&format!("EnvironmentFile=-/etc/vaultmesh/{service}.env\n")),
            "{file} reads its own env file"
        );
        let documented = documented_env(service);
        let mut set = env_names(&unit);
        set.extend(env_names(&example));
        set.extend(env_names(&own));
        for var in set {
            assert!(
                documented.contains(&var),
                "{file}: {service} does not document {var}"
            );
        }
        // Verified as installed, with the binary where this build put it.
        let local = unit.replace(
            &format!("/usr/local/bin/vaultmesh-{service}"),
            &bin(&format!("vaultmesh-{service}")).to_string_lossy(),
        );
        let copy = scratch.join(&file);
        std::fs::write(&copy, local).unwrap_or_else(|e| panic!("{e}"));
        copies.push(copy);
    }
    let Ok(probe) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("systemd-analyze is not installed here: unit verification skipped");
        return;
    };
    assert!(probe.status.success());
    let mut cmd = Command::new("systemd-analyze");
    cmd.arg("verify").args(&copies);
    let (ok, text) = run(cmd);
    assert!(
        ok && text.trim().is_empty(),
        "systemd-analyze verify:\n{text}"
    );
}

/// The CloudNativePG overlay: a three-instance cluster that never acknowledges without a
/// synchronous standby, the service roles managed, and every service at `replicated`.
#[test]
fn the_cloudnativepg_overlay_keeps_a_synchronous_standby() {
    let docs = documents(&[ops("k8s/cnpg/cluster.yaml")]);
    let cluster = named(&docs, "Cluster", "vaultmesh-db");
    assert_eq!(cluster["apiVersion"], "postgresql.cnpg.io/v1");
    assert_eq!(cluster["metadata"]["namespace"], "vaultmesh");
    let spec = &cluster["spec"];
    assert_eq!(spec["instances"], 3);
    let sync = &spec["postgresql"]["synchronous"];
    assert_eq!(sync["method"], "any");
    assert_eq!(sync["number"], 1);
    assert_eq!(sync["dataDurability"], "required");
    assert_eq!(spec["bootstrap"]["initdb"]["database"], "vaultmesh");
    assert_eq!(spec["bootstrap"]["initdb"]["owner"], "vaultmesh");
    let roles: Vec<&str> = spec["managed"]["roles"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert_eq!(
        roles,
        ["vaultmesh_portal", "vaultmesh_guardian", "vaultmesh_oracle"]
    );
    let overlay = documents(&[ops("k8s/cnpg/kustomization.yaml")]);
    let k = &overlay[0];
    assert_eq!(strings(&k["resources"]), ["../", "cluster.yaml"]);
    let patch = k["patches"][0]["patch"].as_str().unwrap_or_default();
    assert!(
        patch.contains("/data/VAULTMESH_DURABILITY") && patch.contains("value: replicated"),
        "{patch}"
    );
    assert_eq!(k["patches"][0]["target"]["name"], "vaultmesh-config");
    // The portal and the oracle read from the `-ro` Service when its URLs are in the Secret.
    for (i, (service, key)) in [("portal", "portal-read-url"), ("oracle", "oracle-read-url")]
        .iter()
        .enumerate()
    {
        let p = &k["patches"][i + 1];
        assert_eq!(p["target"]["kind"], "Deployment");
        assert_eq!(p["target"]["name"], format!("vaultmesh-{service}"));
        let text = p["patch"].as_str().unwrap_or_default();
        assert!(
            text.contains("VAULTMESH_READ_DATABASE_URL")
                && text.contains(&format!("key: {key}"))
                && text.contains("optional: true"),
            "{text}"
        );
        assert!(documented_env(service).contains("VAULTMESH_READ_DATABASE_URL"));
    }
    // The variable it sets is one every service documents.
    for service in ["portal", "guardian", "oracle"] {
        assert!(
            documented_env(service).contains("VAULTMESH_DURABILITY"),
            "{service}"
        );
    }
}
