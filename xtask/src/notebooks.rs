//! `cargo xtask notebooks run`: picks the notebooks and hands them to the headless runner
//! (`xtask/runner/run_notebooks.py`, nbclient + the real `rust` kernel), run with the venv's Python.

use crate::cli::{Mode, RunOptions, SetupOptions};
use crate::notebook;
use crate::project::Project;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// What the runner is asked to do; `mode` is `quick`, `full` or `as-is` (run the cells unchanged, used by the
/// warm-up notebook, which has no parameters cell).
pub struct RunnerArgs {
    pub mode: &'static str,
    pub device: &'static str,
    pub timeout_s: u64,
    pub summary: PathBuf,
    pub out: PathBuf,
    /// Write each passing notebook back over its source (full mode).
    pub in_place: bool,
    pub notebooks: Vec<PathBuf>,
}

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

/// The runner's command line (without the Python interpreter).
fn runner_command_args(project: &Project, args: &RunnerArgs) -> Vec<std::ffi::OsString> {
    let mut cmd: Vec<std::ffi::OsString> = vec![
        project.runner_script().into(),
        "--mode".into(),
        args.mode.into(),
        "--device".into(),
        args.device.into(),
        "--timeout".into(),
        args.timeout_s.to_string().into(),
        "--summary".into(),
        args.summary.clone().into(),
        "--out".into(),
        args.out.clone().into(),
        "--root".into(),
        project.root.clone().into(),
    ];
    if args.in_place {
        cmd.push("--in-place".into());
    }
    cmd.extend(args.notebooks.iter().map(|p| p.clone().into()));
    cmd
}

/// Runs the Python runner; `Ok(true)` when every notebook passed, `Ok(false)` when some failed (the runner has
/// printed which and why), `Err` when the runner itself could not run.
pub fn run_runner(project: &Project, args: &RunnerArgs) -> Result<bool> {
    let status = project
        .jupyter_command(project.venv_python())
        .args(runner_command_args(project, args))
        .status()
        .with_context(|| format!("starting {}", project.venv_python().display()))?;
    match status.code() {
        Some(0) => Ok(true),
        Some(1) => Ok(false),
        _ => bail!("the notebook runner failed ({status}); see its messages above"),
    }
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

    #[test]
    fn runner_arguments() {
        let project = Project { root: PathBuf::from("/p") };
        let args = RunnerArgs {
            mode: "full",
            device: "cuda",
            timeout_s: 60,
            summary: PathBuf::from("/s.json"),
            out: PathBuf::from("/o"),
            in_place: true,
            notebooks: vec![PathBuf::from("/p/notebooks/a.ipynb")],
        };
        let line: Vec<String> =
            runner_command_args(&project, &args).iter().map(|s| s.to_string_lossy().into_owned()).collect();
        assert_eq!(
            line.join(" "),
            "/p/xtask/runner/run_notebooks.py --mode full --device cuda --timeout 60 --summary /s.json --out /o \
             --root /p --in-place /p/notebooks/a.ipynb"
        );
    }
}
