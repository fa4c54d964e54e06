//! The crate as `cargo package` ships it: the licences the manifest declares, the
//! changelog, the docs, the sources, and nothing built locally or used only by CI.

use std::path::Path;
use std::process::Command;

fn packaged_files() -> Vec<String> {
    let out = Command::new(env!("CARGO"))
        .args(["package", "--list", "--allow-dirty", "--offline"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo package --list: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_package_carries_the_declared_licences_the_changelog_the_docs_and_the_sources() {
    let files = packaged_files();
    let manifest =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).unwrap();
    assert!(manifest.contains("license = \"MIT OR Apache-2.0\""));
    for needed in [
        "LICENSE-MIT",
        "LICENSE-APACHE",
        "CHANGELOG.md",
        "README.md",
        // The pages the README links to, and its picture (tests/docs.rs checks every link).
        "docs/dashboard.png",
        "docs/upgrading.md",
        "docs/cost.md",
        "Cargo.lock",
        "src/main.rs",
        "src/lib.rs",
        // What `cargo install` links with (build.rs passes the script to the linker).
        "build.rs",
        "link/hot-text.ld",
    ] {
        assert!(files.iter().any(|f| f == needed), "{needed} in {files:#?}");
    }
    for file in &files {
        let local = [".ci/", "target/", ".venv/", "__pycache__"];
        assert!(!local.iter().any(|l| file.contains(l)), "{file} shipped");
        if let Some(bench) = file.strip_prefix("bench/") {
            assert!(
                bench.ends_with(".py") || bench.ends_with(".c"),
                "only the benchmark's sources: {file}"
            );
        }
    }
}

#[test]
fn the_changelog_describes_the_manifests_version() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let changelog = std::fs::read_to_string(root.join("CHANGELOG.md")).unwrap();
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        changelog
            .lines()
            .any(|l| l.starts_with(&format!("## {version} - "))),
        "CHANGELOG.md has a section for {version}"
    );
    for part in ["### Changed", "### Added", "--compat 0.1"] {
        assert!(changelog.contains(part), "{part}");
    }
    let licence = std::fs::read_to_string(root.join("LICENSE-APACHE")).unwrap();
    assert!(licence.contains("Apache License") && licence.contains("Version 2.0"));
    let licence = std::fs::read_to_string(root.join("LICENSE-MIT")).unwrap();
    assert!(licence.contains("Permission is hereby granted, free of charge"));
}
