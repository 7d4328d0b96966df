//! The monitoring configuration checks out with promtool: the seed's alert rules load, every
//! alert has unit tests that pass (firing and not firing, with the seed's labels and
//! annotations), and both Prometheus configurations are valid.

use std::path::{Path, PathBuf};
use std::process::Command;

fn prometheus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../ops/prometheus")
}

fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(prometheus_dir())
        .output()
        .unwrap_or_else(|e| panic!("promtool (ops/test.sh installs it): {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(prometheus_dir().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

#[test]
fn alert_rules_load_and_their_unit_tests_pass() {
    let checked = promtool(&["check", "rules", "rules/vaultmesh-alerts.yaml"]);
    assert!(checked.contains("SUCCESS: 18 rules found"), "{checked}");
    let tested = promtool(&["test", "rules", "tests/vaultmesh-alerts.test.yaml"]);
    assert!(tested.contains("SUCCESS"), "{tested}");
    // Every alert of the rules file is exercised by the tests.
    let rules = read("rules/vaultmesh-alerts.yaml");
    let tests = read("tests/vaultmesh-alerts.test.yaml");
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    assert_eq!(alerts.len(), 18);
    for a in alerts {
        assert!(
            tests.contains(&format!("alertname: {a}\n")),
            "no unit test for alert {a}"
        );
    }
    for group in [
        "receipts",
        "guardian",
        "oracle",
        "mesh",
        "psi",
        "governance",
        "federation",
    ] {
        assert!(
            rules.contains(&format!("- name: vaultmesh.{group}\n")),
            "group {group}"
        );
    }
}

#[test]
fn prometheus_configurations_are_valid() {
    let local = promtool(&["check", "config", "prometheus-local.yml"]);
    assert!(local.contains("SUCCESS"), "{local}");
    let federation = promtool(&["check", "config", "prometheus-federation.yml"]);
    assert!(federation.contains("SUCCESS"), "{federation}");
    // Debian's promtool is built without Kubernetes service discovery, so the seed's
    // configuration is checked with each pod-discovery block swapped for a static target;
    // everything else (relabelling, alerting, rule files, exporters) is checked as written.
    let seed = read("prometheus.yml");
    let sd = "kubernetes_sd_configs:\n      - role: pod\n        namespaces:\n          names:\n            - vaultmesh\n";
    assert_eq!(
        seed.matches(sd).count(),
        3,
        "three jobs discover pods in namespace vaultmesh"
    );
    let checkable = seed.replace(sd, "static_configs:\n      - targets: ['pod:9090']\n");
    let dir = ledger::testing::scratch_dir("prometheus-config");
    let file = dir.join("prometheus.yml");
    std::fs::write(&file, checkable).unwrap_or_else(|e| panic!("{e}"));
    let checked = promtool(&["check", "config", file.to_str().unwrap_or_default()]);
    assert!(checked.contains("SUCCESS"), "{checked}");
}

#[test]
fn dashboards_are_valid_json_with_unique_uids_and_the_seed_panels() {
    let dir = prometheus_dir().join("../grafana/dashboards");
    let mut uids = std::collections::BTreeMap::new();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{e}")) {
        let path = entry.unwrap_or_else(|e| panic!("{e}")).path();
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{e}"));
        let d: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let uid = d["uid"].as_str().unwrap_or_default().to_string();
        assert!(
            !uid.is_empty() && uid.len() <= 40,
            "{}: uid",
            path.display()
        );
        let panels = d["panels"].as_array().cloned().unwrap_or_default();
        let ids: std::collections::BTreeSet<u64> =
            panels.iter().filter_map(|p| p["id"].as_u64()).collect();
        assert_eq!(ids.len(), panels.len(), "{uid}: panel ids unique");
        for p in &panels {
            assert!(p["gridPos"]["w"].as_u64().is_some(), "{uid}: {p}");
            assert!(
                !p["targets"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .is_empty(),
                "{uid}: {p}"
            );
        }
        let titles: Vec<String> = panels
            .iter()
            .map(|p| p["title"].as_str().unwrap_or_default().to_string())
            .collect();
        assert!(
            uids.insert(uid.clone(), titles).is_none(),
            "duplicate uid {uid}"
        );
    }
    // The monitoring design's two dashboards, its panels first and in its order.
    let seed: [(&str, &[&str]); 2] = [
        (
            "vaultmesh-overview",
            &[
                "System Status",
                "Current Phase",
                "Last Anchor Age",
                "Total Receipts",
                "Receipt Rate by Scroll",
                "Anchor History",
                "Mesh Node Status",
                "Oracle Query Latency",
            ],
        ),
        (
            "vaultmesh-guardian",
            &[
                "Anchor Status",
                "Receipts Since Last Anchor",
                "Anchor Epochs",
                "ProofChain Roots by Scroll",
                "Anchor Duration",
                "Anchor Events",
            ],
        ),
    ];
    for (uid, titles) in seed {
        let got = uids
            .get(uid)
            .unwrap_or_else(|| panic!("no dashboard {uid}"));
        assert_eq!(&got[..titles.len()], titles, "{uid}");
    }
    assert!(uids.contains_key("vaultmesh-portal") && uids.contains_key("vaultmesh-oracle"));
    // Provisioning loads that directory and defines the data sources the panels use.
    let prov = prometheus_dir().join("../grafana/provisioning");
    let dashboards = std::fs::read_to_string(prov.join("dashboards/vaultmesh.yaml"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(dashboards.contains("path: /var/lib/grafana/dashboards/vaultmesh"));
    let sources = std::fs::read_to_string(prov.join("datasources/vaultmesh.yaml"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(sources.contains("type: prometheus") && sources.contains("isDefault: true"));
    assert!(
        sources.contains("name: Loki"),
        "the Anchor Events panel's data source"
    );
}
