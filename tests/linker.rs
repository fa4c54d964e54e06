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
    cargo(
        dir,
        wrap,
        &["build", "--release"],
        "target/release/tiny",
        env,
    )
}

/// `cargo ARGS` (`--offline` added) in `dir`, as [`build`]; the binary is then `bin`,
/// relative to `dir`.
fn cargo(dir: &Path, wrap: &[&str], args: &[&str], bin: &str, env: &[(&str, &str)]) -> Built {
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
    cmd.args(args)
        .arg("--offline")
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
    let bin = dir.join(bin);
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

/// `linker` made the binary, the order is left out, and build.rs said so in one line
/// naming the linker's complaint.
fn assert_refused_by(built: &Built, linker: &str, complaint: &str) {
    assert!(built.linked_by.contains(linker), "{}", built.linked_by);
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
    if !have("gnu_ld_takes_the_order", "bfd") {
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
    assert_refused_by(&built, program, complaint);
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

/// `cargo install --path .`, as the README's install from source: the same build script,
/// in cargo's own way.
#[test]
fn cargo_install_with_gold_installs_without_the_order_and_says_why() {
    if !have(
        "cargo_install_with_gold_installs_without_the_order_and_says_why",
        "gold",
    ) {
        return;
    }
    let dir = tiny_crate();
    let root = dir.path().join("root");
    let args = ["install", "--path", ".", "--root", root.to_str().unwrap()];
    let gold = [("RUSTFLAGS", "-C link-arg=-fuse-ld=gold")];
    let built = cargo(dir.path(), &[], &args, "root/bin/tiny", &gold);
    assert_refused_by(&built, "gold", "syntax error");
}

/// A cross `--target`: the test link is for that target, with its own rustflags.
#[test]
fn a_cross_target_is_tried_with_its_own_linker() {
    let test = "a_cross_target_is_tried_with_its_own_linker";
    const MUSL: &str = "x86_64-unknown-linux-musl";
    let targets = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    if !targets.lines().any(|t| t == MUSL) {
        common::skip(test, &format!("rustup target add {MUSL}"));
        return;
    }
    if !have(test, "gold") {
        return;
    }
    let dir = tiny_crate();
    let args = ["build", "--release", "--target", MUSL];
    let bin = format!("target/{MUSL}/release/tiny");
    let built = cargo(dir.path(), &[], &args, &bin, &[]);
    assert_ordered(&built);
    let gold = [(
        "CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_RUSTFLAGS",
        "-C link-arg=-fuse-ld=gold",
    )];
    let built = cargo(dir.path(), &[], &args, &bin, &gold);
    assert_refused_by(&built, "gold", "syntax error");
}

/// `rustflags` in `.cargo/config.toml`, as many users set a faster linker for every build.
#[test]
fn rustflags_set_in_cargo_config_are_the_ones_tried() {
    if !have("rustflags_set_in_cargo_config_are_the_ones_tried", "gold") {
        return;
    }
    let dir = tiny_crate();
    std::fs::create_dir_all(dir.path().join(".cargo")).unwrap();
    std::fs::write(
        dir.path().join(".cargo/config.toml"),
        "[build]\nrustflags = [\"-C\", \"link-arg=-fuse-ld=gold\"]\n",
    )
    .unwrap();
    let built = build(dir.path(), &[], &[]);
    assert_refused_by(&built, "gold", "syntax error");
}

/// A `linker` setting in `.cargo/config.toml` (cargo hands it to rustc, not through
/// rustflags): here a wrapper around cc that links with gold (its `-fuse-ld` last, after
/// the `-fuse-ld=lld` rustc passes).
#[test]
fn a_linker_set_in_cargo_config_is_the_one_tried() {
    if !have("a_linker_set_in_cargo_config_is_the_one_tried", "gold") {
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
    assert_refused_by(&built, "gold", "syntax error");
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

/// The list names the crate's own functions by the last two names of their path (also
/// inside generic instances), so that moving a module leaves its functions in the list
/// and the footprint check (`bench/hot_text.py --check`) does not fail for a refactoring:
/// `pattern` of a symbol matches the same function moved one module deeper (under the
/// linker's glob rules, which fnmatch shares for `*`), and not another function; and the
/// committed list is in that form.
#[test]
fn the_order_list_survives_a_module_move() {
    let probe = r#"
import fnmatch, json, sys
sys.path.insert(0, "bench")
import hot_text
def legacy(*names):
    return "".join(f"{len(n)}{n}" for n in names)
H = "17h0123456789abcdefE"
generic = lambda path: "_ZN" + legacy("core", "ptr", f"drop_in_place$LT${path}$GT$") + H
cases = [
    ("_ZN" + legacy("cloudwatch_metrics_agent", "check", "print") + H,
     "_ZN" + legacy("cloudwatch_metrics_agent", "cli", "check", "print") + H,
     "_ZN" + legacy("cloudwatch_metrics_agent", "check", "say") + H),
    (generic("cloudwatch_metrics_agent..setup..Destination"),
     generic("cloudwatch_metrics_agent..run..setup..Destination"),
     generic("cloudwatch_metrics_agent..setup..Source")),
]
out = []
for symbol, moved, other in cases:
    p = hot_text.pattern(symbol)
    out.append([p, fnmatch.fnmatchcase(symbol, p), fnmatch.fnmatchcase(moved, p),
                fnmatch.fnmatchcase(other, p)])
print(json.dumps(out))
"#;
    let out = Command::new(common::python())
        .args(["-c", probe])
        .current_dir(ROOT)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let cases: Vec<(String, bool, bool, bool)> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(cases.len(), 2);
    for (pattern, itself, moved, other) in cases {
        assert!(itself, "{pattern} matches its own symbol");
        assert!(
            moved,
            "{pattern} matches the function moved one module deeper"
        );
        assert!(!other, "{pattern} does not match another function");
    }
    let list = std::fs::read_to_string(Path::new(ROOT).join("link/hot-text.ld")).unwrap();
    let ours: Vec<&str> = list
        .split_whitespace()
        .filter(|w| w.contains("cloudwatch_metrics_agent"))
        .collect();
    assert!(ours.len() > 100, "{} of the crate's patterns", ours.len());
    for pattern in ours {
        assert!(
            pattern.contains("cloudwatch_metrics_agent*")
                || pattern.contains("cloudwatch_metrics_agent..*"),
            "{pattern} names its whole module path: regenerate with bench/hot_text.py"
        );
    }
}
