//! The house checks its own rules: what ARCHITECTURE.md states about the code's shape, tested
//! on the source tree itself, so that the document and the code cannot drift apart unnoticed.

use std::path::{Path, PathBuf};

/// The workspace root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("the workspace root")
}

/// Every `.rs` file below `dir`, build output left out.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let path = e.path();
        let name = e.file_name();
        if path.is_dir() {
            if name != "target" && !name.to_string_lossy().starts_with('.') {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn every_rust_file_opens_with_a_module_comment_saying_what_it_is() {
    let root = root();
    let mut files = Vec::new();
    rust_files(&root.join("crates"), &mut files);
    rust_files(&root.join("fuzz"), &mut files);
    assert!(files.len() > 100, "only {} files found below {}", files.len(), root.display());
    let bare: Vec<String> = files
        .iter()
        .filter(|f| !read(f).starts_with("//!"))
        .map(|f| f.strip_prefix(&root).unwrap_or(f).display().to_string())
        .collect();
    assert!(bare.is_empty(), "files without a `//!` comment at the top: {bare:?}");
}

/// The names under `[section]` of a Cargo manifest, up to the next section.
fn section_keys(manifest: &str, section: &str) -> Vec<String> {
    let header = format!("[{section}]");
    manifest
        .lines()
        .skip_while(|l| l.trim() != header)
        .skip(1)
        .take_while(|l| !l.trim_start().starts_with('['))
        // `name = ...`, `name.workspace = true`
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.split('.').next().unwrap_or("").trim().to_owned()))
        .filter(|k| !k.is_empty() && !k.starts_with('#'))
        .collect()
}

#[test]
fn the_core_depends_on_thiserror_alone() {
    let manifest = read(&root().join("crates/openmvs-core/Cargo.toml"));
    assert_eq!(
        section_keys(&manifest, "dependencies"),
        ["thiserror"],
        "the core does no IO: ARCHITECTURE.md"
    );
    assert!(
        !manifest.contains("[target."),
        "the core has no platform-specific dependencies: ARCHITECTURE.md"
    );
}

#[test]
fn every_crate_has_its_section_in_the_architecture_map() {
    let root = root();
    let map = read(&root.join("ARCHITECTURE.md"));
    let mut missing = Vec::new();
    for e in std::fs::read_dir(root.join("crates")).expect("crates/").flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if e.path().join("Cargo.toml").exists() && !map.contains(&format!("### `crates/{name}`")) {
            missing.push(name);
        }
    }
    assert!(missing.is_empty(), "crates without a section in ARCHITECTURE.md: {missing:?}");
}

#[test]
fn no_crate_allows_unsafe_code() {
    let root = root();
    let workspace = read(&root.join("Cargo.toml"));
    assert!(workspace.contains("unsafe_code = \"forbid\""), "the workspace forbids unsafe code");
    for e in std::fs::read_dir(root.join("crates")).expect("crates/").flatten() {
        let manifest = e.path().join("Cargo.toml");
        if manifest.exists() {
            let text = read(&manifest);
            assert!(
                text.contains("[lints]") && text.contains("workspace = true"),
                "{} does not take the workspace's lints",
                manifest.display()
            );
        }
    }
    let mut files = Vec::new();
    rust_files(&root.join("crates"), &mut files);
    // Spelt in pieces, so that this file does not name what it looks for.
    let patterns = [concat!("allow(", "unsafe_code)"), concat!("unsafe", " {"), concat!("unsafe", " fn ")];
    let allowing: Vec<String> = files
        .iter()
        .filter(|f| {
            let t = read(f);
            patterns.iter().any(|p| t.contains(p))
        })
        .map(|f| f.strip_prefix(&root).unwrap_or(f).display().to_string())
        .collect();
    assert!(allowing.is_empty(), "unsafe code in {allowing:?}");
}
