//! The house rules of the layout (docs/ARCHITECTURE.md), checked on the source: ports stay small,
//! the binary's files stay short, and only the SQLite adapter (and the wiring that picks it) knows
//! about SQLite.

use std::fs;
use std::path::{Path, PathBuf};

use quote::ToTokens;

/// The most methods a trait in `liveops-core` may have.
const MAX_TRAIT_METHODS: usize = 8;
/// The most lines a file under `crates/server/src` may have.
const MAX_SERVER_FILE_LINES: usize = 300;

fn crates() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("crates/")
        .to_path_buf()
}

/// Every `.rs` file below `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                todo.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    assert!(!out.is_empty(), "no Rust file under {}", dir.display());
    out
}

fn parse(path: &Path) -> syn::File {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn is_test_only(attrs: &[syn::Attribute]) -> bool {
    attrs
        .iter()
        .any(|a| a.path().is_ident("cfg") && a.meta.to_token_stream().to_string().contains("test"))
}

/// The items of a file with inline modules opened and `#[cfg(test)]` items left out.
fn product_items<'a>(items: &'a [syn::Item], out: &mut Vec<&'a syn::Item>) {
    for item in items {
        match item {
            syn::Item::Mod(m) if is_test_only(&m.attrs) => {}
            syn::Item::Mod(syn::ItemMod {
                content: Some((_, inner)),
                ..
            }) => product_items(inner, out),
            syn::Item::Fn(f) if is_test_only(&f.attrs) => {}
            syn::Item::Impl(i) if is_test_only(&i.attrs) => {}
            other => out.push(other),
        }
    }
}

#[test]
fn no_trait_in_core_has_more_than_eight_methods() {
    let mut traits = 0;
    let mut wide = Vec::new();
    for path in rust_files(&crates().join("core/src")) {
        let file = parse(&path);
        let mut items = Vec::new();
        product_items(&file.items, &mut items);
        for item in items {
            if let syn::Item::Trait(t) = item {
                traits += 1;
                let methods = t
                    .items
                    .iter()
                    .filter(|i| matches!(i, syn::TraitItem::Fn(_)))
                    .count();
                if methods > MAX_TRAIT_METHODS {
                    wide.push(format!("{} in {}: {methods}", t.ident, path.display()));
                }
            }
        }
    }
    assert!(
        traits >= 20,
        "only {traits} traits found: is the path right?"
    );
    assert!(
        wide.is_empty(),
        "traits over {MAX_TRAIT_METHODS} methods: {wide:#?}"
    );
}

#[test]
fn no_file_of_the_binary_is_longer_than_three_hundred_lines() {
    let long: Vec<String> = rust_files(&crates().join("server/src"))
        .into_iter()
        .filter_map(|path| {
            let lines = fs::read_to_string(&path).expect("read").lines().count();
            (lines > MAX_SERVER_FILE_LINES).then(|| format!("{}: {lines}", path.display()))
        })
        .collect();
    assert!(
        long.is_empty(),
        "files over {MAX_SERVER_FILE_LINES} lines: {long:#?}"
    );
}

#[test]
fn generic_code_does_not_name_sqlite() {
    let mut dirs = vec![
        crates().join("core/src"),
        crates().join("module/src"),
        crates().join("http/src"),
    ];
    for service in fs::read_dir(crates().join("services")).expect("crates/services") {
        dirs.push(service.expect("dir entry").path().join("src"));
    }
    assert!(dirs.len() >= 11, "services not found: {dirs:?}");
    let mut naming = Vec::new();
    for path in dirs.iter().flat_map(|d| rust_files(d)) {
        let file = parse(&path);
        let mut items = Vec::new();
        product_items(&file.items, &mut items);
        let text = items
            .iter()
            .map(|i| i.to_token_stream().to_string().to_lowercase())
            .collect::<String>();
        if text.contains("sqlite") {
            naming.push(path.display().to_string());
        }
    }
    assert!(naming.is_empty(), "generic code naming SQLite: {naming:#?}");
}

/// The `liveops-*` crates named in a manifest's `[dependencies]` (not dev or build ones).
fn liveops_dependencies(manifest: &Path) -> Vec<String> {
    let text =
        fs::read_to_string(manifest).unwrap_or_else(|e| panic!("{}: {e}", manifest.display()));
    let mut in_deps = false;
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_deps = line == "[dependencies]";
        } else if in_deps && line.starts_with("liveops-") {
            let name = line.split(['.', ' ', '=']).next().unwrap_or_default();
            out.push(name.to_owned());
        }
    }
    out
}

#[test]
fn dependencies_only_point_down() {
    let rules: [(&str, &[&str]); 5] = [
        ("core", &[]),
        ("http", &["liveops-core"]),
        ("module", &["liveops-core", "liveops-http"]),
        (
            "services",
            &["liveops-core", "liveops-http", "liveops-module"],
        ),
        ("adapters", &["liveops-core", "liveops-sqlite-file"]),
    ];
    let mut checked = 0;
    let mut wrong = Vec::new();
    for (folder, allowed) in rules {
        let dir = crates().join(folder);
        let manifests = if dir.join("Cargo.toml").exists() {
            vec![dir.join("Cargo.toml")]
        } else {
            let mut found: Vec<PathBuf> = fs::read_dir(&dir)
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .map(|e| e.expect("dir entry").path().join("Cargo.toml"))
                .filter(|m| m.exists())
                .collect();
            found.sort();
            found
        };
        for manifest in manifests {
            checked += 1;
            for dep in liveops_dependencies(&manifest) {
                if !allowed.contains(&dep.as_str()) {
                    wrong.push(format!("{} depends on {dep}", manifest.display()));
                }
            }
        }
    }
    assert!(checked >= 19, "only {checked} manifests found");
    assert!(
        wrong.is_empty(),
        "dependencies pointing sideways or up: {wrong:#?}"
    );
}
