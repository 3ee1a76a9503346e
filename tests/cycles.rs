//! No import cycle larger than two files in `src/`. Two files that name each other are a
//! pair a reader can hold in mind (a module and its tests, a type and its one helper); three
//! or more tied in a ring are a knot nobody can read from one end. The graph is built from the
//! source text: every `use` and every `crate::`/`super::` path in a file is followed —
//! through modules, `pub use` re-exports and private imports — to the file that defines the
//! item, so importing a sibling through a parent's re-export counts as importing the sibling.
//! The binary (`main.rs`, `cli/`) is a crate of its own and is left out.

#![allow(clippy::unwrap_used)] // a test, bench or tool: a panic here is a failed run, not a broker down

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

/// A module path from the crate root: `["broker", "queue", "entry"]`.
type ModPath = Vec<String>;

/// The library's module files and the imports each declares.
struct Tree {
    files: BTreeMap<ModPath, PathBuf>,
    /// Per module: every `use` it declares, as (name bound, full path).
    uses: HashMap<ModPath, Vec<(String, Vec<String>)>>,
    /// Per module: the names it only re-exports (`pub use`) and never names again itself.
    facade: HashMap<ModPath, BTreeSet<String>>,
}

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

/// The module a file is, by its place under `src/`.
fn module_of(src: &Path, file: &Path) -> ModPath {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut path: ModPath = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if path.last().is_some_and(|l| l == "mod" || l == "lib") {
        path.pop();
    }
    path
}

/// Source text without line comments (whole-line `//` only: a `//` inside a string, as in a
/// URL, must not cut the line).
fn code_lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines().filter(|l| !l.trim_start().starts_with("//"))
}

/// A file's code as if its inline modules (`mod tests { … }`) were the file itself: their
/// `super::` is the file's own module, so it is read as `self::`.
fn code(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    // Brace depth at which the innermost inline module opened, and the depth now.
    let (mut inline_at, mut depth): (Option<i32>, i32) = (None, 0);
    for line in code_lines(text) {
        let trimmed = line.trim();
        let opens_module = trimmed.ends_with('{')
            && ["mod ", "pub mod ", "pub(crate) mod "]
                .iter()
                .any(|p| trimmed.starts_with(p));
        if opens_module && inline_at.is_none() {
            inline_at = Some(depth);
        }
        if inline_at.is_some() {
            out.push_str(&line.replace("super::", "self::"));
        } else {
            out.push_str(line);
        }
        out.push('\n');
        depth += line.matches('{').count() as i32 - line.matches('}').count() as i32;
        if inline_at.is_some_and(|at| depth <= at) {
            inline_at = None;
        }
    }
    out
}

/// The `use` declarations of a file, each as the text between `use` and `;`, and whether it
/// is a `pub` one.
fn use_statements(text: &str) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    let mut public = false;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if let Some(stmt) = &mut current {
            stmt.push_str(trimmed);
        } else {
            let body = ["use ", "pub use ", "pub(crate) use ", "pub(super) use "]
                .iter()
                .find_map(|p| trimmed.strip_prefix(p));
            let Some(body) = body else {
                continue;
            };
            current = Some(body.to_owned());
            public = trimmed.starts_with("pub");
        }
        if let Some(stmt) = current.as_ref().filter(|s| s.contains(';')) {
            out.push((stmt[..stmt.find(';').unwrap()].to_owned(), public));
            current = None;
        }
    }
    out
}

/// A use tree expanded into (name bound, path) pairs: `a::{b, c::{self, D as E}}` gives
/// `(b, a::b)`, `(c, a::c)`, `(E, a::c::D)`. A glob binds `*`.
fn expand(tree: &str) -> Vec<(String, Vec<String>)> {
    fn go(prefix: &[String], tree: &str, out: &mut Vec<(String, Vec<String>)>) {
        let tree = tree.trim();
        if tree.is_empty() {
            return;
        }
        if let Some(open) = tree.find('{') {
            let mut path = prefix.to_vec();
            path.extend(segments(tree[..open].trim_end_matches("::")));
            let inner = &tree[open + 1..tree.rfind('}').unwrap()];
            for part in split_top(inner) {
                go(&path, part, out);
            }
            return;
        }
        let (path_text, alias) = match tree.split_once(" as ") {
            Some((p, a)) => (p, Some(a.trim().to_owned())),
            None => (tree, None),
        };
        let mut path = prefix.to_vec();
        path.extend(segments(path_text));
        if path.last().is_some_and(|l| l == "self") {
            path.pop();
        }
        let Some(last) = path.last().cloned() else {
            return;
        };
        out.push((alias.unwrap_or(last), path));
    }
    let mut out = Vec::new();
    go(&[], tree, &mut out);
    out
}

