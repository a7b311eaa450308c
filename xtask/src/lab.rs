//! `cargo xtask lab`: setup (each finished step is skipped), then Jupyter Lab from the venv on `notebooks/`.

use crate::cli::{LabOptions, SetupOptions};
use crate::project::Project;
use anyhow::{Context, Result};
use std::ffi::OsString;

/// Runs setup with warm-up, then replaces this process with Jupyter Lab.
pub fn run(project: &Project, opts: &LabOptions) -> Result<()> {
    crate::setup::run(project, &SetupOptions { warm: true })?;
    let args = lab_args(project, opts, running_as_root());
    println!("starting Jupyter Lab on {} (Ctrl-C stops it)", project.notebooks_dir().display());
    let mut cmd = project.jupyter_command(project.venv_bin("jupyter-lab"));
    cmd.args(&args).current_dir(project.notebooks_dir());
    exec(cmd)
}

/// Jupyter Lab's arguments. The server's root is `notebooks/`, so the file browser opens there.
fn lab_args(project: &Project, opts: &LabOptions, root: bool) -> Vec<OsString> {
    let mut root_dir = OsString::from("--ServerApp.root_dir=");
    root_dir.push(project.notebooks_dir());
    let mut args = vec![root_dir];
    if !opts.browser {
        args.push("--no-browser".into());
    }
    if let Some(port) = opts.port {
        args.push(format!("--port={port}").into());
    }
    if root {
        // Jupyter refuses to start as root without it (containers, CI machines).
        args.push("--allow-root".into());
    }
    args.extend(opts.extra.iter().map(OsString::from));
    args
}

/// Whether this process runs as root: the owner of `/proc/self` is the process's user (Linux).
fn running_as_root() -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
    }
    #[cfg(not(unix))]
    {
        false
    }
}

/// On Unix, exec: Jupyter takes over this process, so Ctrl-C reaches it directly and stops it.
#[cfg(unix)]
fn exec(mut cmd: std::process::Command) -> Result<()> {
    use std::os::unix::process::CommandExt;
    let err = cmd.exec();
    Err(err).context("starting .venv/bin/jupyter-lab (run `cargo xtask setup` again?)")
}

#[cfg(not(unix))]
fn exec(mut cmd: std::process::Command) -> Result<()> {
    let status = cmd.status().context("starting jupyter-lab")?;
    anyhow::ensure!(status.success(), "jupyter-lab exited with {status}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn strings(args: Vec<OsString>) -> Vec<String> {
        args.into_iter().map(|a| a.to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn lab_arguments() {
        let project = Project { root: PathBuf::from("/p") };
        let plain = strings(lab_args(&project, &LabOptions { browser: true, port: None, extra: vec![] }, false));
        assert_eq!(plain, vec!["--ServerApp.root_dir=/p/notebooks"]);
        let opts = LabOptions { browser: false, port: Some(9000), extra: vec!["--ServerApp.token=t".into()] };
        let all = strings(lab_args(&project, &opts, true));
        assert_eq!(
            all,
            vec![
                "--ServerApp.root_dir=/p/notebooks",
                "--no-browser",
                "--port=9000",
                "--allow-root",
                "--ServerApp.token=t"
            ]
        );
    }
}
