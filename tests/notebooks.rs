//! `cargo test` runs every notebook under `notebooks/`.
//!
//! Each notebook's code cells run in order, in quick mode, through the `evcxr` library: the same engine
//! the Jupyter kernel (`evcxr_jupyter`) runs, so variables, items, `:dep`/`:opt` commands and the display
//! of a cell's last expression behave exactly as they do for a reader. Three tests per notebook:
//!
//! - `<notebook>::lint`: the notebook follows the anatomy in CONTRIBUTING.md;
//! - `<notebook>::outputs_fresh`: its committed outputs were produced by its current code;
//! - `<notebook>::run`: every cell succeeds in quick mode. A compile error, a panic, a failed `assert!`,
//!   a top-level `?` error or anything written to stderr fails it, naming the notebook, the cell and the
//!   error (compile errors with the line inside the cell).
//!
//! plus `harness::*` tests that feed deliberately broken notebooks (tests/fixtures) to the same runner
//! and lint, and check that each failure is caught and names its cell.
//!
//! The notebooks share one evcxr context, cleared between them (`Kernel::reuse`), so rust-analyzer's index
//! of dlhist and its dependencies, which evcxr needs to infer variable types, is built once per run.
//!
//! This is a custom test harness (`harness = false`): evcxr re-executes the current binary as the
//! process that runs cells, so `main` must hand over to `evcxr::runtime_hook()` before anything else.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use libtest_mimic::{Arguments, Failed, Trial};
use serde_json::Value;
use sha2::{Digest, Sha256};

#[path = "../xtask/kernel/build_dir.rs"]
mod build_dir;
#[path = "../xtask/kernel/evcxr_cache.rs"]
mod evcxr_cache;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const SCRATCH: &str = env!("CARGO_TARGET_TMPDIR");

