//! Places the functions a run executes together at link time (link/hot-text.ld, written
//! by bench/hot_text.py, which says why): the code a dry-run touches then takes ~10 of
//! the kernel's 64 KiB fault-around blocks instead of ~35, about 1.4 MB less resident
//! memory.
//!
//! Only for release builds of Linux binaries (a debug build has ten times the functions,
//! which the list does not name). The list is an `INSERT BEFORE` linker script, which GNU
//! ld and LLVM's lld read (rustc's default linker on x86_64 Linux, and zig's under
//! cargo-zigbuild) but gold and mold refuse. Which linker a build uses can come from
//! anywhere (rustflags, a `linker` setting, `mold -run`, a cross toolchain), so the script
//! is first tried on an empty program linked exactly as this crate will be; a linker
//! that refuses it gets no order and one `cargo:warning` line, and the build goes on.
//! It changes where functions are, never what is linked: a pattern naming a function that
//! no longer exists matches nothing. `CWMA_LINK_ORDER=0` turns it off.

use std::{
    env, fs,
    path::{Path, PathBuf},
    process::Command,
};

fn main() {
    println!("cargo:rerun-if-changed=link/hot-text.ld");
    // What can change the linker without changing this crate. A `linker` or `rustflags`
    // setting in .cargo/config.toml reruns us too for a native build (verified by
    // tests/linker.rs); with `--target`, a config file's rustflags may not (cargo#13003).
    let target = env::var("TARGET")
        .unwrap_or_default()
        .to_uppercase()
        .replace(['-', '.'], "_");
    for var in [
        "CWMA_LINK_ORDER".to_owned(),
        "RUSTFLAGS".to_owned(),
        "CARGO_BUILD_RUSTFLAGS".to_owned(),
        format!("CARGO_TARGET_{target}_RUSTFLAGS"),
        format!("CARGO_TARGET_{target}_LINKER"),
        "LD_PRELOAD".to_owned(),
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    let release = env::var("PROFILE").is_ok_and(|p| p == "release");
    let linux = env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "linux");
    let wanted = !env::var("CWMA_LINK_ORDER").is_ok_and(|v| v == "0");
    if !(release && linux && wanted) {
        return;
    }
    match ordered() {
        Ok(arg) => println!("cargo:rustc-link-arg-bins={arg}"),
        Err(why) => println!(
            "cargo:warning=functions not placed together (link/hot-text.ld): {why}; \
             the binary works the same with ~1.4 MB more resident memory \
             (CWMA_LINK_ORDER=0 silences this)"
        ),
    }
}

/// The linker argument that applies the order, once a test link accepted it.
fn ordered() -> Result<String, String> {
    let dir = env::var("CARGO_MANIFEST_DIR").map_err(|e| format!("CARGO_MANIFEST_DIR: {e}"))?;
    let out = PathBuf::from(env::var("OUT_DIR").map_err(|e| format!("OUT_DIR: {e}"))?);
    // Next to .init and .plt, which start-up also touches ("Placement" in
    // bench/hot_text.py); zig's static musl links have no .init.
    let musl = env::var("CARGO_CFG_TARGET_ENV").is_ok_and(|e| e == "musl");
    let before = if musl { ".text" } else { ".init" };
    let list = Path::new(&dir).join("link/hot-text.ld");
    let sections = fs::read_to_string(&list).map_err(|e| format!("{}: {e}", list.display()))?;
    let script = out.join("hot-text.ld");
    fs::write(&script, format!("{sections}INSERT BEFORE {before};\n"))
        .map_err(|e| format!("{}: {e}", script.display()))?;
    let script = script.display().to_string();
    if script.contains(',') {
        // -Wl splits its argument at commas.
        return Err(format!("the build path {script} has a comma"));
    }
    let arg = format!("-Wl,-T,{script}");
    if let Err(refused) = try_link(&out, Some(&arg)) {
        // Whether the linker refused the script, or cannot link this target at all here.
        return Err(match try_link(&out, None) {
            Ok(()) => format!("the linker refused the script ({refused})"),
            Err(e) => format!("a test program could not be linked even without it ({e})"),
        });
    }
    Ok(arg)
}

/// Links an empty program for the same target, with the same flags and linker as this
/// crate's binary and `arg` (the script) added: a linker that cannot read it fails here.
/// Flags given to `cargo rustc -- …` are not visible to a build script.
fn try_link(out: &Path, arg: Option<&str>) -> Result<(), String> {
    let source = out.join("probe.rs");
    fs::write(&source, "fn main() {}\n").map_err(|e| format!("{}: {e}", source.display()))?;
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let mut cmd = Command::new(rustc);
    cmd.arg(&source).arg("-o").arg(out.join("probe")).args([
        "--crate-type",
        "bin",
        "--edition",
        "2021",
    ]);
    if let Ok(target) = env::var("TARGET") {
        cmd.args(["--target", &target]);
    }
    if let Ok(linker) = env::var("RUSTC_LINKER") {
        cmd.arg("-C").arg(format!("linker={linker}"));
    }
    if let Ok(flags) = env::var("CARGO_ENCODED_RUSTFLAGS") {
        cmd.args(flags.split('\x1f').filter(|f| !f.is_empty()));
    }
    if let Some(arg) = arg {
        cmd.arg("-C").arg(format!("link-arg={arg}"));
    }
    let done = cmd
        .output()
        .map_err(|e| format!("could not run rustc to try the linker: {e}"))?;
    if done.status.success() {
        return Ok(());
    }
    Err(complaint(&String::from_utf8_lossy(&done.stderr), arg))
}

/// The linker's own first complaint in rustc's report of a failed link (gold: "syntax
/// error, unexpected STRING", mold: "unknown linker script token"), shortened.
fn complaint(stderr: &str, arg: Option<&str>) -> String {
    let script = arg.map_or("hot-text.ld", |a| a.trim_start_matches("-Wl,-T,"));
    let lines: Vec<&str> = stderr
        .lines()
        .map(|l| l.trim().trim_start_matches("= note:").trim())
        .collect();
    // rustc's own lines, and the linker's command line (it starts with a quoted program).
    let noise = [
        "error: linking with",
        "error: aborting",
        "collect2: error",
        "\"",
    ];
    let Some(at) = lines.iter().position(|l| {
        (l.contains("error") || l.contains("fatal")) && !noise.iter().any(|n| l.starts_with(n))
    }) else {
        return "no message".to_owned();
    };
    let mut said = lines[at].replace(script, "hot-text.ld");
    // mold points at the token on the next line.
    if let Some(why) = lines.get(at + 1).and_then(|l| l.strip_prefix('^')) {
        said = format!("{said} <- {}", why.trim());
    }
    said.chars().take(200).collect()
}