fn segments(path: &str) -> Vec<String> {
    path.split("::")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `inner` split at the commas that are not inside braces.
fn split_top(inner: &str) -> Vec<&str> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
}

/// How often `name` occurs in `text` as a whole identifier.
fn mentions(text: &str, name: &str) -> usize {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    text.match_indices(name)
        .filter(|(at, _)| {
            let before = text[..*at].chars().next_back();
            let after = text[at + name.len()..].chars().next();
            !before.is_some_and(ident) && !after.is_some_and(ident)
        })
        .count()
}

/// Every `crate::…`, `super::…` and `self::…` path written in code outside `use` lines.
fn inline_paths(text: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("use ") || trimmed.contains(" use ") {
            continue;
        }
        for start in ["crate::", "super::"] {
            let mut rest = line;
            while let Some(at) = rest.find(start) {
                let before = rest[..at].chars().next_back();
                let path_text: String = rest[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                    .collect();
                rest = &rest[at + path_text.len().max(1)..];
                // `$crate::` in a macro, or an identifier ending in "crate", is not a path.
                if before.is_some_and(|c| c == '$' || c.is_ascii_alphanumeric() || c == '_') {
                    continue;
                }
                out.push(segments(&path_text));
            }
        }
    }
    out
}

impl Tree {
    fn load(src: &Path) -> Tree {
        let mut paths = Vec::new();
        rust_files(src, &mut paths);
        let mut files = BTreeMap::new();
        for file in paths {
            let module = module_of(src, &file);
            if module.first().is_some_and(|m| m == "main" || m == "cli") {
                continue;
            }
            files.insert(module, file);
        }
        // `#[path = "x.rs"] mod tests;` puts x.rs at `<this module>::tests`.
        let mut moved = Vec::new();
        for (module, file) in &files {
            let text = fs::read_to_string(file).unwrap();
            let mut lines = code_lines(&text).peekable();
            while let Some(line) = lines.next() {
                let Some(target) = line.trim().strip_prefix("#[path = \"") else {
                    continue;
                };
                let target = target.trim_end_matches("\"]");
                let Some(name) = lines
                    .peek()
                    .and_then(|l| l.trim().strip_prefix("mod "))
                    .map(|n| n.trim_end_matches(';').to_owned())
                else {
                    continue;
                };
                let at = file.parent().unwrap().join(target);
                let mut into = module.clone();
                into.push(name);
                moved.push((module_of(src, &at), into));
            }
        }
        for (from, to) in moved {
            if let Some(file) = files.remove(&from) {
                files.insert(to, file);
            }
        }
        let mut uses = HashMap::new();
        let mut facade = HashMap::new();
        for (module, file) in &files {
            let text = code(&fs::read_to_string(file).unwrap());
            let mut bound = Vec::new();
            let mut only_exported = BTreeSet::new();
            for (stmt, public) in use_statements(&text) {
                for (name, path) in expand(&stmt) {
                    // A façade (`pub use child::X` in mod.rs) lets others reach X; it is a
                    // dependency of this file only if the file also names X itself.
                    if public && name != "*" && mentions(&text, &name) <= 1 {
                        only_exported.insert(name.clone());
                    }
                    bound.push((name, path));
                }
            }
            uses.insert(module.clone(), bound);
            facade.insert(module.clone(), only_exported);
        }
        Tree {
            files,
            uses,
            facade,
        }
    }