/// The setup cell every notebook starts with (CONTRIBUTING.md).
const SETUP_CELL: &str = ":opt 3
:build_env CARGO_PROFILE_DEV_DEBUG_ASSERTIONS=false
:build_env CARGO_PROFILE_DEV_OVERFLOW_CHECKS=false
:dep dlhist = { path = \"../../../dlhist\" }
use dlhist::prelude::*;";

fn main() {
    // evcxr starts this same executable as its cell-running subprocess; in that role it never returns.
    evcxr::runtime_hook();
    // `cargo test` runs this harness with its package's variables set (CARGO_MANIFEST_DIR, CARGO_PKG_NAME, ...), and
    // the cells' cargo builds would inherit them. Build scripts such as ring's re-run when those change, and the
    // Jupyter kernel runs without them (xtask's CARGO_RUN_VARS), so a kernel in the same evcxr folder (CI's pilot
    // run) rebuilt ring, rustls, ureq and dlhist. Single-threaded here: nothing else reads the environment yet.
    for (key, _) in std::env::vars_os() {
        let name = key.to_string_lossy();
        let package_var = name.starts_with("CARGO_PKG_") || name.starts_with("CARGO_MANIFEST_");
        if package_var || ["CARGO_CRATE_NAME", "CARGO_BIN_NAME", "CARGO_PRIMARY_PACKAGE"].contains(&name.as_ref()) {
            std::env::remove_var(&key);
        }
    }
    let mut args = Arguments::from_args();
    // Notebooks run one at a time: each sets the process's working directory (evcxr resolves
    // `:dep` paths against it), and on 2 cores compiling cells in parallel would only thrash.
    args.test_threads = Some(1);
    let mut trials = vec![];
    for nb in discover(&Path::new(ROOT).join("notebooks")) {
        let name = nb.strip_prefix(ROOT).unwrap_or(&nb).with_extension("").display().to_string();
        let name = name.trim_start_matches("notebooks/").to_string();
        let (a, b, c) = (nb.clone(), nb.clone(), nb.clone());
        trials.push(Trial::test(format!("{name}::lint"), move || lint(&a).map_err(failed)));
        trials.push(Trial::test(format!("{name}::outputs_fresh"), move || outputs_fresh(&b).map_err(failed)));
        trials.push(Trial::test(format!("{name}::run"), move || run_quick(&c).map_err(failed)));
    }
    for (fixture, cell, needle) in [
        ("panics.ipynb", 3, "deliberate panic"),
        ("fails_assert.ipynb", 3, "assertion `left == right` failed"),
        ("question_mark.ipynb", 3, "invalid digit"),
        ("compile_error.ipynb", 3, "line 2"),
    ] {
        trials.push(Trial::test(format!("harness::catches_{}", fixture.trim_end_matches(".ipynb")), move || {
            harness_catches(fixture, cell, needle).map_err(failed)
        }));
    }
    trials.push(Trial::test("harness::lint_rejects_late_dep", || lint_rejects_late_dep().map_err(failed)));
    trials.push(Trial::test("harness::kernel_build_dir_is_claimed_once", || {
        kernel_build_dir_is_claimed_once().map_err(failed)
    }));
    trials
        .push(Trial::test("harness::evcxr_cache_forgets_out_dirs", || evcxr_cache_forgets_out_dirs().map_err(failed)));
    trials.push(Trial::test("harness::passing_fixture_passes", || {
        run_fixture("passes.ipynb").map(|_| ()).map_err(failed)
    }));
    libtest_mimic::run(&args, trials).exit();
}

fn failed(e: anyhow::Error) -> Failed {
    format!("{e:#}").into()
}

fn scratch(name: &str) -> PathBuf {
    Path::new(SCRATCH).join(name)
}

/// Every `.ipynb` under `dir`, sorted, skipping Jupyter's checkpoint folders.
fn discover(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    let Ok(entries) = std::fs::read_dir(dir) else { return out };
    for entry in entries.flatten() {
        let p = entry.path();
        if p.is_dir() && p.file_name().is_some_and(|n| n != ".ipynb_checkpoints") {
            out.extend(discover(&p));
        } else if p.extension().is_some_and(|e| e == "ipynb") {
            out.push(p);
        }
    }
    out.sort();
    out
}

// ---------------------------------------------------------------------------------------------
// Reading notebooks

struct Cell {
    /// 1-based position among all cells of the notebook (what a reader counts).
    number: usize,
    kind: String,
    source: String,
    tags: Vec<String>,
    has_outputs: bool,
}

struct Notebook {
    json: Value,
    cells: Vec<Cell>,
}

fn source_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts.iter().filter_map(Value::as_str).collect(),
        _ => String::new(),
    }
}

fn read_notebook(path: &Path) -> Result<Notebook> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let json: Value = serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))?;
    let cells = json["cells"]
        .as_array()
        .with_context(|| format!("{} has no `cells` array", path.display()))?
        .iter()
        .enumerate()
        .map(|(i, c)| Cell {
            number: i + 1,
            kind: c["cell_type"].as_str().unwrap_or("").to_string(),
            source: source_text(&c["source"]),
            tags: c["metadata"]["tags"]
                .as_array()
                .map(|t| t.iter().filter_map(|s| s.as_str().map(String::from)).collect())
                .unwrap_or_default(),
            has_outputs: c["execution_count"].is_number(),
        })
        .collect();
    Ok(Notebook { json, cells })
}

impl Notebook {
    fn code_cells(&self) -> impl Iterator<Item = &Cell> {
        self.cells.iter().filter(|c| c.kind == "code" && !c.tags.iter().any(|t| t == "injected-parameters"))
    }

