//! `cargo xtask notebooks run`: sets the toolchain up if needed, picks the notebooks and hands them to the
//! headless runner ([`crate::runner`]).

use crate::cli::{Mode, RunOptions, SetupOptions};
use crate::notebook;
use crate::project::Project;
use crate::runner::{run_runner, RunnerArgs};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// Runs `cargo xtask notebooks run`.
pub fn run(project: &Project, opts: &RunOptions) -> Result<()> {
    if !crate::setup::is_installed(project) {
        println!("the toolchain is not set up yet: running `cargo xtask setup --no-warm` first");
        crate::setup::run(project, &SetupOptions { warm: false })?;
    }
    let notebooks = if opts.notebooks.is_empty() {
        find_notebooks(&project.notebooks_dir())?
    } else {
        let mut all = Vec::new();
        for path in &opts.notebooks {
            if path.is_dir() {
                all.extend(find_notebooks(path)?);
            } else if path.extension().is_some_and(|e| e == "ipynb") && path.is_file() {
                all.push(path.clone());
            } else {
                bail!("{} is neither a .ipynb file nor a folder", path.display());
            }
        }
        all
    };
    if notebooks.is_empty() {
        bail!("no notebooks found (looked for *.ipynb under the given paths or notebooks/)");
    }
    let notebooks = notebooks
        .iter()
        .map(|p| std::path::absolute(p).with_context(|| format!("resolving {}", p.display())))
        .collect::<Result<Vec<_>>>()?;
    let out = opts.out.clone().unwrap_or_else(|| project.target_dir().join("notebooks-out"));
    let summary = opts.summary.clone().unwrap_or_else(|| out.join("summary.json"));
    let args = RunnerArgs {
        mode: opts.mode.as_str(),
        device: opts.device.as_str(),
        timeout_s: opts.timeout_s(),
        summary,
        out,
        in_place: opts.mode == Mode::Full,
        notebooks: notebooks.clone(),
    };
    let passed = run_runner(project, &args)?;
    if opts.mode == Mode::Full && passed {
        // The runner (Python) wrote the hash; check it against xtask's implementation of the same definition,
        // which mirrors the `cargo test` harness, so that a drift between them surfaces here and not as a
        // spurious "stale outputs" failure later.
        for path in &notebooks {
            notebook::check_stored_hash(path)?;
        }
    }
    if !passed {
        bail!("some notebooks failed (summary: {})", args.summary.display());
    }
    Ok(())
}

/// Every `*.ipynb` under `dir`, sorted, skipping Jupyter's `.ipynb_checkpoints` and other hidden folders.
pub fn find_notebooks(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))? {
            let path = entry?.path();
            let hidden = path.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'));
            if hidden {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "ipynb") {
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_notebooks_sorted_without_checkpoints() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for p in ["b/02-x.ipynb", "a/01-y.ipynb", "a/.ipynb_checkpoints/01-y-checkpoint.ipynb", "a/notes.md"] {
            let p = root.join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "{}").unwrap();
        }
        let found = find_notebooks(root).unwrap();
        assert_eq!(found, vec![root.join("a/01-y.ipynb"), root.join("b/02-x.ipynb")]);
    }
}
