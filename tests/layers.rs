//! The layers of DESIGN.md §1 as the imports show them: every `crate::LAYER` a file of `src/`
//! names must be one its own layer may use, so that imports only point down (transport ->
//! engine -> broker -> store, everything -> codec) and a lower layer never reaches up. A new
//! arrow that points up fails here with the file and line, not in a reviewer's reading.

#![allow(clippy::unwrap_used)] // a test, bench or tool: a panic here is a failed run, not a broker down

use std::fs;
use std::path::{Path, PathBuf};

/// Each layer (a top-level module of `src/`) and the layers it may import.
const ALLOWED: &[(&str, &[&str])] = &[
    ("codec", &[]),
    ("int_map", &[]),
    ("logging", &[]),
    ("store", &["int_map"]),
    ("message", &["codec"]),
    ("selector", &["codec", "message"]),
    // The [storage] section parses into the store's own setting types.
    ("config", &["store"]),
    (
        "broker",
        &["codec", "config", "int_map", "message", "selector", "store"],
    ),
    (
        "engine",
        &[
            "broker", "codec", "config", "int_map", "logging", "message", "selector", "store",
        ],
    ),
    (
        "transport",
        &[
            "broker", "codec", "config", "engine", "int_map", "logging", "message", "store",
        ],
    ),
    (
        "admin",
        &[
            "broker",
            "codec",
            "config",
            "engine",
            "int_map",
            "logging",
            "message",
            "store",
            "transport",
        ],
    ),
];

/// Files above every layer: the crate root, the binary and the command-line tools may use all.
const TOP: &[&str] = &["lib", "main", "ctl", "repair", "cli"];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The layer a file belongs to: its first path component under `src/`, without `.rs`.
fn layer_of(src: &Path, file: &Path) -> String {
    let first = file.strip_prefix(src).unwrap().components().next().unwrap();
    let name = first.as_os_str().to_string_lossy();
    name.trim_end_matches(".rs").to_owned()
}

/// The layers `line` names as `crate::NAME`.
fn named_layers(line: &str) -> Vec<&str> {
    let mut found = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("crate::") {
        let after = &rest[at + "crate::".len()..];
        let end = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        // `$crate::` in a macro is not a layer reference.
        if !rest[..at].ends_with('$') {
            found.push(&after[..end]);
        }
        rest = &after[end..];
    }
    found
}

#[test]
fn imports_point_down_the_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let layers: Vec<&str> = ALLOWED.iter().map(|(l, _)| *l).collect();
    let mut wrong = Vec::new();
    for file in &files {
        let layer = layer_of(&src, file);
        if TOP.contains(&layer.as_str()) {
            continue;
        }
        let allowed = ALLOWED
            .iter()
            .find(|(l, _)| *l == layer)
            .unwrap_or_else(|| {
                panic!(
                    "{}: layer '{layer}' is not in tests/layers.rs: add it with what it may import",
                    file.display()
                )
            })
            .1;
        let text = fs::read_to_string(file).unwrap();
        for (n, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            for named in named_layers(line) {
                if named != layer && layers.contains(&named) && !allowed.contains(&named) {
                    wrong.push(format!(
                        "{}:{}: {layer} imports {named}: {}",
                        file.strip_prefix(&src).unwrap().display(),
                        n + 1,
                        line.trim()
                    ));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports that point up a layer (DESIGN.md §1):\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_checker_sees_a_reference_and_ignores_macros() {
    assert_eq!(
        named_layers("use crate::transport::registry::Registry;"),
        ["transport"]
    );
    assert_eq!(
        named_layers("let x = crate::codec::frame::decode(crate::store::X);"),
        ["codec", "store"]
    );
    assert!(named_layers("$crate::engine::x!()").is_empty());
}
