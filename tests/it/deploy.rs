//! The Kubernetes manifests under `deploy/` are valid against the Kubernetes
//! schemas, strictly (an unknown field is an error), as issue 10 asks. The
//! validator is PyPI's `kubernetes-validate`, which bundles the schemas, so
//! it needs no network: `.ci/run` installs it. Without it the test says so
//! and is skipped (a fresh machine passes `cargo test`), except under CI,
//! where a missing validator is a failure.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The oldest Kubernetes the manifests support (native sidecars are on by
/// default from 1.29) and the newest the validator bundles.
const VERSIONS: [&str; 2] = ["1.29.0", "1.37.0"];

/// Every `*.yaml` / `*.yml` under `dir`, in a stable order.
fn manifests(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("a readable directory entry").path();
        if path.is_dir() {
            found.extend(manifests(&path));
        } else if path
            .extension()
            .is_some_and(|ext| ext == "yaml" || ext == "yml")
        {
            found.push(path);
        }
    }
    found.sort();
    found
}

/// `python3 -m kubernetes_validate`.
fn kubernetes_validate() -> Command {
    let mut command = Command::new("python3");
    command.args(["-m", "kubernetes_validate"]);
    command
}

/// Whether the validator is installed; outside CI a missing one is a note
/// and a skip, under CI a failure.
fn validator_present() -> bool {
    let probe = kubernetes_validate().arg("--version").output();
    if probe.is_ok_and(|out| out.status.success()) {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "kubernetes-validate is missing under CI (.ci/run installs it with pip)"
    );
    eprintln!("skipped: no kubernetes-validate (pip install kubernetes-validate)");
    false
}

#[test]
fn every_manifest_under_deploy_is_valid_against_the_kubernetes_schemas_strictly() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let files = manifests(&root);
    assert!(
        files
            .iter()
            .any(|f| f.ends_with("kubernetes/deployment.yaml")),
        "the sidecar example is under deploy/: {files:?}"
    );
    if !validator_present() {
        return;
    }
    for version in VERSIONS {
        let out = kubernetes_validate()
            .args(["--strict", "--quiet", "--kubernetes-version", version])
            .args(&files)
            .output()
            .expect("python3 runs");
        assert!(
            out.status.success(),
            "Kubernetes {version}, strict:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn the_strict_check_rejects_an_unknown_field() {
    // The check above can fail: a field the schema lacks is an error.
    if !validator_present() {
        return;
    }
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("typo.yaml");
    std::fs::write(
        &path,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  lables: {}\ndata:\n  a: b\n",
    )
    .expect("write the manifest");
    let out = kubernetes_validate()
        .args(["--strict", "--quiet"])
        .arg(&path)
        .output()
        .expect("python3 runs");
    assert!(
        !out.status.success(),
        "accepted: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("lables"),
        "names the field: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}
