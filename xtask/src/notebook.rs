//! Reading `.ipynb` files: cell sources, tags, and the code hash that marks a notebook's outputs as current.
//!
//! The hash (`metadata.dlhist.code_sha256`) is the lowercase hex SHA-256 of the concatenation, over the code cells
//! in order and skipping any tagged `injected-parameters`, of each cell's source text followed by one NUL byte.
//! `xtask/runner/nbtools.py` computes it when `--full` writes outputs back; the `cargo test` harness recomputes
//! it to find stale outputs. All three must agree: a test below runs the Python one against this one.

use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::path::Path;

/// The tag of the cell the runners insert in quick mode; it never counts towards the hash.
pub const INJECTED_TAG: &str = "injected-parameters";

/// A cell's source as one string. nbformat stores it either as a string or as a list of lines (each keeping its
/// `\n`), which are joined as they are.
pub fn cell_source(cell: &Value) -> String {
    match &cell["source"] {
        Value::String(s) => s.clone(),
        Value::Array(lines) => lines.iter().filter_map(Value::as_str).collect(),
        _ => String::new(),
    }
}

/// Whether the cell's `metadata.tags` contains `tag`.
pub fn has_tag(cell: &Value, tag: &str) -> bool {
    cell["metadata"]["tags"].as_array().is_some_and(|tags| tags.iter().any(|t| t == tag))
}

/// The code hash of a parsed notebook (see the module docs).
pub fn code_sha256(notebook: &Value) -> Result<String> {
    let Some(cells) = notebook["cells"].as_array() else {
        bail!("not a notebook: no `cells` list");
    };
    let mut text = String::new();
    for cell in cells.iter().filter(|c| c["cell_type"] == "code" && !has_tag(c, INJECTED_TAG)) {
        text.push_str(&cell_source(cell));
        text.push('\0');
    }
    Ok(crate::project::sha256_hex(text.as_bytes()))
}

/// Reads a notebook file as JSON.
pub fn read(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not valid notebook JSON", path.display()))
}

/// Checks that the hash stored in a notebook matches its code, i.e. that its outputs are current.
pub fn check_stored_hash(path: &Path) -> Result<()> {
    let notebook = read(path)?;
    let computed = code_sha256(&notebook)?;
    match notebook["metadata"]["dlhist"]["code_sha256"].as_str() {
        Some(stored) if stored == computed => Ok(()),
        Some(stored) => bail!(
            "{}: stored code_sha256 {stored} differs from the code's {computed} (the Python runner and xtask disagree?)",
            path.display()
        ),
        None => bail!("{}: no metadata.dlhist.code_sha256 was written", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> Value {
        json!({
            "cells": [
                {"cell_type": "markdown", "metadata": {}, "source": ["# Title\n"]},
                {"cell_type": "code", "metadata": {}, "source": [":opt 3\n", "use dlhist::prelude::*;"]},
                {"cell_type": "code", "metadata": {"tags": ["parameters"]}, "source": "let steps = 10;"},
                {"cell_type": "code", "metadata": {"tags": ["injected-parameters"]}, "source": "let steps = 1;"},
                {"cell_type": "code", "metadata": {}, "source": []}
            ],
            "metadata": {}, "nbformat": 4, "nbformat_minor": 5
        })
    }

    #[test]
    fn joins_list_sources() {
        assert_eq!(cell_source(&sample()["cells"][1]), ":opt 3\nuse dlhist::prelude::*;");
        assert_eq!(cell_source(&sample()["cells"][4]), "");
    }

    #[test]
    fn hash_covers_code_cells_only_with_nul_separators() {
        let expected = crate::project::sha256_hex(b":opt 3\nuse dlhist::prelude::*;\0let steps = 10;\0\0");
        assert_eq!(code_sha256(&sample()).unwrap(), expected);
    }

    #[test]
    fn hash_ignores_injected_cells_and_markdown_but_not_code() {
        let base = code_sha256(&sample()).unwrap();
        let mut nb = sample();
        nb["cells"][3]["source"] = json!("let steps = 2;");
        nb["cells"][0]["source"] = json!("# Other title");
        assert_eq!(code_sha256(&nb).unwrap(), base);
        nb["cells"][2]["source"] = json!("let steps = 11;");
        assert_ne!(code_sha256(&nb).unwrap(), base);
        // Moving text between cells changes the hash too: the NUL marks where each cell ends.
        let mut split = sample();
        split["cells"][1]["source"] = json!(":opt 3\n");
        split["cells"][2]["source"] = json!("use dlhist::prelude::*;let steps = 10;");
        assert_ne!(code_sha256(&split).unwrap(), base);
    }

    #[test]
    fn stored_hash_check() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.ipynb");
        let mut nb = sample();
        std::fs::write(&path, nb.to_string()).unwrap();
        assert!(check_stored_hash(&path).is_err(), "no hash stored");
        nb["metadata"]["dlhist"] = json!({"code_sha256": code_sha256(&nb).unwrap()});
        std::fs::write(&path, nb.to_string()).unwrap();
        check_stored_hash(&path).unwrap();
        nb["cells"][4]["source"] = json!("assert!(true);");
        std::fs::write(&path, nb.to_string()).unwrap();
        assert!(check_stored_hash(&path).is_err(), "code changed after the hash");
    }

    #[test]
    fn python_runner_computes_the_same_hash() {
        // nbtools.py needs only the standard library, so any python3 can run it; skip loudly without one.
        let Ok(out) = std::process::Command::new("python3").arg("--version").output() else {
            eprintln!("python3 not found; skipping the cross-check");
            return;
        };
        assert!(out.status.success());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.ipynb");
        let mut nb = sample();
        // Non-ASCII text must be hashed as UTF-8 by both.
        nb["cells"][4]["source"] = json!(["let s = \"δ → ∞\";\n", "println!(\"{s}\");"]);
        std::fs::write(&path, nb.to_string()).unwrap();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/runner/nbtools.py");
        let out = std::process::Command::new("python3").arg(script).arg("hash").arg(&path).output().unwrap();
        assert!(out.status.success(), "nbtools.py failed: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), code_sha256(&nb).unwrap());
    }
}
