//! build.rs with every linker a user may have: the crate's own build script and function
//! list, in a tiny crate that links in a second, built in release the ways users set a
//! linker (rustflags, a `.cargo/config.toml` setting, `mold -run`). Each build must
//! succeed, and the order must be in the binary exactly when build.rs did not warn.

mod common;

use std::path::Path;
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// What one release build of the tiny crate did.
struct Built {
    /// build.rs's `warning:` lines, as cargo prints them.
    warnings: Vec<String>,
    /// The binary has the `.text.hot` section the list places functions in.
    ordered: bool,
    /// The binary's `.comment` and gold's version note: which linker made it.
    linked_by: String,
}

/// A crate with a `main`, this repository's build.rs and link/hot-text.ld, in a fresh
/// directory (its own target directory, so every case runs build.rs).
fn tiny_crate() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::write(
        root.join("Cargo.toml"),
        "[package]\nname = \"tiny\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\
         [workspace]\n[profile.release]\nstrip = true\n",
    )
    .unwrap();
    std::fs::create_dir_all(root.join("src")).unwrap();
    std::fs::create_dir_all(root.join("link")).unwrap();
    std::fs::write(
        root.join("src/main.rs"),
        "fn main() { println!(\"tiny\"); }\n",
    )
    .unwrap();
    for file in ["build.rs", "link/hot-text.ld"] {
        std::fs::copy(Path::new(ROOT).join(file), root.join(file)).unwrap();
    }
    dir
}

/// `cargo build --release` of `dir`, `wrap`ped in a command (e.g. `mold -run`) or not,
/// with `env` set; panics with cargo's output when the build fails.
fn build(dir: &Path, wrap: &[&str], env: &[(&str, &str)]) -> Built {
    let cargo = env!("CARGO");
    let mut cmd = match wrap {
        [] => Command::new(cargo),
        [program, args @ ..] => {
            let mut c = Command::new(program);
            c.args(args).arg(cargo);
            c
        }
    };
    // Only the case's own settings: none of the developer's (a linker or target set in
    // ~/.cargo/config.toml or the environment).
    for (name, _) in std::env::vars() {
        let cargo = [
            "CARGO_BUILD_",
            "CARGO_TARGET_",
            "CARGO_ENCODED_",
            "CARGO_PROFILE_",
        ];
        if cargo.iter().any(|p| name.starts_with(p)) || name == "RUSTFLAGS" {
            cmd.env_remove(name);
        }
    }
    cmd.args(["build", "--release", "--offline"])
        .current_dir(dir)
        .env("CARGO_HOME", dir.join("cargo-home"))
        .env("CARGO_TARGET_DIR", dir.join("target"))
        .env_remove("CWMA_LINK_ORDER")
        .envs(env.iter().copied());
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "the build failed:\n{stderr}");
    let warnings: Vec<String> = stderr
        .lines()
        .filter(|l| l.starts_with("warning: tiny@"))
        .map(str::to_owned)
        .collect();
    let bin = dir.join("target/release/tiny");
    let ran = Command::new(&bin).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&ran.stdout), "tiny\n");
    let sections = readelf(&["-SW"], &bin);
    let linked_by = readelf(&["-p", ".comment", "-n"], &bin);
    Built {
        warnings,
        ordered: sections.contains(".text.hot"),
        linked_by,
    }
}

