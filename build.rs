//! Places the functions a run executes together at link time (link/hot-text.ld, written
//! by bench/hot_text.py, which says why): the code a dry-run touches then takes ~10 of
//! the kernel's 64 KiB fault-around blocks instead of ~35, about 1.4 MB less resident
//! memory.
//!
//! Only for release builds of Linux binaries (a debug build has ten times the functions,
//! which the list does not name), where GNU ld and LLVM's lld (rustc's default linker on
//! x86_64 Linux, and zig's under cargo-zigbuild) both read an `INSERT BEFORE` script. It
//! changes where functions are, not what is linked. `CWMA_LINK_ORDER=0` turns it off for a
//! linker that cannot read the script (gold).

use std::{env, fs, path::Path};

fn main() {
    println!("cargo:rerun-if-changed=link/hot-text.ld");
    println!("cargo:rerun-if-env-changed=CWMA_LINK_ORDER");
    let release = env::var("PROFILE").is_ok_and(|p| p == "release");
    let linux = env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "linux");
    let wanted = !env::var("CWMA_LINK_ORDER").is_ok_and(|v| v == "0");
    let (Ok(dir), Ok(out)) = (env::var("CARGO_MANIFEST_DIR"), env::var("OUT_DIR")) else {
        return;
    };
    if !(release && linux && wanted) {
        return;
    }
    // Next to .init and .plt, which start-up also touches ("Placement" in
    // bench/hot_text.py); zig's static musl links have no .init.
    let musl = env::var("CARGO_CFG_TARGET_ENV").is_ok_and(|e| e == "musl");
    let before = if musl { ".text" } else { ".init" };
    let script = match fs::read_to_string(Path::new(&dir).join("link/hot-text.ld")) {
        Ok(sections) => format!("{sections}INSERT BEFORE {before};\n"),
        Err(e) => {
            println!("cargo:warning=functions not ordered: link/hot-text.ld: {e}");
            return;
        }
    };
    let path = Path::new(&out).join("hot-text.ld");
    if let Err(e) = fs::write(&path, script) {
        println!(
            "cargo:warning=functions not ordered: {}: {e}",
            path.display()
        );
        return;
    }
    let path = path.display().to_string();
    if path.contains(',') {
        // -Wl splits its argument at commas.
        println!("cargo:warning=functions not ordered: the build path {path} has a comma");
        return;
    }
    println!("cargo:rustc-link-arg-bins=-Wl,-T,{path}");
}
