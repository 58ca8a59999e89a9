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

/// A workspace crate as Cargo describes it: its folder under `crates/` (`core`, `services/gateway`)
/// and the `liveops-*` crates it depends on for its build (not dev or build dependencies).
struct Member {
    folder: String,
    dependencies: Vec<String>,
}

/// Every workspace crate, from `cargo metadata` (Cargo's reading of the manifests).
fn members() -> Vec<Member> {
    let out = liveops_testkit::succeed(
        std::process::Command::new(env!("CARGO"))
            .args([
                "metadata",
                "--no-deps",
                "--offline",
                "--format-version",
                "1",
            ])
            .current_dir(crates()),
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata JSON");
    let crates = crates();
    let mut members: Vec<Member> = meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| {
            let manifest = Path::new(p["manifest_path"].as_str().expect("manifest_path"));
            let folder = manifest
                .parent()
                .and_then(|d| d.strip_prefix(&crates).ok())
                .map(|d| d.to_string_lossy().into_owned())
                .unwrap_or_default();
            let dependencies = p["dependencies"]
                .as_array()
                .expect("dependencies")
                .iter()
                .filter(|d| d["kind"].is_null())
                .filter_map(|d| d["name"].as_str())
                .filter(|n| n.starts_with("liveops-"))
                .map(str::to_owned)
                .collect();
            Member {
                folder,
                dependencies,
            }
        })
        .collect();
    members.sort_by(|a, b| a.folder.cmp(&b.folder));
    assert!(
        members.len() >= 22,
        "only {} workspace crates",
        members.len()
    );
    members
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
        .any(|a| a.meta.to_token_stream().to_string() == "cfg (test)")
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
    let generic = |f: &str| ["core", "module", "http"].contains(&f) || f.starts_with("services/");
    let dirs: Vec<PathBuf> = members()
        .into_iter()
        .filter(|m| generic(&m.folder))
        .map(|m| crates().join(m.folder).join("src"))
        .collect();
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
    for member in members() {
        let layer = member.folder.split('/').next().unwrap_or_default();
        let Some((_, allowed)) = rules.iter().find(|(folder, _)| *folder == layer) else {
            continue; // the binary, the bench crate and the testkit may depend on anything
        };
        checked += 1;
        for dep in &member.dependencies {
            if !allowed.contains(&dep.as_str()) {
                wrong.push(format!("crates/{} depends on {dep}", member.folder));
            }
        }
    }
    assert!(checked >= 19, "only {checked} crates checked");
    assert!(
        wrong.is_empty(),
        "dependencies pointing sideways or up: {wrong:#?}"
    );
}
