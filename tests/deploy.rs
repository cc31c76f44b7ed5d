//! The deployment files: `deploy/k8s/` validates against the Kubernetes
//! schemas (offline, `kubernetes-validate --strict`), and the host accepts
//! the arguments the Deployment and the Containerfile give it.

use std::path::PathBuf;
use std::process::Command;

use crate::util::{repo_root, TempDir};

/// `kubernetes-validate --strict` on `files`: its exit status and output.
fn validate(files: &[PathBuf]) -> (bool, String) {
    let output = Command::new("python3")
        .args(["-m", "kubernetes_validate", "--strict"])
        .args(files)
        .output()
        .expect("python3 runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        !text.contains("No module named"),
        "kubernetes-validate is missing: run scripts/install-toolchains\n{text}"
    );
    (output.status.success(), text)
}

fn manifests() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo_root().join("deploy/k8s"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn kubernetes_manifests_validate_strictly() {
    let files = manifests();
    let kinds: Vec<String> = files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .filter_map(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("kind: ").map(str::to_owned))
        })
        .collect();
    for kind in [
        "Deployment",
        "Service",
        "ConfigMap",
        "HorizontalPodAutoscaler",
    ] {
        assert!(
            kinds.iter().any(|k| k == kind),
            "no {kind} in deploy/k8s: {kinds:?}"
        );
    }
    let (ok, text) = validate(&files);
    assert!(ok, "{text}");
    // The check can fail: a misspelt field is caught.
    let dir = TempDir::new();
    let deployment = std::fs::read_to_string(repo_root().join("deploy/k8s/deployment.yaml"))
        .unwrap()
        .replace("  replicas: 2", "  replica: 2");
    let bad = dir.write("deployment.yaml", deployment);
    let (ok, text) = validate(&[bad]);
    assert!(!ok && text.contains("replica"), "{text}");
}
