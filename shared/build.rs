//! Embeds the event catalogue (`catalogue/` at the repository root) in the
//! crate: every `catalogue/<group>/<type>.json` file and
//! `catalogue/vocabulary.json`, so adding an event type is a new file and a
//! deploy. `shared::catalogue` parses and checks them at cold start.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::{env, fs};

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest.join("..").join("catalogue");
    // A directory is scanned as a whole: a new, changed or removed file
    // rebuilds the crate.
    println!("cargo:rerun-if-changed={}", root.display());

    let mut files = Vec::new();
    for group in sorted_entries(&root) {
        if group.is_dir() {
            for file in sorted_entries(&group) {
                files.push(file);
            }
        }
    }
    let mut out = String::from(
        "/// Every event type file: its path below `catalogue/` and its text.\n\
         pub(super) static FILES: &[(&str, &str)] = &[\n",
    );
    for file in &files {
        let relative = file
            .strip_prefix(&root)
            .expect("below the catalogue")
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("/");
        writeln!(
            out,
            "    ({relative:?}, include_str!({:?})),",
            file.display().to_string()
        )
        .expect("writing to a string");
    }
    out.push_str("];\n");
    writeln!(
        out,
        "/// `catalogue/vocabulary.json`.\npub(super) static VOCABULARY: &str = include_str!({:?});",
        root.join("vocabulary.json").display().to_string()
    )
    .expect("writing to a string");

    let target =
        PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo")).join("catalogue_files.rs");
    fs::write(&target, out).unwrap_or_else(|e| panic!("writing {}: {e}", target.display()));
}

/// The entries of `dir`, by name.
fn sorted_entries(dir: &Path) -> Vec<PathBuf> {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
        .map(|entry| {
            entry
                .unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
                .path()
        })
        .collect();
    entries.sort();
    entries
}