    /// The file that defines what `path`, written in module `from`, names; `None` for
    /// another crate.
    fn resolve(&self, from: &ModPath, path: &[String], depth: usize) -> Option<ModPath> {
        if depth > 16 || path.is_empty() {
            return None;
        }
        let (mut module, rest) = match path[0].as_str() {
            "crate" => (ModPath::new(), &path[1..]),
            "self" => (from.clone(), &path[1..]),
            "super" => {
                let mut module = from.clone();
                let mut rest = path;
                while rest.first().is_some_and(|s| s == "super") {
                    module.pop();
                    rest = &rest[1..];
                }
                (module, rest)
            }
            first => {
                let mut child = from.clone();
                child.push(first.to_owned());
                if self.files.contains_key(&child) {
                    (from.clone(), path)
                } else {
                    // An item this module imported (`use x::Y` then `Y::z`) or another crate.
                    let (_, target) = self.uses.get(from)?.iter().find(|(n, _)| n == first)?;
                    return self.resolve(from, target, depth + 1);
                }
            }
        };
        for seg in rest {
            let mut child = module.clone();
            child.push(seg.clone());
            if self.files.contains_key(&child) {
                module = child;
                continue;
            }
            if seg == "*" {
                break;
            }
            // An item of `module`: defined there, or imported (and so re-exported) from
            // somewhere else, which is where the dependency really points.
            let imported = self.uses.get(&module).and_then(|u| {
                u.iter()
                    .find(|(name, _)| name == seg)
                    .and_then(|(_, target)| self.resolve(&module, target, depth + 1))
            });
            return Some(imported.unwrap_or(module));
        }
        Some(module)
    }

    /// Each file and the files it imports from.
    fn graph(&self) -> BTreeMap<ModPath, BTreeSet<ModPath>> {
        let mut graph = BTreeMap::new();
        for (module, file) in &self.files {
            let text = code(&fs::read_to_string(file).unwrap());
            let facade = &self.facade[module];
            let mut paths: Vec<Vec<String>> = self.uses[module]
                .iter()
                .filter(|(name, _)| !facade.contains(name))
                .map(|(_, p)| p.clone())
                .collect();
            paths.extend(inline_paths(&text));
            let targets: BTreeSet<ModPath> = paths
                .iter()
                .filter_map(|p| self.resolve(module, p, 0))
                .filter(|t| t != module && self.files.contains_key(t))
                .collect();
            graph.insert(module.clone(), targets);
        }
        graph
    }
}

/// The strongly connected components of `graph` (Tarjan), each sorted.
fn components(graph: &BTreeMap<ModPath, BTreeSet<ModPath>>) -> Vec<Vec<ModPath>> {
    struct State<'a> {
        graph: &'a BTreeMap<ModPath, BTreeSet<ModPath>>,
        index: HashMap<&'a ModPath, usize>,
        low: HashMap<&'a ModPath, usize>,
        stack: Vec<&'a ModPath>,
        on_stack: BTreeSet<&'a ModPath>,
        out: Vec<Vec<ModPath>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a ModPath) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in &s.graph[v] {
            if !s.index.contains_key(w) {
                visit(s, w);
                let low = s.low[v].min(s.low[w]);
                s.low.insert(v, low);
            } else if s.on_stack.contains(w) {
                let low = s.low[v].min(s.index[w]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            loop {
                let w = s.stack.pop().unwrap();
                s.on_stack.remove(w);
                component.push(w.clone());
                if w == v {
                    break;
                }
            }
            component.sort();
            s.out.push(component);
        }
    }
    let mut state = State {
        graph,
        index: HashMap::new(),
        low: HashMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !state.index.contains_key(v) {
            visit(&mut state, v);
        }
    }
    state.out
}

#[test]
fn no_import_cycle_larger_than_two_files() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let tree = Tree::load(&src);
    let graph = tree.graph();
    // The checker sees real arrows, through re-exports: the engine's session names its links,
    // and the broker's router reaches the queue through `broker::queue`'s re-export.
    let arrow = |from: &str, to: &str| graph[&segments(from)].contains(&segments(to));
    assert!(arrow("engine::session", "engine::link"));
    assert!(arrow("broker::router", "broker::queue"));
    let name = |m: &ModPath| {
        let file = &tree.files[m];
        file.strip_prefix(&src).unwrap().display().to_string()
    };
    let knots: Vec<String> = components(&graph)
        .into_iter()
        .filter_map(|c| longer_cycle(&graph, &c))
        .map(|arrows| {
            let arrows: Vec<String> = arrows
                .iter()
                .map(|(from, to)| format!("  {} -> {}", name(from), name(to)))
                .collect();
            arrows.join("\n")
        })
        .collect();
    assert!(
        knots.is_empty(),
        "import cycles through more than two files (break one arrow, e.g. import from the \
         defining file instead of a re-export):\n{}",
        knots.join("\n\n")
    );
}

