//! README.md and the pages under `docs/` kept honest against the repository and the
//! binary: every relative link leads to a file (and heading) that exists and ships in the
//! crate, every flag and `CWMA_` variable they name is one the binary has, every one the
//! binary's help lists is documented, the 0.1.x spellings `docs/upgrading.md` lists are
//! accepted by the binary as the flags they stand for, and the README stays a front door.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

/// The README is the front door: what a newcomer needs in five minutes (issue 29).
const README_MAX_LINES: usize = 300;

/// Programs whose own flags the docs show (`aws cloudwatch get-metric-statistics
/// --namespace`, `docker run --rm`, `cargo install --locked`, a wrapped command's
/// `CMD [..., "--date", ...]`): a command starting with one of them has no agent flag,
/// unless the agent itself comes later on it (`docker run --rm cloudwatch_metrics_agent
/// check --dry-run`), where what follows the agent's name is the agent's.
const OTHER_PROGRAMS: &[&str] = &[
    "aws",
    "cargo",
    "docker",
    "pip",
    "python",
    "python3",
    "rustup",
    "install",
    "systemctl",
    "journalctl",
    // Dockerfile instructions: COPY --from, and the command CMD hands to the wrapper.
    "COPY",
    "CMD",
];

/// Path prefixes of this repository's own scripts, which take flags of their own
/// (`bench/hot_text.py --check`, `./scripts/test`).
const OTHER_SCRIPTS: &[&str] = &["bench/", "./bench/", "scripts/", "./scripts/"];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and every `docs/*.md`, by path relative to the crate root.
fn pages() -> Vec<(PathBuf, String)> {
    let mut paths = vec![PathBuf::from("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .map(|p| p.strip_prefix(root()).unwrap().to_path_buf())
        .collect();
    docs.sort();
    assert!(!docs.is_empty(), "docs/ has pages");
    paths.extend(docs);
    paths
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(root().join(&p)).unwrap();
            (p, text)
        })
        .collect()
}

/// A Markdown page taken apart: prose paragraphs (fenced code left out), the logical
/// lines of its fenced code blocks (a line ending in `\` joined with the next), and its
/// headings.
#[derive(Default)]
struct Parsed {
    paragraphs: Vec<String>,
    code_lines: Vec<String>,
    headings: Vec<String>,
}

fn parse(text: &str) -> Parsed {
    let mut parsed = Parsed::default();
    let mut fence = false;
    let mut paragraph = String::new();
    let mut continued = String::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fence = !fence;
            if !paragraph.is_empty() {
                parsed.paragraphs.push(std::mem::take(&mut paragraph));
            }
            continue;
        }
        if fence {
            if let Some(start) = line.strip_suffix('\\') {
                continued.push_str(start);
                continued.push(' ');
            } else {
                continued.push_str(line);
                parsed.code_lines.push(std::mem::take(&mut continued));
            }
            continue;
        }
        if line.trim().is_empty() {
            if !paragraph.is_empty() {
                parsed.paragraphs.push(std::mem::take(&mut paragraph));
            }
            continue;
        }
        if line.starts_with('#') {
            parsed
                .headings
                .push(line.trim_start_matches('#').trim().to_owned());
        }
        paragraph.push_str(line);
        paragraph.push('\n');
    }
    assert!(!fence, "a code block is never closed");
    if !paragraph.is_empty() {
        parsed.paragraphs.push(paragraph);
    }
    parsed
}

/// A paragraph's inline code spans, and its text with them taken out.
fn code_spans(paragraph: &str) -> (Vec<String>, String) {
    let mut spans = Vec::new();
    let mut prose = String::new();
    let mut parts = paragraph.split('`');
    while let Some(outside) = parts.next() {
        prose.push_str(outside);
        prose.push(' ');
        if let Some(inside) = parts.next() {
            spans.push(inside.replace('\n', " "));
        }
    }
    (spans, prose)
}

/// GitHub's anchor for a heading: lowercase, spaces to `-`, punctuation other than `-` and
/// `_` dropped (so "Upgrading from 0.1.x" is `upgrading-from-01x`).
fn slug(heading: &str) -> String {
    heading
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            '-' | '_' => Some(c),
            c if c.is_alphanumeric() => Some(c),
            _ => None,
        })
        .flat_map(char::to_lowercase)
        .collect()
}

