//! The library's layering rule, checked on the sources so it stays true:
//!
//! - milestone modules → `layers` → `fast`: no file of a later section (`optimization/`, `sequence_modeling/`,
//!   `transformers/`) imports `deep_neural_networks`, and section 01 imports none of the later sections;
//! - only `fast/`, `layers/` and the milestone modules whose op *is* the milestone (layer norm, Adam, the LSTM,
//!   the tanh RNN, the GRU, attention) name `fast::` outside their tests;
//! - `fast/` uses nothing of dlhist above it, only the two leaves below everything: the `Activation` type and
//!   the seeded generator.

use std::fs;
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`, recursively, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display())) {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out.sort();
    out
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The file's library code, without its `#[cfg(test)]` modules (which close every file, by convention), as
/// `(line number, line)`; `code_only` also drops comment lines (doc links are not imports).
fn library_lines(path: &Path, code_only: bool) -> Vec<(usize, String)> {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    text.lines()
        .enumerate()
        .take_while(|(_, l)| l.trim() != "#[cfg(test)]")
        .filter(|(_, l)| !code_only || !l.trim_start().starts_with("//"))
        .map(|(i, l)| (i + 1, l.to_string()))
        .collect()
}

/// Lines of the files under `section` that contain any of `needles`, reported as `path:line: text`.
fn offenders(files: &[PathBuf], needles: &[&str], code_only: bool) -> Vec<String> {
    let mut out = vec![];
    for f in files {
        for (n, line) in library_lines(f, code_only) {
            if needles.iter().any(|needle| line.contains(needle)) {
                out.push(format!("{}:{n}: {}", f.strip_prefix(src()).unwrap_or(f).display(), line.trim()));
            }
        }
    }
    out
}

#[test]
fn sections_do_not_import_each_other_across_section_01() {
    let later: Vec<PathBuf> = ["optimization", "sequence_modeling", "transformers", "image_generation"]
        .iter()
        .flat_map(|d| rust_files(&src().join(d)))
        .collect();
    let bad = offenders(&later, &["deep_neural_networks::"], true);
    assert!(
        bad.is_empty(),
        "later sections import section 01 (move what they share into layers/):\n{}",
        bad.join("\n")
    );
    let first = rust_files(&src().join("deep_neural_networks"));
    let bad =
        offenders(&first, &["optimization::", "sequence_modeling::", "transformers::", "image_generation::"], true);
    assert!(bad.is_empty(), "section 01 imports a later section (move it into layers/):\n{}", bad.join("\n"));
}

#[test]
fn only_layers_and_the_milestone_ops_call_the_kernels() {
    let allowed =
        ["layers/", "fast/", "optimization/layer_norm.rs", "optimization/adam.rs", "sequence_modeling/lstm.rs"];
    let allowed_too = ["transformers/attention.rs", "sequence_modeling/rnn.rs", "sequence_modeling/gru.rs"];
    let files: Vec<PathBuf> = rust_files(&src())
        .into_iter()
        .filter(|f| {
            let rel = f.strip_prefix(src()).unwrap().to_string_lossy().replace('\\', "/");
            !allowed.iter().chain(&allowed_too).any(|a| rel.starts_with(a))
        })
        .collect();
    assert!(files.len() > 20, "the walk found only {} files under {}", files.len(), src().display());
    // lib.rs documents the module; the rule is about code and the docs of other modules.
    let files: Vec<PathBuf> = files.into_iter().filter(|f| !f.ends_with("lib.rs")).collect();
    let bad = offenders(&files, &["fast::"], false);
    assert!(
        bad.is_empty(),
        "only layers/, fast/ and the layer-norm, Adam, LSTM, RNN, GRU and attention modules may name fast:: (use a layer):\n{}",
        bad.join("\n")
    );
}

#[test]
fn fast_imports_nothing_above_it() {
    let files = rust_files(&src().join("fast"));
    assert!(files.len() >= 10, "expected the kernels under src/fast, found {files:?}");
    let mut bad = vec![];
    for f in &files {
        let text = fs::read_to_string(f).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.trim_start();
            if code.starts_with("//") {
                continue;
            }
            for (at, _) in code.match_indices("crate::") {
                let rest = &code[at + "crate::".len()..];
                // The leaves below it: the activation type (which the layers re-export) and the seeded generator.
                if !(rest.starts_with("fast") || rest.starts_with("rng::") || rest.starts_with("activation::")) {
                    bad.push(format!("{}:{}: {}", f.strip_prefix(src()).unwrap().display(), n + 1, code));
                }
            }
        }
    }
    assert!(bad.is_empty(), "fast/ must not use the layers or models above it:\n{}", bad.join("\n"));
}

/// The check itself can fail: a line that breaks the rule is reported.
#[test]
fn the_checks_catch_a_violation() {
    let dir = std::env::temp_dir().join(format!("dlhist-layering-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let f = dir.join("bad.rs");
    fs::write(&f, "//! docs mention fast::linear\nuse crate::fast::linear;\n#[cfg(test)]\nmod tests { use crate::fast::plain; }\n")
        .unwrap();
    let all = offenders(std::slice::from_ref(&f), &["fast::"], false);
    let code = offenders(std::slice::from_ref(&f), &["fast::"], true);
    fs::remove_dir_all(&dir).unwrap();
    assert_eq!(all.len(), 2, "{all:?}");
    assert_eq!(code.len(), 1, "{code:?}");
}
