//! What a build outside this checkout reads: the files the Containerfile
//! copies (issue 17, item 4), and the protoc the `etcd` feature's build
//! finds (issue 18, item 1). No container engine and no second compile: the
//! manifest is loaded by cargo itself from exactly the copied files.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The build stage's `COPY SRC... DEST` lines (not `--from`), as
/// (sources, destination) relative to the build's WORKDIR.
fn build_stage_copies(containerfile: &str) -> Vec<(Vec<String>, String)> {
    let build_stage = containerfile
        .split("\nFROM ")
        .nth(1)
        .expect("a build stage after the first FROM");
    build_stage
        .lines()
        .filter_map(|line| line.strip_prefix("COPY "))
        .filter(|args| !args.contains("--from"))
        .map(|args| {
            let mut words: Vec<String> = args
                .split_whitespace()
                .filter(|w| !w.starts_with("--"))
                .map(String::from)
                .collect();
            let dest = words.pop().expect("COPY names a destination");
            (words, dest)
        })
        .collect()
}

fn copy_tree(from: &Path, to: &Path) {
    if from.is_dir() {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            copy_tree(&entry.path(), &to.join(entry.file_name()));
        }
    } else {
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(from, to).unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
    }
}

/// Lays out in `into` what the Containerfile's build stage copies.
fn lay_out_copies(into: &Path) {
    let text = std::fs::read_to_string(repo().join("Containerfile")).unwrap();
    let copies = build_stage_copies(&text);
    assert!(!copies.is_empty(), "the build stage copies something");
    for (sources, dest) in copies {
        for source in &sources {
            let from = repo().join(source);
            let to = if dest.ends_with('/') || sources.len() > 1 {
                into.join(&dest)
                    .join(Path::new(source).file_name().unwrap())
            } else {
                into.join(&dest)
            };
            copy_tree(&from, &to);
        }
    }
}

fn host_triple() -> String {
    let out = Command::new("rustc")
        .arg("-vV")
        .output()
        .expect("rustc runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(String::from))
        .expect("rustc -vV names the host")
}

/// `include_str!` / `include_bytes!` paths under `dir`, with the file that
/// names each.
fn compile_time_includes(dir: &Path, found: &mut Vec<(PathBuf, String)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            compile_time_includes(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            for piece in text.split("include_").skip(1) {
                let rest = piece
                    .strip_prefix("str!(\"")
                    .or_else(|| piece.strip_prefix("bytes!(\""));
                if let Some(rest) = rest {
                    let name = rest.split('"').next().unwrap().to_string();
                    found.push((path.clone(), name));
                }
            }
        }
    }
}

/// Whether cargo can load the manifest and lockfile in `dir` (every target
/// the manifest declares must exist there), and what it said.
fn cargo_loads(dir: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO"))
        .args(["fetch", "--locked", "--target", &host_triple()])
        .current_dir(dir)
        .output()
        .expect("cargo runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_container_build_stage_copies_every_file_the_build_reads() {
    let dir = tempfile::tempdir().unwrap();
    lay_out_copies(dir.path());
    let (loaded, said) = cargo_loads(dir.path());
    assert!(loaded, "cargo cannot load the copied manifest: {said}");
    let mut includes = Vec::new();
    compile_time_includes(&dir.path().join("src"), &mut includes);
    assert!(
        !includes.is_empty(),
        "the demo bundles files with include_str!"
    );
    for (file, name) in includes {
        let target = file.parent().unwrap().join(&name);
        assert!(
            target.exists(),
            "{} includes {name}, which the Containerfile does not copy",
            file.display()
        );
    }
}

#[test]
fn a_copy_without_the_bench_files_is_caught() {
    // The break of issue 17 item 4, on purpose: the check above must see it.
    let dir = tempfile::tempdir().unwrap();
    lay_out_copies(dir.path());
    let _ = std::fs::remove_dir_all(dir.path().join("benches"));
    let (loaded, said) = cargo_loads(dir.path());
    assert!(!loaded, "a manifest naming missing benches loaded");
    assert!(said.contains("bench"), "{said}");
}

/// Runs tools/protoc in `cwd` with no protoc on PATH and `cargo_home`.
fn run_protoc(cwd: &Path, cargo_home: &Path) -> std::process::Output {
    Command::new("sh")
        .arg(repo().join("tools/protoc"))
        .arg("--version")
        .current_dir(cwd)
        .env("PATH", "/usr/bin:/bin")
        .env("CARGO_HOME", cargo_home)
        .env_remove("OUT_DIR")
        .output()
        .expect("sh runs")
}

fn fake_protoc(dir: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let arch = match std::env::consts::ARCH {
        "aarch64" => "aarch_64",
        other => other,
    };
    let bin = dir.join(format!("protoc-bin-vendored-linux-{arch}-3.3.0/bin"));
    std::fs::create_dir_all(&bin).unwrap();
    let protoc = bin.join("protoc");
    std::fs::write(&protoc, "#!/bin/sh\necho \"fake protoc $*\"\n").unwrap();
    std::fs::set_permissions(&protoc, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn the_etcd_builds_protoc_is_found_beside_etcd_client_in_a_vendor_folder_or_any_cargo_home() {
    if Path::new("/usr/bin/protoc").exists() || Path::new("/bin/protoc").exists() {
        println!("skipped: a system protoc on PATH would be found first");
        return;
    }
    let nowhere = tempfile::tempdir().unwrap();
    // `cargo vendor`: vendor/etcd-client is the build script's folder, and
    // the copy there has lost its mode bits.
    let vendor = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(vendor.path().join("etcd-client")).unwrap();
    fake_protoc(vendor.path(), 0o644);
    let out = run_protoc(&vendor.path().join("etcd-client"), nowhere.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "fake protoc --version\n"
    );
    // A registry under a CARGO_HOME other than ~/.cargo, found from elsewhere.
    let home = tempfile::tempdir().unwrap();
    let index = home
        .path()
        .join("registry/src/index.example-0123456789abcdef");
    fake_protoc(&index, 0o755);
    let out = run_protoc(nowhere.path(), home.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "fake protoc --version\n"
    );
    // Neither: a clear error naming what it looked for.
    let out = run_protoc(nowhere.path(), nowhere.path());
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no protoc on PATH"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