/// The anchors of a page's headings, with GitHub's `-1`, `-2` for repeated ones.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut anchors = BTreeSet::new();
    for heading in parse(text).headings {
        let base = slug(&heading);
        let n = seen.entry(base.clone()).or_default();
        anchors.insert(if *n == 0 { base } else { format!("{base}-{n}") });
        *n += 1;
    }
    anchors
}

/// The targets of a paragraph's links and images, `[text](target)`, outside code spans.
fn link_targets(paragraph: &str) -> Vec<String> {
    let (_, prose) = code_spans(paragraph);
    let mut targets = Vec::new();
    let mut rest = prose.as_str();
    while let Some(at) = rest.find("](") {
        rest = &rest[at + 2..];
        let end = rest
            .find(')')
            .expect("a link's target is closed on its line");
        targets.push(rest[..end].trim().to_owned());
        rest = &rest[end..];
    }
    targets
}

/// `a/b/../c` → `a/c`; `None` when it climbs out of the crate root.
fn normalise(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    Some(out)
}

/// The `include` patterns of Cargo.toml (`/docs`, `/bench/*.py`): what the crate ships.
fn packaged(path: &Path) -> bool {
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let list = manifest
        .split("include = [")
        .nth(1)
        .and_then(|rest| rest.split(']').next())
        .expect("Cargo.toml has an include list");
    let path = path.to_string_lossy();
    list.lines()
        .filter_map(|l| l.trim().trim_end_matches(',').strip_prefix("\"/"))
        .filter_map(|l| l.strip_suffix('"'))
        .any(|pattern| match pattern.split_once('*') {
            Some((before, after)) => {
                path.starts_with(before)
                    && path.ends_with(after)
                    && !path[before.len()..].contains('/')
            }
            None => *path == *pattern || path.starts_with(&format!("{pattern}/")),
        })
}

