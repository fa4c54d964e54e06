//! The crate's layout as `src/lib.rs` tells it: each module stands on the ones listed
//! before it in the crate doc's Layout, and no file of `src/` imports another that
//! imports it back, directly or through others. Read from the `crate::`, `super::` and
//! child-module paths of every file (its tests left out).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Every file of `src/` but the binary's `main.rs`, by module path ("" for `lib.rs`),
/// with its code before any `#[cfg(test)]`, comment lines left out.
fn modules() -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let relative = path.strip_prefix(&root).unwrap().with_extension("");
            let mut parts: Vec<String> = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if parts == ["main"] {
                continue;
            }
            if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
                parts.pop();
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let code: Vec<&str> = text
                .lines()
                .take_while(|l| !l.trim_start().starts_with("#[cfg(test)]"))
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect();
            found.insert(parts.join("::"), code.join("\n"));
        }
    }
    found
}

/// The paths a `prefix::` reference starting at `text` names: `a::b`, or each of
/// `{a::b, c::{d, e}}`.
fn paths(prefix: &[String], text: &str) -> Vec<Vec<String>> {
    let mut segments = prefix.to_vec();
    let mut rest = text;
    loop {
        if let Some(group) = rest.strip_prefix('{') {
            let mut out = Vec::new();
            let (mut depth, mut start) = (0, 0);
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        out.extend(paths(&segments, group[start..i].trim()));
                        return out;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.extend(paths(&segments, group[start..i].trim()));
                        start = i + 1;
                    }
                    _ => {}
                }
            }
            return out;
        }
        let end = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        if end == 0 {
            return vec![segments];
        }
        if &rest[..end] != "self" {
            segments.push(rest[..end].to_owned());
        }
        match rest[end..].strip_prefix("::") {
            Some(next) => rest = next,
            None => return vec![segments],
        }
    }
}

/// The longest module that `segments` starts with.
fn resolve(modules: &BTreeMap<String, String>, segments: &[String]) -> Option<String> {
    (1..=segments.len())
        .rev()
        .map(|n| segments[..n].join("::"))
        .find(|m| modules.contains_key(m))
}

/// Which modules each module's file imports.
fn imports(modules: &BTreeMap<String, String>) -> BTreeMap<String, BTreeSet<String>> {
    let mut edges = BTreeMap::new();
    for (module, code) in modules {
        let me: Vec<String> = module
            .split("::")
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        let mut named = Vec::new();
        for (at, _) in code.match_indices("crate::") {
            if !preceded_by_ident(code, at) {
                named.extend(paths(&[], &code[at + "crate::".len()..]));
            }
        }
        for (at, _) in code.match_indices("super::") {
            if !preceded_by_ident(code, at) {
                named.extend(paths(&me[..me.len().saturating_sub(1)], &code[at + 7..]));
            }
        }
        // `use child::…` in a module's own file.
        for (at, _) in code.match_indices("use ") {
            let rest = &code[at + 4..];
            let word: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !preceded_by_ident(code, at) && rest[word.len()..].starts_with("::") {
                let mut child = me.clone();
                child.push(word);
                named.push(child);
            }
        }
        let targets: BTreeSet<String> = named
            .iter()
            .filter_map(|segments| resolve(modules, segments))
            .filter(|target| {
                !target.is_empty()
                    && target != module
                    && !module.starts_with(&format!("{target}::"))
            })
            .collect();
        edges.insert(module.clone(), targets);
    }
    edges
}

fn preceded_by_ident(code: &str, at: usize) -> bool {
    code[..at]
        .chars()
        .next_back()
        .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':')
}

