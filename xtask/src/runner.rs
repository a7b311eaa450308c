//! The headless notebook runner (`xtask/runner/run_notebooks.py`, nbclient + the real `rust` kernel), started
//! with the venv's Python. Both `cargo xtask notebooks run` and setup's warm-up use it; it depends on neither.

use crate::project::Project;
use anyhow::{bail, Context, Result};
use std::path::PathBuf;

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