/// Fails when a page links to a file that does not exist (a page renamed, `docs/` left
/// out of a link from the README), to a heading that its page does not have (a heading
/// reworded), outside the crate, or to a file the crate does not ship (the link would be
/// dead on crates.io and docs.rs).
#[test]
fn every_relative_link_leads_to_a_file_and_heading_that_exist() {
    let pages = pages();
    let mut checked = 0;
    let mut broken = Vec::new();
    for (page, text) in &pages {
        for paragraph in parse(text).paragraphs {
            for target in link_targets(&paragraph) {
                if ["http://", "https://", "mailto:"]
                    .iter()
                    .any(|scheme| target.starts_with(scheme))
                {
                    continue;
                }
                checked += 1;
                let (file, anchor) = target.split_once('#').unwrap_or((&target, ""));
                let resolved = if file.is_empty() {
                    Some(page.clone())
                } else {
                    normalise(&page.parent().unwrap().join(file))
                };
                let Some(resolved) = resolved else {
                    broken.push(format!("{}: {target} leaves the crate", page.display()));
                    continue;
                };
                if !root().join(&resolved).exists() {
                    broken.push(format!("{}: {target}: no such file", page.display()));
                    continue;
                }
                if !packaged(&resolved) {
                    broken.push(format!(
                        "{}: {target}: not in Cargo.toml's include list",
                        page.display()
                    ));
                }
                if anchor.is_empty() {
                    continue;
                }
                if resolved.extension().is_none_or(|e| e != "md") {
                    broken.push(format!(
                        "{}: {target}: an anchor into a non-page",
                        page.display()
                    ));
                    continue;
                }
                let headings = anchors(&std::fs::read_to_string(root().join(&resolved)).unwrap());
                if !headings.contains(anchor) {
                    broken.push(format!(
                        "{}: {target}: {} has no heading #{anchor} (it has {headings:?})",
                        page.display(),
                        resolved.display()
                    ));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
    assert!(
        checked > 50,
        "only {checked} relative links found: is the parser blind?"
    );
}

/// Fails when a page of `docs/` is not linked from the README, which must lead to every one.
#[test]
fn the_readme_links_to_every_docs_page() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let linked: BTreeSet<String> = parse(&readme)
        .paragraphs
        .iter()
        .flat_map(|p| link_targets(p))
        .map(|t| t.split('#').next().unwrap_or("").to_owned())
        .collect();
    for (page, _) in pages().iter().skip(1) {
        let page = page.to_string_lossy().into_owned();
        assert!(linked.contains(&page), "README.md does not link to {page}");
    }
}

/// Fails when the README grows past the front door's size.
#[test]
fn the_readme_is_at_most_300_lines() {
    let lines = std::fs::read_to_string(root().join("README.md"))
        .unwrap()
        .lines()
        .count();
    assert!(
        lines <= README_MAX_LINES,
        "README.md has {lines} lines, more than {README_MAX_LINES}: move the detail into docs/"
    );
}

/// The long flags (`--period`) in `text`: `--` after a non-word character, then a letter.
fn long_flags(text: &str) -> Vec<String> {
    let mut flags = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i + 2 < chars.len() {
        let after_word = i > 0 && (chars[i - 1].is_alphanumeric() || "-_=/".contains(chars[i - 1]));
        if chars[i] == '-'
            && chars[i + 1] == '-'
            && chars[i + 2].is_ascii_lowercase()
            && !after_word
        {
            let mut end = i + 2;
            while end < chars.len() && (chars[end].is_ascii_alphanumeric() || chars[end] == '-') {
                end += 1;
            }
            flags.push(
                chars[i..end]
                    .iter()
                    .collect::<String>()
                    .trim_end_matches('-')
                    .to_owned(),
            );
            i = end;
        } else {
            i += 1;
        }
    }
    flags
}

/// The `CWMA_` variables named in `text`.
fn variables(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("CWMA_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        let name = name.trim_end_matches('_');
        if name.len() > "CWMA".len() {
            found.insert(name.to_owned());
        }
        rest = &rest[at + "CWMA_".len()..];
    }
    found
}

/// Whether a word of a command is the agent itself: `cloudwatch_metrics_agent`,
/// `/usr/local/bin/cloudwatch_metrics_agent`, `["/cloudwatch_metrics_agent",`.
fn is_the_agent(word: &str) -> bool {
    let word = word.trim_matches(|c| "[]\"',".contains(c));
    word.rsplit(['/', '=']).next() == Some("cloudwatch_metrics_agent")
}

/// The agent's flags in one shell-like command (a code line, or an inline code span).
/// Each part of a pipeline or list (`|`, `;`, `&&`) is looked at alone: leading
/// `NAME=value` words are skipped, and what follows decides whose flags these are.
fn agent_flags_in_command(command: &str) -> Vec<String> {
    let mut flags = Vec::new();
    for part in command.split(['|', ';']).flat_map(|p| p.split("&&")) {
        let words: Vec<&str> = part
            .split_whitespace()
            .skip_while(|w| {
                w.split_once('=')
                    .is_some_and(|(name, _)| is_variable_name(name))
            })
            .collect();
        let Some(program) = words.first() else {
            continue;
        };
        let cargo_run = *program == "cargo" && words.get(1) == Some(&"run");
        let agent_at = if cargo_run {
            // `cargo run -- FLAGS`: the agent's flags come after the first `--`.
            words.iter().position(|w| *w == "--")
        } else {
            words.iter().position(|w| is_the_agent(w))
        };
        let agent_words = match agent_at {
            Some(at) => &words[at + 1..],
            None if OTHER_PROGRAMS.contains(program)
                || OTHER_SCRIPTS.iter().any(|s| program.starts_with(s)) =>
            {
                continue;
            }
            None => &words[..],
        };
        // After a lone `--` come the wrapped command's own arguments.
        let agent_words = agent_words
            .split(|w| w.trim_matches(|c| "[]\"',".contains(c)) == "--")
            .next()
            .unwrap_or(&[]);
        flags.extend(long_flags(&agent_words.join(" ")));
    }
    flags
}

fn is_variable_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// Every agent flag a page names, with where: its prose, its code spans and its code
/// blocks' lines, each read with [`agent_flags_in_command`].
fn documented_flags() -> BTreeMap<String, Vec<String>> {
    let mut found: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (page, text) in pages() {
        let parsed = parse(&text);
        let mut add = |flags: Vec<String>, context: &str| {
            for flag in flags {
                found.entry(flag).or_default().push(format!(
                    "{}: {}",
                    page.display(),
                    context.trim()
                ));
            }
        };
        for paragraph in &parsed.paragraphs {
            let (spans, prose) = code_spans(paragraph);
            add(long_flags(&prose), &prose);
            for span in spans {
                add(agent_flags_in_command(&span), &span);
            }
        }
        for line in &parsed.code_lines {
            add(agent_flags_in_command(line), line);
        }
    }
    found
}

/// `--help` of a run and of `check`: what the binary says it takes.
fn help() -> String {
    let mut text = String::new();
    for args in [&["--help"][..], &["check", "--help"]] {
        let out = common::agent_command(args, &[]).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        text += &String::from_utf8(out.stdout).unwrap();
    }
    text
}

/// Fails when a page names a flag the binary does not have (a renamed flag, a typo such
/// as `--flush-timout`), or when the help lists one no page documents (a new flag
/// without docs).
#[test]
fn every_documented_flag_is_the_binarys_and_every_flag_is_documented() {
    let help = help();
    let known: BTreeSet<String> = long_flags(&help).into_iter().collect();
    assert!(
        known.contains("--namespace") && known.contains("--service-name"),
        "the help lists flags and their aliases: {known:?}"
    );
    let documented = documented_flags();
    let unknown: Vec<String> = documented
        .iter()
        .filter(|(flag, _)| !known.contains(*flag))
        .map(|(flag, places)| format!("{flag}, in {places:#?}"))
        .collect();
    assert!(
        unknown.is_empty(),
        "flags the binary does not take (another program's? then its line must start \
         with that program's name):\n{}",
        unknown.join("\n")
    );
    let undocumented: Vec<&String> = known
        .iter()
        .filter(|flag| !documented.contains_key(*flag))
        .collect();
    assert!(
        undocumented.is_empty(),
        "flags of --help that no page documents: {undocumented:?}"
    );
}

/// Fails when a page names a `CWMA_` variable that is neither in the help nor read by
/// `build.rs` (a build-time switch such as `CWMA_LINK_ORDER`) or by the tests' harness
/// (`CWMA_TEST_PYTHON`), or when the help lists one no page documents.
#[test]
fn every_documented_variable_is_the_binarys_and_every_variable_is_documented() {
    let help = help();
    let known = variables(&help);
    assert!(known.contains("CWMA_NAMESPACE"), "{help}");
    let readers = ["build.rs", "tests/common/mod.rs"]
        .map(|file| std::fs::read_to_string(root().join(file)).unwrap());
    let mut documented = BTreeSet::new();
    for (page, text) in pages() {
        for variable in variables(&text) {
            let quoted = format!("\"{variable}\"");
            assert!(
                known.contains(&variable) || readers.iter().any(|r| r.contains(&quoted)),
                "{}: {variable} is neither in --help nor read by build.rs or the tests",
                page.display()
            );
            documented.insert(variable);
        }
    }
    let undocumented: Vec<&String> = known.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "variables of --help that no page documents: {undocumented:?}"
    );
}

/// `docs/upgrading.md`'s table of 0.1.x spellings: (today's words, [0.1.x words…]) per
/// row, each cell's spellings split at "`, `".
fn old_spellings() -> Vec<(Vec<String>, Vec<Vec<String>>)> {
    let page = std::fs::read_to_string(root().join("docs/upgrading.md")).unwrap();
    let table = page
        .split("| 0.1.x flag | today |\n|---|---|\n")
        .nth(1)
        .expect("docs/upgrading.md has the table `| 0.1.x flag | today |`");
    let words = |cell: &str| -> Vec<Vec<String>> {
        cell.trim()
            .trim_matches('`')
            .split("`, `")
            .map(|s| s.split_whitespace().map(str::to_owned).collect())
            .collect()
    };
    table
        .lines()
        .take_while(|l| l.starts_with('|'))
        .map(|row| {
            let cells: Vec<&str> = row.trim_matches('|').split('|').collect();
            assert_eq!(cells.len(), 2, "{row}");
            let today = words(cells[1]).remove(0);
            (today, words(cells[0]))
        })
        .collect()
}

/// A value for a placeholder of the table (`NS`, `NAME`, `SECS`).
fn value_for(placeholder: &str) -> &'static str {
    match placeholder {
        "NS" => "Docs/Upgrading",
        "NAME" => "upgrading",
        "SECS" => "30",
        other => panic!("no value for {other}: add one to value_for"),
    }
}

fn filled(words: &[String]) -> Vec<String> {
    match words {
        [flag] => vec![flag.clone()],
        [flag, placeholder] => vec![flag.clone(), value_for(placeholder).to_owned()],
        other => panic!("a flag and at most one value: {other:?}"),
    }
}

/// `check` with these flags, its environment emptied (no AWS setup at all, and an
/// endpoint nothing listens on, so that a flag that stopped meaning `--dry-run` fails
/// instead of sending): the exit status and every step's line but the sample's values.
fn check_with(flags: &[String]) -> (Option<i32>, Vec<String>) {
    let mut args = vec![
        "check",
        "--scope",
        "host",
        "--endpoint-url",
        "http://127.0.0.1:9",
    ];
    args.extend(flags.iter().map(String::as_str));
    let out = common::agent_command(&args, &[]).output().unwrap();
    let steps = String::from_utf8_lossy(&out.stdout)
        .lines()
        .chain(String::from_utf8_lossy(&out.stderr).lines())
        .filter(|l| !l.starts_with('{'))
        .map(|l| {
            if l.contains(" sample: ") {
                l.split(':').next().unwrap_or("").to_owned()
            } else {
                l.to_owned()
            }
        })
        .collect();
    (out.status.code(), steps)
}

/// Each 0.1.x spelling docs/upgrading.md lists, run by the binary in place of today's:
/// the same steps, config line and status as today's spelling. Fails when the binary no
/// longer accepts one (exit 2), or takes it as something else (a `-d` that stopped
/// meaning `--dry-run` fails at the region; a `-p` that is not the period changes the
/// config line).
#[test]
fn the_old_spellings_upgrading_lists_are_the_binarys() {
    let rows = old_spellings();
    assert!(rows.len() >= 4, "the table lists 0.1.x's flags: {rows:?}");
    let today: Vec<String> = rows.iter().flat_map(|(words, _)| filled(words)).collect();
    let expected = check_with(&today);
    assert_eq!(
        expected.0,
        Some(0),
        "today's spellings pass check: {expected:#?}"
    );
    assert!(
        expected.1.iter().any(|l| l == "check passed"),
        "{expected:#?}"
    );
    let mut runs = Vec::new();
    for (i, (_, old)) in rows.iter().enumerate() {
        for spelling in old {
            let flags: Vec<String> = rows
                .iter()
                .enumerate()
                .flat_map(|(j, (words, _))| filled(if i == j { spelling } else { words }))
                .collect();
            runs.push((
                spelling.join(" "),
                std::thread::spawn(move || check_with(&flags)),
            ));
        }
    }
    for (spelling, run) in runs {
        let got = run.join().unwrap();
        assert_eq!(
            got, expected,
            "`{spelling}` is not taken as today's spelling"
        );
    }
}

#[test]
fn the_flag_reader_tells_the_agents_flags_from_other_programs() {
    let cases: &[(&str, &[&str])] = &[
        (
            "cargo run -- --namespace Demo --dry-run",
            &["--namespace", "--dry-run"],
        ),
        ("cargo install --locked --path .", &[]),
        (
            "docker run --rm cloudwatch_metrics_agent check --dry-run --service web",
            &["--dry-run", "--service"],
        ),
        (
            "aws cloudwatch get-metric-statistics --namespace N --period 300",
            &[],
        ),
        ("CWMA_LINK_ORDER=0 cargo build --release", &[]),
        (
            "python3 bench/hot_text.py --check target/release/cloudwatch_metrics_agent",
            &[],
        ),
        (
            "cloudwatch_metrics_agent --scope host -- app --port 80",
            &["--scope"],
        ),
        ("--send-delay auto\\|0\\|SECS", &["--send-delay"]),
        ("--dry-run \\| head -1", &["--dry-run"]),
        (
            "# SIGTERM flushes for at most --flush-timeout (5 s); then",
            &["--flush-timeout"],
        ),
        ("RUST_LOG=error,cloudwatch_metrics_agent::sample=debug", &[]),
    ];
    for (command, flags) in cases {
        assert_eq!(agent_flags_in_command(command), *flags, "{command}");
    }
    assert_eq!(slug("Upgrading from 0.1.x"), "upgrading-from-01x");
    assert_eq!(
        slug("Next to the `AWS/ECS` metrics"),
        "next-to-the-awsecs-metrics"
    );
    assert_eq!(
        slug("A fleet and one account's budget"),
        "a-fleet-and-one-accounts-budget"
    );
}