fn readelf(args: &[&str], bin: &Path) -> String {
    let out = Command::new("readelf")
        .args(args)
        .arg(bin)
        .output()
        .unwrap();
    assert!(out.status.success(), "readelf {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The order is applied, and build.rs said nothing.
fn assert_ordered(built: &Built) {
    assert!(built.warnings.is_empty(), "{:#?}", built.warnings);
    assert!(built.ordered, "no .text.hot in the binary");
}

/// The order is left out, and build.rs said so in one line naming the linker's complaint.
fn assert_unordered_and_said(built: &Built, complaint: &str) {
    assert!(
        !built.ordered,
        "a .text.hot section although build.rs warned"
    );
    assert_eq!(built.warnings.len(), 1, "{:#?}", built.warnings);
    let line = &built.warnings[0];
    assert!(line.contains("functions not placed together"), "{line}");
    assert!(
        line.contains(complaint),
        "{line} should quote {complaint:?}"
    );
}

/// A linker this machine lacks (`program` or `ld.program`): `skip` (fails under CI=true).
fn have(test: &str, program: &str) -> bool {
    let found = Command::new("sh")
        .args([
            "-c",
            &format!("command -v {program} || command -v ld.{program}"),
        ])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        common::skip(
            test,
            &format!("{program} is not installed (apt-get install it)"),
        );
    }
    found
}

#[test]
fn rustcs_default_linker_takes_the_order() {
    let dir = tiny_crate();
    let built = build(dir.path(), &[], &[]);
    assert_ordered(&built);
    if cfg!(target_arch = "x86_64") {
        // rustc's own lld, since Rust 1.90 on x86_64-unknown-linux-gnu.
        assert!(built.linked_by.contains("LLD"), "{}", built.linked_by);
    }
}

#[test]
fn gnu_ld_takes_the_order() {
    if !have("gnu_ld_takes_the_order", "ld.bfd") {
        return;
    }
    let dir = tiny_crate();
    let flags = [("RUSTFLAGS", "-C link-arg=-fuse-ld=bfd")];
    let built = build(dir.path(), &[], &flags);
    assert_ordered(&built);
    assert!(!built.linked_by.contains("LLD"), "{}", built.linked_by);
}

/// A build whose linker cannot read the script (chosen by rustflags, or by `wrap`ping
/// cargo): it succeeds without the order, build.rs quotes the linker's `complaint`, and
/// the binary says `program` linked it.
fn refused(test: &str, program: &str, wrap: &[&str], env: &[(&str, &str)], complaint: &str) {
    if !have(test, program) {
        return;
    }
    let dir = tiny_crate();
    let built = build(dir.path(), wrap, env);
    assert_unordered_and_said(&built, complaint);
    assert!(built.linked_by.contains(program), "{}", built.linked_by);
}

#[test]
fn gold_builds_without_the_order_and_says_why() {
    let gold = [("RUSTFLAGS", "-C link-arg=-fuse-ld=gold")];
    refused(
        "gold_builds_without_the_order_and_says_why",
        "gold",
        &[],
        &gold,
        "syntax error",
    );
}

#[test]
fn mold_builds_without_the_order_and_says_why() {
    let mold = [("RUSTFLAGS", "-C link-arg=-fuse-ld=mold")];
    let complaint = "unknown linker script token";
    refused(
        "mold_builds_without_the_order_and_says_why",
        "mold",
        &[],
        &mold,
        complaint,
    );
}

#[test]
fn mold_run_builds_without_the_order_and_says_why() {
    let complaint = "unknown linker script token";
    let test = "mold_run_builds_without_the_order_and_says_why";
    refused(test, "mold", &["mold", "-run"], &[], complaint);
}

/// A `linker` setting in `.cargo/config.toml` (cargo hands it to rustc, not through
/// rustflags): here a wrapper around cc that links with gold (its `-fuse-ld` last, after
/// the `-fuse-ld=lld` rustc passes).
#[test]
fn a_linker_set_in_cargo_config_is_the_one_tried() {
    if !have("a_linker_set_in_cargo_config_is_the_one_tried", "ld.gold") {
        return;
    }
    let dir = tiny_crate();
    let config = |wrapper: &str, fuse: &str| {
        let path = dir.path().join(wrapper);
        std::fs::write(
            &path,
            format!("#!/bin/sh\nexec cc \"$@\" -fuse-ld={fuse}\n"),
        )
        .unwrap();
        set_executable(&path);
        std::fs::create_dir_all(dir.path().join(".cargo")).unwrap();
        std::fs::write(
            dir.path().join(".cargo/config.toml"),
            format!(
                "[target.{}]\nlinker = \"{}\"\n",
                host_triple(),
                path.display()
            ),
        )
        .unwrap();
    };
    config("cc-gold", "gold");
    let built = build(dir.path(), &[], &[]);
    assert_unordered_and_said(&built, "syntax error");
    assert!(built.linked_by.contains("gold"), "{}", built.linked_by);
    // Then GNU ld, in the same target directory: build.rs runs again and the order is back.
    config("cc-bfd", "bfd");
    let built = build(dir.path(), &[], &[]);
    assert_ordered(&built);
    assert!(!built.linked_by.contains("gold"), "{}", built.linked_by);
}

#[test]
fn the_opt_out_leaves_the_order_out_silently() {
    let dir = tiny_crate();
    let built = build(dir.path(), &[], &[("CWMA_LINK_ORDER", "0")]);
    assert!(!built.ordered);
    assert!(built.warnings.is_empty(), "{:#?}", built.warnings);
}

fn set_executable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn host_triple() -> String {
    let out = Command::new("rustc").arg("-vV").output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .unwrap()
        .to_owned()
}