/// A chain of imports from `from` back to it, if there is one.
fn circle_through(edges: &BTreeMap<String, BTreeSet<String>>, from: &str) -> Option<Vec<String>> {
    let mut stack = vec![vec![from.to_owned()]];
    let mut seen = BTreeSet::new();
    while let Some(chain) = stack.pop() {
        let last = chain.last().unwrap();
        for next in edges.get(last).into_iter().flatten() {
            if next == from {
                let mut circle = chain.clone();
                circle.push(next.clone());
                return Some(circle);
            }
            if seen.insert(next.clone()) {
                let mut longer = chain.clone();
                longer.push(next.clone());
                stack.push(longer);
            }
        }
    }
    None
}

#[test]
fn no_file_imports_one_that_imports_it_back() {
    let modules = modules();
    let edges = imports(&modules);
    assert!(
        edges.values().map(BTreeSet::len).sum::<usize>() > 100,
        "the imports were read: {edges:#?}"
    );
    let circles: Vec<String> = modules
        .keys()
        .filter_map(|m| circle_through(&edges, m))
        .map(|c| c.join(" → "))
        .collect();
    assert!(
        circles.is_empty(),
        "import circles:\n{}",
        circles.join("\n")
    );
}

#[test]
fn each_module_stands_only_on_those_the_layout_lists_before_it() {
    let modules = modules();
    let lib = &modules[""];
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/lib.rs")).unwrap();
    let order: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("//! - [`"))
        .filter_map(|l| l.split('`').next())
        .collect();
    // Every public module is in the Layout.
    for line in lib.lines() {
        if let Some(name) = line.strip_prefix("pub mod ") {
            let name = name.trim_end_matches(';');
            assert!(
                order.contains(&name),
                "lib.rs's Layout does not list {name}"
            );
        }
    }
    let top = |m: &str| m.split("::").next().unwrap_or("").to_owned();
    let mut upward = Vec::new();
    for (module, targets) in imports(&modules) {
        let Some(mine) = order.iter().position(|o| *o == top(&module)) else {
            continue;
        };
        for target in targets {
            if let Some(theirs) = order.iter().position(|o| *o == top(&target))
                && theirs > mine
            {
                upward.push(format!("{module} imports {target}, listed after it"));
            }
        }
    }
    assert!(upward.is_empty(), "{}", upward.join("\n"));
}

#[test]
fn the_reader_finds_grouped_and_relative_paths() {
    let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<String>>();
    assert_eq!(
        paths(
            &[],
            "sample::{cgroup::{self, Layout}, kernel::KernelFiles};"
        ),
        [
            s(&["sample", "cgroup"]),
            s(&["sample", "cgroup", "Layout"]),
            s(&["sample", "kernel", "KernelFiles"])
        ]
    );
    assert_eq!(
        paths(&s(&["sample"]), "rate::ratio(a, b)"),
        [s(&["sample", "rate", "ratio"])]
    );
    // A circle of two files is found.
    let mut edges = BTreeMap::new();
    edges.insert("a".to_owned(), BTreeSet::from(["b".to_owned()]));
    edges.insert("b".to_owned(), BTreeSet::from(["c".to_owned()]));
    edges.insert("c".to_owned(), BTreeSet::from(["a".to_owned()]));
    assert_eq!(circle_through(&edges, "a").unwrap(), ["a", "b", "c", "a"]);
}

/// `main` only parses, runs and maps the outcome to a status (as ripgrep's and
/// mini-redis's do): what a run's end means lives in the library.
#[test]
fn main_stays_thin() {
    let main =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/main.rs")).unwrap();
    let lines = main.lines().count();
    assert!(lines < 100, "src/main.rs is {lines} lines");
}

/// One concept has one name: no type is re-exported under another.
#[test]
fn nothing_is_re_exported_under_another_name() {
    let aliases: Vec<String> = modules()
        .iter()
        .flat_map(|(module, code)| {
            code.lines()
                .filter(|l| l.trim_start().starts_with("pub use ") && l.contains(" as "))
                .map(move |l| format!("{module}: {}", l.trim()))
        })
        .collect();
    assert!(aliases.is_empty(), "{aliases:#?}");
}
