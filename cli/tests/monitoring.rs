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
