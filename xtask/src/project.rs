//! Where things live in the project, the pinned tool versions, and how xtask starts processes.
//!
//! Everything the toolchain installs stays inside the project: `.venv/` holds Python, Jupyter, `evcxr_jupyter`,
//! the `rust` kernel spec and the evcxr config; the kernel itself is built in the workspace's `target/`.

use anyhow::{bail, Context, Result};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// The evcxr_jupyter release the kernel runs: the root Cargo.toml pins it (`evcxr_jupyter = "=0.22.0"`, built as
/// the workspace's `evcxr_jupyter` binary) next to the `cargo test` harness's `evcxr = "=0.22.0"`, so a notebook
/// behaves alike in both. `environment.yml` pins it too (tests check all three).
pub const EVCXR_JUPYTER_VERSION: &str = "0.22.0";

/// The oldest Python that jupyterlab 4 and nbclient support.
pub const MIN_PYTHON: (u32, u32) = (3, 9);

/// The kernel spec name every notebook's metadata names.
pub const KERNEL_NAME: &str = "rust";

/// Environment variables that `cargo run` sets for xtask itself (besides the `CARGO_PKG_*` ones). They describe
/// the xtask package, not the notebooks, and a nested cargo must not see them: build scripts such as ring's ask to
/// re-run when `CARGO_MANIFEST_DIR` or `CARGO_PKG_NAME` change, and cargo compares them with its own environment,
/// so a build made under `cargo xtask` (setup's `cargo test --no-run`, the kernel's cell builds) was rebuilt by the
/// next plain `cargo test` or harness run: ring, rustls, ureq, dlhist and xtask, 46 s on 2 cores.
const CARGO_RUN_VARS: &[&str] = &[
    "CARGO_MANIFEST_DIR",
    "CARGO_MANIFEST_PATH",
    "CARGO_MANIFEST_LINKS",
    "CARGO_CRATE_NAME",
    "CARGO_BIN_NAME",
    "CARGO_PRIMARY_PACKAGE",
];

/// The project's folders and files, all derived from its root.
#[derive(Debug, Clone)]
pub struct Project {
    pub root: PathBuf,
}

impl Project {
    /// Finds the project root: the parent of xtask's manifest folder. At run time `cargo run` tells where the
    /// manifest is; the compile-time path is the fallback for a binary started by hand.
    pub fn locate() -> Result<Self> {
        let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
        let root = manifest_dir.parent().context("xtask's manifest folder has no parent folder")?.to_path_buf();
        if !root.join("notebooks").is_dir() {
            bail!(
                "{} does not look like the dlhist project (no notebooks/ folder); run cargo xtask inside it",
                root.display()
            );
        }
        Ok(Self { root })
    }

    pub fn venv(&self) -> PathBuf {
        self.root.join(".venv")
    }

    /// A program installed in the venv (`.venv/bin/<name>`).
    pub fn venv_bin(&self, name: &str) -> PathBuf {
        self.venv().join("bin").join(name)
    }

    pub fn venv_python(&self) -> PathBuf {
        self.venv_bin("python")
    }

    /// The Jupyter data folder inside the venv; Jupyter started from the venv searches it for kernel specs.
    pub fn jupyter_data_dir(&self) -> PathBuf {
        self.venv().join("share").join("jupyter")
    }

    pub fn kernel_dir(&self) -> PathBuf {
        self.jupyter_data_dir().join("kernels").join(KERNEL_NAME)
    }

    /// The folder the kernel reads `evcxr.toml` and `init.evcxr` from (`EVCXR_CONFIG_DIR`).
    pub fn evcxr_config_dir(&self) -> PathBuf {
        self.venv().join("evcxr")
    }

    pub fn requirements(&self) -> PathBuf {
        self.root.join("xtask").join("requirements.txt")
    }

    pub fn runner_script(&self) -> PathBuf {
        self.root.join("xtask").join("runner").join("run_notebooks.py")
    }

    pub fn notebooks_dir(&self) -> PathBuf {
        self.root.join("notebooks")
    }

    /// The build folder the project's kernels share, one at a time, so that a restarted kernel is warm
    /// (`DLHIST_KERNEL_BUILD_DIR` in kernel.json; `xtask/kernel/build_dir.rs`).
    pub fn kernel_build_dir(&self) -> PathBuf {
        self.target_dir().join("evcxr-kernel")
    }

    /// Scratch space for xtask (the warm-up notebook, runner outputs).
    pub fn target_dir(&self) -> PathBuf {
        self.root.join("target")
    }

    /// The environment Jupyter (Lab or the runner) and so the kernel get: the venv first on PATH, the venv's
    /// kernel spec ahead of any user-wide `rust` kernel, and the project's evcxr config.
    pub fn jupyter_env(&self) -> Vec<(OsString, OsString)> {
        let mut path = vec![self.venv().join("bin")];
        if let Some(old) = std::env::var_os("PATH") {
            path.extend(std::env::split_paths(&old));
        }
        let path = std::env::join_paths(path).unwrap_or_else(|_| self.venv().join("bin").into_os_string());
        vec![
            ("PATH".into(), path),
            ("VIRTUAL_ENV".into(), self.venv().into_os_string()),
            // JUPYTER_PATH outranks ~/.local/share/jupyter, where a user-wide `rust` kernel may live.
            ("JUPYTER_PATH".into(), self.jupyter_data_dir().into_os_string()),
            ("JUPYTER_PREFER_ENV_PATH".into(), "1".into()),
            ("EVCXR_CONFIG_DIR".into(), self.evcxr_config_dir().into_os_string()),
        ]
    }

