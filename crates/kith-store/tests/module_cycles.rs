//! No module of kith-store imports, directly or around a circle, a module that imports it.
//!
//! The crate root and `tx.rs` only declare modules and re-export; every other module
//! imports what it needs from the module that defines it. This test reads the sources,
//! takes each `crate::…` and `super::…` path outside comments and test modules as an import
//! of the longest module that path names (an item of the root, such as `crate::StoreError`,
//! counts as an import of the root), and fails on the first circle it finds.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// `src/tx/rows.rs` → `tx::rows`; `src/lib.rs` → `` (the root).
fn module_of(source_root: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(source_root).expect("a file under src");
    let mut parts: Vec<String> = relative.iter().map(|part| part.to_string_lossy().into_owned()).collect();
    let last = parts.pop().expect("a file name");
    let stem = last.trim_end_matches(".rs");
    if stem != "lib" && stem != "mod" {
        parts.push(stem.to_owned());
    }
    parts.join("::")
}

fn rust_files(directory: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(directory).expect("a readable source directory") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            found.push(path);
        }
    }
}

/// The module a path names: the longest known module among its prefixes.
fn resolve(modules: &BTreeSet<String>, segments: &[&str]) -> String {
    (0..=segments.len())
        .rev()
        .map(|length| segments[..length].join("::"))
        .find(|candidate| modules.contains(candidate))
        .unwrap_or_default()
}

/// Every module this source imports (outside comments and `#[cfg(test)] mod tests`).
fn imports(module: &str, source: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let code = source.split("#[cfg(test)]\nmod tests").next().unwrap_or_default();
    let parent: Vec<&str> = if module.is_empty() { Vec::new() } else { module.split("::").collect() };
    let parent = &parent[..parent.len().saturating_sub(1)];
    let mut found = BTreeSet::new();
    for line in code.lines().map(str::trim_start).filter(|line| !line.starts_with("//")) {
        for (start, _) in line.match_indices("crate::").chain(line.match_indices("super::")) {
            let preceded_by_word =
                line[..start].chars().next_back().is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':');
            if preceded_by_word {
                continue; // `kith_store::…`, or the middle of a longer path
            }
            let path: String =
                line[start..].chars().take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':').collect();
            let mut segments: Vec<&str> = path.split("::").filter(|segment| !segment.is_empty()).collect();
            let mut base: Vec<&str> = Vec::new();
            match segments.first() {
                Some(&"crate") => {}
                Some(&"super") => base.extend_from_slice(parent),
                _ => continue,
            }
            segments.remove(0);
            base.extend(segments);
            let target = resolve(modules, &base);
            if target != module {
                found.insert(target);
            }
        }
        // `use child::Item;` / `pub use child::*;`: a path relative to this module.
        let relative = ["use ", "pub use ", "pub(crate) use ", "pub(super) use "]
            .iter()
            .find_map(|prefix| line.strip_prefix(prefix))
            .filter(|rest| !rest.starts_with("crate::") && !rest.starts_with("super::"));
        if let Some(rest) = relative {
            let path: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':').collect();
            let mut base: Vec<&str> = if module.is_empty() { Vec::new() } else { module.split("::").collect() };
            let first = path.split("::").next().unwrap_or_default();
            let child = if module.is_empty() { first.to_owned() } else { format!("{module}::{first}") };
            if modules.contains(&child) {
                base.extend(path.split("::").filter(|segment| !segment.is_empty()));
                found.insert(resolve(modules, &base));
            }
        }
    }
    found
}

#[test]
fn no_module_imports_one_that_imports_it() {
    let source_root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&source_root, &mut files);
    let modules: BTreeSet<String> = files.iter().map(|file| module_of(&source_root, file)).collect();
    assert!(modules.contains("tx::transaction") && modules.contains(""), "{modules:?}");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let module = module_of(&source_root, file);
        let source = std::fs::read_to_string(file).expect("a readable source file");
        graph.insert(module.clone(), imports(&module, &source, &modules));
    }

    // Depth-first search; a module met again while still on the path closes a circle.
    fn visit<'g>(
        module: &'g str,
        graph: &'g BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<&'g str>,
        done: &mut BTreeSet<&'g str>,
    ) -> Option<String> {
        if let Some(at) = path.iter().position(|on_path| *on_path == module) {
            let mut circle: Vec<&str> = path[at..].to_vec();
            circle.push(module);
            return Some(
                circle.iter().map(|name| if name.is_empty() { "(root)" } else { name }).collect::<Vec<_>>().join(" → "),
            );
        }
        if !done.insert(module) {
            return None;
        }
        path.push(module);
        for next in graph.get(module).into_iter().flatten() {
            if let Some(circle) = visit(next, graph, path, done) {
                return Some(circle);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    for module in graph.keys() {
        if let Some(circle) = visit(module, &graph, &mut Vec::new(), &mut done) {
            panic!("kith-store's modules import one another in a circle: {circle}\nimports: {graph:#?}");
        }
    }
}

#[test]
fn imports_are_read_as_the_modules_they_name() {
    let modules: BTreeSet<String> =
        ["", "tx", "tx::rows", "tx::transaction", "error", "sqlite", "sqlite::errors"].map(str::to_owned).into();
    let source = "use super::rows::{coded, corrupt};\nuse crate::error::StoreError;\n// use crate::sqlite;\nuse kith_store::tx::Tx;\n";
    assert_eq!(imports("tx::hl7", source, &modules), ["error".to_owned(), "tx::rows".to_owned()].into());
    assert_eq!(
        imports("sqlite::checkpoint", "use super::errors::map_error;", &modules),
        ["sqlite::errors".to_owned()].into()
    );
    assert_eq!(imports("tx::hl7", "use crate::{Param, StoreError};", &modules), [String::new()].into());
    assert_eq!(imports("tx::hl7", "use super::{coded, corrupt};", &modules), ["tx".to_owned()].into());
    assert_eq!(
        imports("tx", "mod rows;\npub use rows::Row;\npub use transaction::*;", &modules),
        ["tx::rows".to_owned(), "tx::transaction".to_owned()].into()
    );
    assert_eq!(
        imports("", "pub use tx::*;\npub use error::StoreError;", &modules),
        ["error".to_owned(), "tx".to_owned()].into()
    );
}