/// Whether the strongly connected `component` holds a cycle through three or more files, and
/// its arrows if so. It holds none exactly when every arrow inside it has its reverse (each is
/// a pair) and the pairs form a tree (a star of two-file cycles around a module, say): a
/// one-way arrow u -> v closes a longer cycle with the way back from v to u, and pairs that
/// form a ring make one as well.
fn longer_cycle(
    graph: &BTreeMap<ModPath, BTreeSet<ModPath>>,
    component: &[ModPath],
) -> Option<Vec<(ModPath, ModPath)>> {
    if component.len() < 3 {
        return None;
    }
    let inside: BTreeSet<&ModPath> = component.iter().collect();
    let arrows: Vec<(ModPath, ModPath)> = component
        .iter()
        .flat_map(|from| {
            graph[from]
                .iter()
                .filter(|to| inside.contains(to))
                .map(move |to| (from.clone(), to.clone()))
        })
        .collect();
    let one_way = arrows.iter().any(|(from, to)| !graph[to].contains(from));
    let pairs = arrows.len() / 2;
    (one_way || pairs != component.len() - 1).then_some(arrows)
}

#[test]
fn the_checker_follows_trees_reexports_and_cycles() {
    assert_eq!(
        expand("crate::a::{b, c::{self, D as E}, f::*}"),
        [
            ("b".to_owned(), segments("crate::a::b")),
            ("c".to_owned(), segments("crate::a::c")),
            ("E".to_owned(), segments("crate::a::c::D")),
            ("*".to_owned(), segments("crate::a::f::*")),
        ]
    );
    assert_eq!(
        use_statements(&code(
            "use a::{\n    b,\n    c,\n};\n// use x;\npub(crate) use d::e;"
        )),
        [("a::{b,c,}".to_owned(), false), ("d::e".to_owned(), true)]
    );
    assert_eq!(
        code("mod tests {\n    use super::*;\n}\nuse super::x;"),
        "mod tests {\n    use self::*;\n}\nuse super::x;\n"
    );
    assert_eq!(mentions("pub use x::Ab; fn f(_: Ab, _: Abc)", "Ab"), 2);
    assert_eq!(
        inline_paths("let x = crate::a::B::new($crate::m::x, super::c::d);"),
        [segments("crate::a::B::new"), segments("super::c::d")]
    );
    let m = |s: &str| segments(s);
    let mut files = BTreeMap::new();
    for module in [m(""), m("a"), m("a::x"), m("a::y"), m("b")] {
        files.insert(module, PathBuf::new());
    }
    let uses = HashMap::from([
        (m(""), vec![]),
        (m("a"), vec![("X".to_owned(), m("x::X"))]),
        (m("a::x"), vec![]),
        (m("a::y"), vec![]),
        (m("b"), vec![]),
    ]);
    let facade = uses.keys().map(|m| (m.clone(), BTreeSet::new())).collect();
    let tree = Tree {
        files,
        uses,
        facade,
    };
    // Through the parent's re-export to the defining file.
    assert_eq!(
        tree.resolve(&m("b"), &m("crate::a::X::new"), 0),
        Some(m("a::x"))
    );
    assert_eq!(tree.resolve(&m("a::y"), &m("super::X"), 0), Some(m("a::x")));
    assert_eq!(tree.resolve(&m("a::y"), &m("std::sync::Arc"), 0), None);
    let graph = BTreeMap::from([
        (m("a"), BTreeSet::from([m("b")])),
        (m("b"), BTreeSet::from([m("c")])),
        (m("c"), BTreeSet::from([m("a")])),
        (m("d"), BTreeSet::from([m("a")])),
    ]);
    let mut found = components(&graph);
    found.sort();
    assert_eq!(found, [vec![m("a"), m("b"), m("c")], vec![m("d")]]);
    assert!(
        longer_cycle(&graph, &found[0]).is_some(),
        "a -> b -> c -> a"
    );
    // Pairs around one module are no longer cycle; a ring of pairs is.
    let pairs = |edges: &[(&str, &str)]| {
        let mut graph: BTreeMap<ModPath, BTreeSet<ModPath>> = BTreeMap::new();
        for (a, b) in edges {
            graph.entry(m(a)).or_default().insert(m(b));
            graph.entry(m(b)).or_default().insert(m(a));
        }
        let all: Vec<ModPath> = graph.keys().cloned().collect();
        longer_cycle(&graph, &all).is_some()
    };
    assert!(!pairs(&[("m", "x"), ("m", "y"), ("m", "z")]));
    assert!(pairs(&[("x", "y"), ("y", "z"), ("z", "x")]));
}