    /// SHA-256 of the code cells' sources, each followed by a NUL byte (the runner stores the same hash in
    /// `metadata.dlhist.code_sha256` when it regenerates outputs).
    fn code_hash(&self) -> String {
        let mut h = Sha256::new();
        for c in self.code_cells() {
            h.update(c.source.as_bytes());
            h.update([0u8]);
        }
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The quick-mode values: `metadata.dlhist.quick`, name -> Rust expression.
    fn quick_values(&self) -> Result<Vec<(String, String)>> {
        match &self.json["metadata"]["dlhist"]["quick"] {
            Value::Null => Ok(vec![]),
            Value::Object(m) => m
                .iter()
                .map(|(k, v)| match v {
                    Value::String(s) => Ok((k.clone(), s.clone())),
                    other => bail!("metadata.dlhist.quick.{k} must be a string holding a Rust expression, got {other}"),
                })
                .collect(),
            other => bail!("metadata.dlhist.quick must be an object, got {other}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Lint: the anatomy of CONTRIBUTING.md

/// The `(name, type)` of each binding of a parameters cell, or an error naming the first line that is not a
/// plain `let name: Type = value;`. The type is required so that a quick-mode value injected as
/// `let name: Type = quick_value;` keeps it (`let n = 200;` alone would make an `i32`).
fn parameter_bindings(source: &str) -> Result<Vec<(String, String)>> {
    let mut out = vec![];
    for (i, line) in source.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("").trim();
        if code.is_empty() {
            continue;
        }
        let binding = code.strip_prefix("let ").filter(|_| code.ends_with(';')).and_then(|rest| {
            let (lhs, _value) = rest.split_once('=')?;
            let (name, ty) = lhs.split_once(':')?;
            let name = name.trim().trim_start_matches("mut ").trim();
            let ty = ty.trim();
            let valid = !name.is_empty() && name.chars().all(|c| c.is_alphanumeric() || c == '_') && !ty.is_empty();
            valid.then(|| (name.to_string(), ty.to_string()))
        });
        match binding {
            Some(b) => out.push(b),
            None => bail!("parameters cell, line {}: `{line}` is not a plain `let name: Type = value;` binding", i + 1),
        }
    }
    if out.is_empty() {
        bail!("the parameters cell binds nothing");
    }
    Ok(out)
}

fn lint(path: &Path) -> Result<()> {
    let nb = read_notebook(path)?;
    let mut problems = vec![];
    let kernel = nb.json["metadata"]["kernelspec"]["name"].as_str().unwrap_or("");
    if kernel != "rust" {
        problems.push(format!("kernelspec name is `{kernel}`, must be `rust` (evcxr)"));
    }
    match nb.cells.first() {
        Some(c) if c.kind == "markdown" && c.source.trim_start().starts_with("# ") && c.source.contains("](") => {}
        _ => problems.push("cell 1 must be a markdown title cell (`# ...`) linking the milestone's papers".into()),
    }
    let code: Vec<&Cell> = nb.code_cells().collect();
    match code.first() {
        Some(c) if c.source.trim() == SETUP_CELL => {}
        Some(c) => problems.push(format!(
            "cell {} must be the standard setup cell (see CONTRIBUTING.md):\n{SETUP_CELL}\nfound:\n{}",
            c.number, c.source
        )),
        None => problems.push("the notebook has no code cells".into()),
    }
    let params: Vec<&&Cell> = code.iter().filter(|c| c.tags.iter().any(|t| t == "parameters")).collect();
    match params.as_slice() {
        [p] => match parameter_bindings(&p.source) {
            Ok(bindings) => {
                for (k, _) in nb.quick_values()? {
                    if !bindings.iter().any(|(name, _)| *name == k) {
                        problems.push(format!(
                            "metadata.dlhist.quick sets `{k}`, which the parameters cell (cell {}) does not bind",
                            p.number
                        ));
                    }
                }
            }
            Err(e) => problems.push(format!("cell {}: {e}", p.number)),
        },
        [] => problems.push("no code cell is tagged `parameters`".into()),
        many => problems.push(format!(
            "{} cells are tagged `parameters` (cells {:?}); there must be exactly one",
            many.len(),
            many.iter().map(|c| c.number).collect::<Vec<_>>()
        )),
    }
    match code.last() {
        Some(c) if c.source.contains("assert") && c.source.contains("dlhist::notebook::report(") => {}
        Some(c) => problems.push(format!(
            "the last code cell (cell {}) must be the check cell: assertions, then dlhist::notebook::report(..)",
            c.number
        )),
        None => {}
    }
    // Every paper of this milestone in papers/catalog.toml is linked from the title cell, twice: the local
    // PDF that `cargo xtask papers fetch` places next to the notebook, and the web page.
    let title = nb.cells.first().map(|c| c.source.as_str()).unwrap_or("");
    let milestone = path.parent().and_then(|p| p.file_name()).map(|n| n.to_string_lossy().into_owned());
    for paper in catalog()? {
        if Some(&paper.milestone) == milestone.as_ref() {
            for target in [&paper.pdf_file, &paper.url] {
                if !title.contains(&format!("]({target})")) {
                    problems.push(format!("the title cell does not link `{target}` ({})", paper.title));
                }
            }
        }
    }
    for c in code.iter().skip(1) {
        // evcxr commands change the context's build for every later cell, and `cargo test` hands one
        // context from notebook to notebook (`Kernel::reuse`): only the setup cell may hold them.
        if let Some(line) = c.source.lines().find(|l| l.trim_start().starts_with(':')) {
            problems.push(format!(
                "cell {}: `{}`: evcxr commands (`:dep`, `:opt`, ...) belong in the setup cell only, which every \
                 notebook shares; add a dependency to dlhist instead",
                c.number,
                line.trim()
            ));
        }
    }
    for c in &code {
        // A notebook stands alone: no reaching into another notebook's folder or state.
        for line in c.source.lines().filter(|l| !l.trim_start().starts_with(":dep")) {
            if line.contains("../") || line.contains(".ipynb") {
                problems.push(format!("cell {}: `{}` reaches outside the notebook's folder", c.number, line.trim()));
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        bail!("{} breaks the notebook anatomy:\n- {}", path.display(), problems.join("\n- "))
    }
}

#[derive(serde::Deserialize)]
struct Paper {
    title: String,
    milestone: String,
    pdf_file: String,
    url: String,
}

/// The papers of `papers/catalog.toml` (only the fields the lint needs).
fn catalog() -> Result<Vec<Paper>> {
    #[derive(serde::Deserialize)]
    struct Catalog {
        paper: Vec<Paper>,
    }
    let path = Path::new(ROOT).join("papers/catalog.toml");
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let c: Catalog = toml::from_str(&text).with_context(|| format!("{} is not a valid catalog", path.display()))?;
    Ok(c.paper)
}

fn outputs_fresh(path: &Path) -> Result<()> {
    let nb = read_notebook(path)?;
    let rel = path.strip_prefix(ROOT).unwrap_or(path).display().to_string();
    let fix = format!("regenerate them with `cargo xtask notebooks run --full {rel}` and commit the notebook");
    let stored = nb.json["metadata"]["dlhist"]["code_sha256"].as_str().unwrap_or("");
    if stored.is_empty() {
        bail!("{rel} carries no outputs from a full run (metadata.dlhist.code_sha256 is missing); {fix}");
    }
    if stored != nb.code_hash() {
        bail!("{rel}: the code changed since its outputs were produced; {fix}");
    }
    if let Some(c) = nb.code_cells().find(|c| !c.has_outputs) {
        bail!("{rel}: cell {} was not executed in the committed outputs; {fix}", c.number);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Running cells through evcxr

/// The cells to run: code cells in order, with quick-mode values injected after the parameters cell as
/// `let name: Type = value;`, the type copied from the parameters cell.
fn cells_to_run(nb: &Notebook, quick: &[(String, String)]) -> Result<Vec<(String, String)>> {
    let mut out = vec![];
    for c in nb.code_cells() {
        out.push((format!("cell {}", c.number), c.source.clone()));
        if !quick.is_empty() && c.tags.iter().any(|t| t == "parameters") {
            let bindings = parameter_bindings(&c.source)?;
            let mut injected = String::new();
            for (k, v) in quick {
                let (_, ty) = bindings.iter().find(|(name, _)| name == k).with_context(|| {
                    format!("quick value `{k}` is not bound by the parameters cell (cell {})", c.number)
                })?;
                injected.push_str(&format!("let {k}: {ty} = {v};\n"));
            }
            out.push((format!("injected-parameters (after cell {})", c.number), injected));
        }
    }
    Ok(out)
}

/// Appends every line a channel delivers to a shared buffer, until the channel closes.
fn drain(rx: crossbeam_channel::Receiver<String>, into: Arc<Mutex<Vec<String>>>) {
    std::thread::spawn(move || {
        for line in rx {
            if let Ok(mut v) = into.lock() {
                v.push(line);
            }
        }
    });
}

fn take(buf: &Arc<Mutex<Vec<String>>>) -> Vec<String> {
    buf.lock().map(|mut v| std::mem::take(&mut *v)).unwrap_or_default()
}

fn format_compile_errors(label: &str, source: &str, errors: &[evcxr::CompilationError]) -> String {
    let lines: Vec<&str> = source.lines().collect();
    let mut out = String::new();
    for e in errors {
        let span = e.primary_spanned_message().and_then(|m| m.span);
        match span {
            Some(s) => {
                let text = lines.get(s.start_line.saturating_sub(1)).copied().unwrap_or("");
                out.push_str(&format!(
                    "{label}, line {}, column {}: {}\n    {text}\n    {}^\n",
                    s.start_line,
                    s.start_column,
                    e.message(),
                    " ".repeat(s.start_column.saturating_sub(1))
                ));
            }
            None => out.push_str(&format!("{label}: {}\n", e.message())),
        }
        for help in e.help() {
            out.push_str(&format!("    help: {help}\n"));
        }
    }
    out
}

/// An evcxr context (the engine of the Jupyter kernel) and what its cells have printed so far.
struct Kernel {
    ctx: evcxr::CommandContext,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Kernel {
    /// A new context building cells in `tmpdir` (kept between runs so dependencies compile once).
    fn start(tmpdir: &Path) -> Result<Kernel> {
        std::fs::create_dir_all(tmpdir)?;
        // Our own evcxr config: panics must fail the cell (evcxr's default keeps going), and nothing from
        // the user's ~/.config/evcxr may change what the tests see.
        let config = scratch("evcxr-config");
        std::fs::create_dir_all(&config)?;
        std::fs::write(config.join("evcxr.toml"), "[evcxr]\npreserve_vars_on_panic = false\n")?;
        std::env::set_var("EVCXR_CONFIG_DIR", &config);
        std::env::set_var("EVCXR_TMPDIR", tmpdir);
        // evcxr's cell crate asks Cargo for incremental builds and depends on them: under CARGO_INCREMENTAL=0
        // (common in CI, and our own .ci/run sets it) the fourth cell that compiles code fails to load, with
        // "dlsym failed". Cargo would pass our environment's setting on to that build, so drop it.
        std::env::remove_var("CARGO_INCREMENTAL");
        // Quick runs must not overwrite the committed figures in assets/ (dlhist::notebook::assets_dir).
        std::env::set_var("DLHIST_ASSETS_DIR", scratch("assets"));
        // Before evcxr reads its cache: entries another kernel stored would otherwise rebuild dlhist at every cell.
        if let Some(cache) = evcxr_cache::cache_dir() {
            evcxr_cache::sanitize(&cache).with_context(|| format!("cannot clean evcxr's cache {}", cache.display()))?;
        }
        let (mut ctx, outputs) =
            evcxr::CommandContext::new().map_err(|e| anyhow::anyhow!("cannot start evcxr: {e}"))?;
        // evcxr's cache of compiled registry crates (~/.cache/evcxr), shared with the Jupyter kernels that
        // `cargo xtask setup` configures: after the first build anywhere, candle and polars are not compiled again.
        ctx.execute(":cache 4096").map_err(|e| anyhow::anyhow!("cannot enable evcxr's build cache: {e}"))?;
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        drain(outputs.stdout, stdout.clone());
        drain(outputs.stderr, stderr.clone());
        let mut kernel = Kernel { ctx, stdout, stderr };
        kernel.prepare()?;
        Ok(kernel)
    }

    /// Readies the context for a notebook's first cell.
    fn prepare(&mut self) -> Result<()> {
        // Allow a top-level `?` before the first cell (the kernel's init.evcxr does the same, see xtask's setup.rs):
        // otherwise evcxr compiles the first notebook cell that uses `?` twice.
        self.ctx.execute("Ok::<(), String>(())?;").map_err(|e| anyhow::anyhow!("cannot allow `?` in cells: {e}"))?;
        // DLHIST_TEST_TIMING=1 prints evcxr's phases (compiles, retries, execution) for every cell.
        if std::env::var_os("DLHIST_TEST_TIMING").is_some() {
            let _ = self.ctx.execute(":timing");
        }
        take(&self.stdout);
        take(&self.stderr);
        Ok(())
    }

    /// Hands the context to the next notebook as a fresh kernel would meet it: `:clear` drops every
    /// variable and item and restarts the process that runs cells (in the current working directory).
    /// What stays is what a restarted Jupyter kernel keeps too: the build folder and the dependencies
    /// the setup cell declared, identical in every notebook (the lint checks it), and the index
    /// rust-analyzer built of them. evcxr infers variable types with rust-analyzer, and indexing dlhist,
    /// candle and polars costs the first two cells of a new context about 18 s: once per run instead
    /// of once per notebook.
    fn reuse(&mut self) -> Result<()> {
        self.ctx.execute(":clear").map_err(|e| anyhow::anyhow!("cannot clear evcxr's state: {e}"))?;
        self.prepare()
    }
}

thread_local! {
    /// The context the notebooks' quick runs share (tests run one at a time on the main thread).
    static SHARED_KERNEL: std::cell::RefCell<Option<Kernel>> = const { std::cell::RefCell::new(None) };
}

/// Runs a notebook's cells; returns the metrics lines its check cell printed.
fn run_notebook(kernel: &mut Kernel, path: &Path, quick: &[(String, String)]) -> Result<Vec<String>> {
    let nb = read_notebook(path)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut metrics = vec![];
    let started = Instant::now();
    for (label, source) in cells_to_run(&nb, quick)? {
        let t = Instant::now();
        let result = kernel.ctx.execute(&source);
        if std::env::var_os("DLHIST_TEST_TIMING").is_some() {
            if let Ok(out) = &result {
                let phases: Vec<String> =
                    out.phases.iter().map(|p| format!("{} {:.2}s", p.name, p.duration.as_secs_f64())).collect();
                eprintln!("    {label}: {}", phases.join(", "));
            }
        }
        // evcxr forwards the cell process's stderr from another thread, so a `?` error's message can land
        // after execute() returns: wait until stderr has been quiet for 100 ms (at most 3 s).
        let waited = Instant::now();
        let mut last_len = kernel.stderr.lock().map(|v| v.len()).unwrap_or(0);
        while waited.elapsed() < Duration::from_secs(3) {
            std::thread::sleep(Duration::from_millis(100));
            let len = kernel.stderr.lock().map(|v| v.len()).unwrap_or(0);
            if len == last_len {
                break;
            }
            last_len = len;
        }
        let out = take(&kernel.stdout);
        let err = take(&kernel.stderr);
        metrics.extend(out.iter().filter(|l| l.starts_with("dlhist-metrics: ")).cloned());
        let stderr_text = err.join("\n");
        let fail = |what: String| -> anyhow::Error {
            let tail: Vec<&String> = out.iter().rev().take(15).collect::<Vec<_>>().into_iter().rev().collect();
            let tail: Vec<&str> = tail.iter().map(|s| s.as_str()).collect();
            anyhow::anyhow!(
                "{name}: {label} failed: {what}\n--- stderr ---\n{stderr_text}\n--- last stdout lines ---\n{}",
                tail.join("\n")
            )
        };
        match result {
            Err(evcxr::Error::CompilationErrors(errors)) => {
                return Err(fail(format!("it does not compile:\n{}", format_compile_errors(&label, &source, &errors))))
            }
            Err(e) => return Err(fail(format!("{e}"))),
            // A top-level `?` error and a caught panic only show on stderr; notebooks print progress to
            // stdout, so anything on stderr is a failure.
            Ok(_) if !err.is_empty() => return Err(fail("it wrote to stderr (an error or a panic)".into())),
            Ok(_) => {}
        }
        eprintln!("    {name}: {label} ok in {:.1} s", t.elapsed().as_secs_f64());
    }
    eprintln!("    {name}: all cells ok in {:.1} s", started.elapsed().as_secs_f64());
    Ok(metrics)
}

/// Makes the notebook's folder the working directory, as Jupyter does: evcxr resolves `:dep` paths against
/// it, and the process that runs cells inherits it when it starts.
fn enter_folder(path: &Path) -> Result<()> {
    let dir = path.parent().context("notebook has no folder")?;
    std::env::set_current_dir(dir).with_context(|| format!("cannot enter {}", dir.display()))
}

/// Runs a fixture notebook in a context of its own.
fn run_fixture(fixture: &str) -> Result<Vec<String>> {
    let nb = Path::new(ROOT).join("tests/fixtures").join(fixture);
    enter_folder(&nb)?;
    let mut kernel = Kernel::start(&scratch("evcxr-fixtures"))?;
    run_notebook(&mut kernel, &nb, &[])
}

fn run_quick(path: &Path) -> Result<()> {
    let nb = read_notebook(path)?;
    let quick = nb.quick_values()?;
    enter_folder(path)?;
    // Reuse the context the previous notebook left, or start one. A failed notebook's context is dropped
    // (it may be mid-way through anything), so the next notebook starts a new one.
    let mut kernel = match SHARED_KERNEL.with(|k| k.borrow_mut().take()) {
        Some(mut kernel) => {
            kernel.reuse()?;
            kernel
        }
        None => Kernel::start(&scratch("evcxr-notebooks"))?,
    };
    let metrics = run_notebook(&mut kernel, path, &quick)?;
    SHARED_KERNEL.with(|k| *k.borrow_mut() = Some(kernel));
    if metrics.is_empty() {
        bail!("{}: the check cell reported no metrics (dlhist::notebook::report)", path.display());
    }
    for m in metrics {
        eprintln!("    {m}");
    }
    Ok(())
}

/// A fixture notebook must fail, and the failure must name `cell` and contain `needle`.
fn harness_catches(fixture: &str, cell: usize, needle: &str) -> Result<()> {
    match run_fixture(fixture) {
        Ok(_) => bail!("{fixture} has a failing cell, yet the harness reported success"),
        Err(e) => {
            let msg = format!("{e:#}");
            let names_cell = msg.contains(&format!("cell {cell} failed")) || msg.contains(&format!("cell {cell},"));
            if !names_cell || !msg.contains(needle) {
                bail!("the failure of {fixture} should name cell {cell} and contain `{needle}`; it was:\n{msg}");
            }
            Ok(())
        }
    }
}

/// A notebook that is sound except for a `:dep` in its fourth cell fails the lint for that alone.
fn lint_rejects_late_dep() -> Result<()> {
    let nb = Path::new(ROOT).join("tests/fixtures/late_dep.ipynb");
    match lint(&nb) {
        Ok(()) => bail!("the lint accepted a `:dep` outside the setup cell"),
        Err(e) => {
            let msg = format!("{e:#}");
            let problems = msg.matches("\n- ").count();
            if problems != 1 || !msg.contains("cell 4: `:dep rand = \"0.8\"`") || !msg.contains("setup cell only") {
                bail!("expected one problem, naming cell 4's `:dep`; the lint said:\n{msg}");
            }
            Ok(())
        }
    }
}

/// The kernels' shared build folder: one claim at a time, released on drop, and a dead holder's lock taken over.
fn kernel_build_dir_is_claimed_once() -> Result<()> {
    let dir = scratch("kernel-build-dir-test");
    let _ = std::fs::remove_dir_all(&dir);
    let first = build_dir::claim(&dir)?.context("a free folder was not claimed")?;
    if build_dir::claim(&dir)?.is_some() {
        bail!("a folder held by a live process was claimed a second time");
    }
    drop(first);
    if build_dir::lock_file(&dir).exists() {
        bail!("dropping the claim left its lock file");
    }
    let again = build_dir::claim(&dir)?.context("a released folder was not claimed")?;
    drop(again);
    // A lock left by a process that is gone (pid 0 is never a user process: /proc/0 does not exist), and one
    // without a process id in it: both are stale.
    for stale in ["0\n", ""] {
        std::fs::write(build_dir::lock_file(&dir), stale)?;
        let taken = build_dir::claim(&dir)?.with_context(|| format!("a stale lock {stale:?} was not taken over"))?;
        let holder = std::fs::read_to_string(build_dir::lock_file(&dir))?;
        if holder.trim() != std::process::id().to_string() {
            bail!("the lock names {holder:?}, not this process");
        }
        drop(taken);
    }
    let leftovers: Vec<_> = std::fs::read_dir(&dir)?.flatten().map(|e| e.file_name()).collect();
    if !leftovers.is_empty() {
        bail!("claiming left files behind: {leftovers:?}");
    }
    Ok(())
}

/// The cache fix: `OUT_DIR` files and the `OUT_DIR` record leave a cached dep-info file, nothing else does.
fn evcxr_cache_forgets_out_dirs() -> Result<()> {
    let old = "/tmp/.tmpA/target/x86_64-unknown-linux-gnu/debug";
    let src = "/root/.cargo/registry/src/index/serde_core-1.0.229/src";
    let d = format!(
        "{old}/deps/libserde_core-1.rlib: {src}/lib.rs {old}/build/serde_core-2/out/private.rs {src}/de/mod.rs\n\n\
         {src}/lib.rs:\n{old}/build/serde_core-2/out/private.rs:\n{src}/de/mod.rs:\n\n\
         # env-dep:OUT_DIR={old}/build/serde_core-2/out\n# env-dep:CARGO_PKG_NAME=serde_core\n"
    );
    let want = format!(
        "{old}/deps/libserde_core-1.rlib: {src}/lib.rs {src}/de/mod.rs\n\n{src}/lib.rs:\n{src}/de/mod.rs:\n\n\
         # env-dep:CARGO_PKG_NAME=serde_core\n"
    );
    let got = evcxr_cache::sanitize_dep_info(&d).context("an OUT_DIR entry was not found")?;
    if got != want {
        bail!("sanitized dep-info:\n{got}\nexpected:\n{want}");
    }
    if evcxr_cache::sanitize_dep_info(&want).is_some() {
        bail!("a dep-info file without OUT_DIR entries was changed");
    }
    // On disk: only .d files change, and a second pass changes nothing.
    let cache = scratch("evcxr-cache-test");
    let _ = std::fs::remove_dir_all(&cache);
    std::fs::create_dir_all(cache.join("123"))?;
    std::fs::write(cache.join("123/serde_core-1.d"), &d)?;
    std::fs::write(cache.join("123/libserde_core-1.rmeta"), &d)?;
    let first = evcxr_cache::sanitize(&cache)?;
    let second = evcxr_cache::sanitize(&cache)?;
    if (first, second) != (1, 0) {
        bail!("sanitize changed {first} then {second} files (expected 1 then 0)");
    }
    if std::fs::read_to_string(cache.join("123/serde_core-1.d"))? != want
        || std::fs::read_to_string(cache.join("123/libserde_core-1.rmeta"))? != d
    {
        bail!("sanitize wrote the wrong files");
    }
    if evcxr_cache::sanitize(&cache.join("missing"))? != 0 {
        bail!("a missing cache folder is not empty");
    }
    Ok(())
}