    /// A command with [`Project::jupyter_env`] applied and cargo-run's own variables removed.
    pub fn jupyter_command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = without_cargo_run_vars(Command::new(program));
        cmd.envs(self.jupyter_env());
        cmd
    }
}

/// The cargo that runs xtask (cargo sets `CARGO` for `cargo run`), so nested builds use the same toolchain.
pub fn cargo() -> OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// A nested build: [`cargo`] without the variables `cargo run` set for xtask ([`CARGO_RUN_VARS`]), so that what
/// it compiles is what a plain `cargo test` in a shell finds up to date.
pub fn cargo_command() -> Command {
    without_cargo_run_vars(Command::new(cargo()))
}

/// `cmd` with [`CARGO_RUN_VARS`] and every `CARGO_PKG_*` variable of this process removed from its environment.
fn without_cargo_run_vars(mut cmd: Command) -> Command {
    for var in CARGO_RUN_VARS {
        cmd.env_remove(var);
    }
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("CARGO_PKG_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// Runs `cmd` with inherited stdio and fails with `what` when it exits non-zero.
pub fn run_checked(cmd: &mut Command, what: &str) -> Result<()> {
    let status = cmd.status().with_context(|| format!("{what}: could not start {:?}", cmd.get_program()))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

/// Runs `cmd` and returns its stdout and stderr together, or `None` if it could not start or failed.
pub fn output_of(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    if !out.status.success() {
        return None;
    }
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    Some(text)
}

/// Prints one progress line per step: `[n/total] what ... done in 1.2s` (or `skipped: why`).
pub struct Progress {
    total: usize,
    current: usize,
}

impl Progress {
    pub fn new(total: usize) -> Self {
        Self { total, current: 0 }
    }

    /// Runs one step. `step` returns `Some(reason)` when there was nothing to do.
    pub fn step(&mut self, what: &str, step: impl FnOnce() -> Result<Option<String>>) -> Result<()> {
        self.current += 1;
        println!("[{}/{}] {what}", self.current, self.total);
        let start = Instant::now();
        match step().with_context(|| format!("setup step `{what}`"))? {
            Some(reason) => println!("      skipped: {reason}"),
            None => println!("      done in {}", format_secs(start.elapsed().as_secs_f64())),
        }
        Ok(())
    }
}

/// `83.2` -> `1m23s`, `4.25` -> `4.2s`.
pub fn format_secs(secs: f64) -> String {
    if secs < 60.0 {
        format!("{secs:.1}s")
    } else {
        let whole = secs.round() as u64;
        format!("{}m{:02}s", whole / 60, whole % 60)
    }
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `path` exists and holds exactly `contents`.
pub fn file_has(path: &Path, contents: &str) -> bool {
    std::fs::read_to_string(path).is_ok_and(|s| s == contents)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `cargo test` runs this binary with its package's variables set, as `cargo run` does for xtask: the nested
    /// cargo and Jupyter's commands must drop them (the rebuild they caused is described at CARGO_RUN_VARS).
    #[test]
    fn nested_commands_drop_cargo_runs_variables() {
        assert!(std::env::var_os("CARGO_PKG_NAME").is_some() && std::env::var_os("CARGO_MANIFEST_DIR").is_some());
        let project = Project { root: PathBuf::from("/p") };
        for cmd in [cargo_command(), project.jupyter_command("jupyter")] {
            let removed: Vec<String> =
                cmd.get_envs().filter(|(_, v)| v.is_none()).map(|(k, _)| k.to_string_lossy().into_owned()).collect();
            for var in ["CARGO_PKG_NAME", "CARGO_PKG_VERSION", "CARGO_MANIFEST_DIR", "CARGO_CRATE_NAME"] {
                assert!(removed.iter().any(|r| r == var), "{var} reaches {:?}", cmd.get_program());
            }
            assert!(!removed.iter().any(|r| r == "CARGO_HOME" || r == "CARGO_TARGET_DIR"), "{removed:?}");
        }
    }

    #[test]
    fn formats_seconds_for_humans() {
        assert_eq!(format_secs(4.25), "4.2s");
        assert_eq!(format_secs(83.2), "1m23s");
        assert_eq!(format_secs(600.0), "10m00s");
    }

    #[test]
    fn sha256_of_known_input() {
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn jupyter_env_puts_the_venv_first() {
        let project = Project { root: PathBuf::from("/p") };
        let env = project.jupyter_env();
        let get = |k: &str| env.iter().find(|(key, _)| key == k).map(|(_, v)| PathBuf::from(v));
        let path = get("PATH").expect("PATH set");
        assert_eq!(std::env::split_paths(&path).next(), Some(PathBuf::from("/p/.venv/bin")));
        assert_eq!(get("EVCXR_CONFIG_DIR"), Some(PathBuf::from("/p/.venv/evcxr")));
        assert_eq!(get("JUPYTER_PATH"), Some(PathBuf::from("/p/.venv/share/jupyter")));
    }
}
