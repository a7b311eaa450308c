//! Command-line parsing for `cargo xtask`, by hand: a handful of flags does not justify compiling an argument
//! parsing crate on every fresh clone.

use anyhow::{anyhow, bail, Context, Result};
use std::path::PathBuf;

/// Top-level help, printed by `cargo xtask`, `cargo xtask help` and `cargo xtask --help`.
pub const HELP: &str = "\
cargo xtask: project commands for dlhist

USAGE:
    cargo xtask <COMMAND> [OPTIONS]

COMMANDS:
    setup [--no-warm]            Create .venv (Jupyter from PyPI), install evcxr_jupyter into it, register the
                                 `rust` kernel there and warm the kernel's build of dlhist. Idempotent.
    lab [--no-browser] [--port N] [-- JUPYTER_ARGS...]
                                 Run setup if needed, then start Jupyter Lab on notebooks/.
    notebooks run [OPTIONS] [NOTEBOOK|DIR...]
                                 Execute notebooks through the real Jupyter kernel (all under notebooks/ by
                                 default). See `cargo xtask notebooks run --help`.
    bench [--rounds N] [--threads N] [--device cpu|cuda] [--dlhist-bin PATH]
                                 Training-step time of dlhist vs PyTorch per model, alternating rounds.
                                 See `cargo xtask bench --help`.
    papers ...                   Fetch the papers' PDFs next to the notebooks. See `cargo xtask papers --help`.
    help                         Print this help.
";

/// Help of `cargo xtask setup`.
pub const SETUP_HELP: &str = "\
cargo xtask setup [--no-warm]

Creates everything inside the project, skipping finished steps:
  1. checks cargo and python3 (>= 3.9)
  2. .venv with the pinned packages of xtask/requirements.txt
  3. the evcxr_jupyter kernel (pinned), built by `cargo test --no-run` together with the test harness that
     shares its evcxr (about 15 minutes on 2 cores, once), copied into .venv/bin
  4. the `rust` kernel spec in .venv/share/jupyter, its evcxr config in .venv/evcxr
  5. (unless --no-warm) runs the standard setup cell through the kernel once, so that a notebook's first cell
     finds dlhist's dependencies already compiled

OPTIONS:
    --no-warm    Skip step 5.
";

/// Help of `cargo xtask lab`.
pub const LAB_HELP: &str = "\
cargo xtask lab [--no-browser] [--port N] [-- JUPYTER_ARGS...]

Runs `cargo xtask setup` (a no-op when done), then starts Jupyter Lab from .venv on notebooks/.
Ctrl-C stops it.

OPTIONS:
    --no-browser    Do not open a browser (print the URL only).
    --port N        Serve on port N (default: Jupyter's, 8888 or the next free one).
    -- ARGS...      Everything after `--` goes to jupyter lab as it is (e.g. -- --ServerApp.ip=0.0.0.0).
";

/// Help of `cargo xtask notebooks run`.
pub const NOTEBOOKS_HELP: &str = "\
cargo xtask notebooks run [--quick|--full] [--device cpu|cuda] [--timeout S] [--summary FILE] [--out DIR]
                          [NOTEBOOK|DIR...]

Executes notebooks through the real Jupyter kernel (nbclient + evcxr_jupyter), one kernel per notebook, with
the notebook's folder as working directory. A cell fails when the kernel reports an error or its output shows a
panic, a failed assertion or a top-level `?` error. Exits non-zero if any notebook failed.

OPTIONS:
    --quick           Quick mode (default): insert the `injected-parameters` cell built from the notebook's
                      metadata.dlhist.quick after its `parameters` cell.
    --full            Full mode: the reader's parameters. Writes each passing notebook back in place with its
                      outputs and metadata.dlhist.code_sha256 (commit the result).
    --device D        cpu (default) or cuda: sets DLHIST_DEVICE=cuda for the kernel and adds
                      features = [\"cuda\"] to the setup cell's `:dep dlhist` (the committed source is kept).
    --timeout S       Per-notebook time limit in seconds (default: 1200 quick, 7200 full).
    --summary FILE    Where to write the JSON summary (default: <out>/summary.json).
    --out DIR         Where to write executed notebooks (default: target/notebooks-out).

NOTEBOOK|DIR: .ipynb files, or folders searched recursively; default: every notebook under notebooks/.
";

/// Help of `cargo xtask bench`.
pub const BENCH_HELP: &str = "\
cargo xtask bench [--rounds N] [--threads N] [--device cpu|cuda] [--dlhist-bin PATH]

Compares the median time of one training step (forward, backward, Adam update) of the notebooks' reference
models between dlhist (`cargo run --release -p dlhist --example train_steps`) and PyTorch
(xtask/bench/torch_steps.py), running the two alternately for N rounds, and prints per model the median over
rounds and the ratio dlhist / PyTorch. Creates .venv-bench with torch from PyPI when missing (several GB: PyPI's
Linux wheel brings CUDA libraries).

OPTIONS:
    --rounds N     Rounds of both programs (default 3).
    --threads N    Threads for both (THREADS; default 2).
    --device D     cpu (default) or cuda: builds train_steps with `--features cuda` and runs both sides on the
                   GPU (DLHIST_DEVICE=cuda, DEVICE=cuda), each step timed up to a synchronize. Needs nvcc on
                   PATH (a CUDA toolkit, or `eval \"$(.ci/cuda-build --env)\"`).
    --dlhist-bin P Run this prebuilt train_steps instead of building the checkout's (e.g. an older commit's
                   build, copied aside, to measure a baseline under the same conditions).
";

/// Options of `cargo xtask bench`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BenchOptions {
    /// Rounds of both programs.
    pub rounds: usize,
    /// Threads for both (`THREADS`).
    pub threads: usize,
    /// A prebuilt `train_steps` to run instead of building the current one (e.g. an older commit's, to
    /// measure a baseline).
    pub dlhist_bin: Option<PathBuf>,
    /// Where both sides run.
    pub device: Device,
}

/// Options of `cargo xtask setup`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetupOptions {
    /// Run the warm-up notebook through the kernel (skipped by `--no-warm`).
    pub warm: bool,
}

/// Options of `cargo xtask lab`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabOptions {
    /// Let Jupyter open a browser.
    pub browser: bool,
    /// Port to serve on; Jupyter picks one when `None`.
    pub port: Option<u16>,
    /// Arguments after `--`, passed to `jupyter lab` untouched.
    pub extra: Vec<String>,
}

/// Quick mode runs the notebook's `metadata.dlhist.quick` values; full mode the reader's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Quick,
    Full,
}

impl Mode {
    /// The name the runner and the summary use.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Quick => "quick",
            Mode::Full => "full",
        }
    }
}

/// Where the notebook's tensors live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    Cpu,
    Cuda,
}

impl Device {
    /// The name the runner and the summary use.
    pub fn as_str(self) -> &'static str {
        match self {
            Device::Cpu => "cpu",
            Device::Cuda => "cuda",
        }
    }
}

/// Options of `cargo xtask notebooks run`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOptions {
    pub mode: Mode,
    pub device: Device,
    /// Per-notebook limit in seconds; `None` means the mode's default.
    pub timeout_s: Option<u64>,
    pub summary: Option<PathBuf>,
    pub out: Option<PathBuf>,
    /// Notebook files or folders; empty means every notebook under `notebooks/`.
    pub notebooks: Vec<PathBuf>,
}

impl RunOptions {
    /// The per-notebook time limit: the one given, else a default that leaves room for a cold dlhist build
    /// (about 4 minutes on 2 cores) in the first notebook.
    pub fn timeout_s(&self) -> u64 {
        self.timeout_s.unwrap_or(match self.mode {
            Mode::Quick => 1200,
            Mode::Full => 7200,
        })
    }
}

/// A parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Print this text and exit successfully.
    Help(&'static str),
    Setup(SetupOptions),
    Lab(LabOptions),
    NotebooksRun(RunOptions),
    Bench(BenchOptions),
    /// Everything after `papers`, handed to `papers::run` untouched.
    Papers(Vec<String>),
}

fn is_help(arg: &str) -> bool {
    matches!(arg, "-h" | "--help" | "help")
}

/// Splits `--name=value` into its parts, so that both `--port 8890` and `--port=8890` work.
fn split_flag(arg: &str) -> (&str, Option<&str>) {
    match arg.split_once('=') {
        Some((name, value)) if name.starts_with("--") => (name, Some(value)),
        _ => (arg, None),
    }
}

/// Reads a flag's value: the part after `=`, else the next argument.
fn flag_value<'a>(name: &str, inline: Option<&'a str>, rest: &mut impl Iterator<Item = &'a String>) -> Result<&'a str> {
    match inline {
        Some(value) => Ok(value),
        None => rest.next().map(String::as_str).ok_or_else(|| anyhow!("{name} needs a value (see --help)")),
    }
}

/// Parses `cargo xtask`'s arguments (without the program name).
pub fn parse(args: &[String]) -> Result<Command> {
    let Some((command, rest)) = args.split_first() else {
        return Ok(Command::Help(HELP));
    };
    match command.as_str() {
        c if is_help(c) => Ok(Command::Help(HELP)),
        "setup" => parse_setup(rest),
        "lab" => parse_lab(rest),
        "notebooks" => parse_notebooks(rest),
        "bench" => parse_bench(rest),
        "papers" => Ok(Command::Papers(rest.to_vec())),
        other => {
            bail!("unknown command `{other}`; the commands are setup, lab, notebooks, bench, papers (see `cargo xtask help`)")
        }
    }
}

fn parse_setup(args: &[String]) -> Result<Command> {
    let mut opts = SetupOptions { warm: true };
    for arg in args {
        match arg.as_str() {
            a if is_help(a) => return Ok(Command::Help(SETUP_HELP)),
            "--no-warm" => opts.warm = false,
            other => bail!("setup: unknown option `{other}` (see `cargo xtask setup --help`)"),
        }
    }
    Ok(Command::Setup(opts))
}

fn parse_lab(args: &[String]) -> Result<Command> {
    let mut opts = LabOptions { browser: true, port: None, extra: Vec::new() };
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let (name, inline) = split_flag(arg);
        match name {
            "--" => {
                opts.extra = iter.by_ref().cloned().collect();
            }
            a if is_help(a) => return Ok(Command::Help(LAB_HELP)),
            "--no-browser" => opts.browser = false,
            "--port" => {
                let value = flag_value(name, inline, &mut iter)?;
                let port =
                    value.parse::<u16>().with_context(|| format!("lab: --port wants a port number, got `{value}`"))?;
                opts.port = Some(port);
            }
            other => bail!("lab: unknown option `{other}` (see `cargo xtask lab --help`)"),
        }
    }
    Ok(Command::Lab(opts))
}

fn parse_bench(args: &[String]) -> Result<Command> {
    let mut opts = BenchOptions { rounds: 3, threads: 2, dlhist_bin: None, device: Device::Cpu };
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let (name, inline) = split_flag(arg);
        match name {
            a if is_help(a) => return Ok(Command::Help(BENCH_HELP)),
            "--rounds" | "--threads" => {
                let value = flag_value(name, inline, &mut iter)?;
                let n = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| anyhow!("bench: {name} wants a positive number, got `{value}`"))?;
                if name == "--rounds" {
                    opts.rounds = n;
                } else {
                    opts.threads = n;
                }
            }
            "--dlhist-bin" => opts.dlhist_bin = Some(PathBuf::from(flag_value(name, inline, &mut iter)?)),
            "--device" => {
                opts.device = match flag_value(name, inline, &mut iter)? {
                    "cpu" => Device::Cpu,
                    "cuda" => Device::Cuda,
                    other => bail!("bench: --device is cpu or cuda, got `{other}`"),
                }
            }
            other => bail!("bench: unknown option `{other}` (see `cargo xtask bench --help`)"),
        }
    }
    Ok(Command::Bench(opts))
}

fn parse_notebooks(args: &[String]) -> Result<Command> {
    let Some((sub, rest)) = args.split_first() else {
        return Ok(Command::Help(NOTEBOOKS_HELP));
    };
    match sub.as_str() {
        s if is_help(s) => Ok(Command::Help(NOTEBOOKS_HELP)),
        "run" => parse_notebooks_run(rest),
        other => bail!("notebooks: unknown subcommand `{other}`; try `cargo xtask notebooks run --help`"),
    }
}

fn parse_notebooks_run(args: &[String]) -> Result<Command> {
    let mut opts = RunOptions {
        mode: Mode::Quick,
        device: Device::Cpu,
        timeout_s: None,
        summary: None,
        out: None,
        notebooks: Vec::new(),
    };
    let mut mode_given: Option<Mode> = None;
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let (name, inline) = split_flag(arg);
        match name {
            a if is_help(a) => return Ok(Command::Help(NOTEBOOKS_HELP)),
            "--quick" | "--full" => {
                let mode = if name == "--quick" { Mode::Quick } else { Mode::Full };
                // Both flags at once is a typo we would rather report than resolve silently.
                if mode_given.is_some_and(|m| m != mode) {
                    bail!("notebooks run: --quick and --full exclude each other");
                }
                mode_given = Some(mode);
                opts.mode = mode;
            }
            "--device" => {
                opts.device = match flag_value(name, inline, &mut iter)? {
                    "cpu" => Device::Cpu,
                    "cuda" => Device::Cuda,
                    other => bail!("notebooks run: --device is cpu or cuda, got `{other}`"),
                }
            }
            "--timeout" => {
                let value = flag_value(name, inline, &mut iter)?;
                let secs = value.parse::<u64>().ok().filter(|s| *s > 0).ok_or_else(|| {
                    anyhow!("notebooks run: --timeout wants a positive number of seconds, got `{value}`")
                })?;
                opts.timeout_s = Some(secs);
            }
            "--summary" => opts.summary = Some(PathBuf::from(flag_value(name, inline, &mut iter)?)),
            "--out" => opts.out = Some(PathBuf::from(flag_value(name, inline, &mut iter)?)),
            other if other.starts_with('-') => {
                bail!("notebooks run: unknown option `{other}` (see `cargo xtask notebooks run --help`)")
            }
            path => opts.notebooks.push(PathBuf::from(path)),
        }
    }
    Ok(Command::NotebooksRun(opts))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(line: &str) -> Result<Command> {
        let args: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
        parse(&args)
    }

    fn run_opts(line: &str) -> RunOptions {
        match parse_str(line).expect("parses") {
            Command::NotebooksRun(opts) => opts,
            other => panic!("expected notebooks run, got {other:?}"),
        }
    }

    #[test]
    fn no_arguments_and_help_print_the_command_list() {
        assert_eq!(parse_str("").unwrap(), Command::Help(HELP));
        assert_eq!(parse_str("--help").unwrap(), Command::Help(HELP));
        assert_eq!(parse_str("help").unwrap(), Command::Help(HELP));
        for command in ["setup", "lab", "notebooks run", "bench", "papers"] {
            assert!(HELP.contains(command), "help lists {command}");
        }
    }

    #[test]
    fn subcommand_help() {
        assert_eq!(parse_str("setup --help").unwrap(), Command::Help(SETUP_HELP));
        assert_eq!(parse_str("lab -h").unwrap(), Command::Help(LAB_HELP));
        assert_eq!(parse_str("notebooks").unwrap(), Command::Help(NOTEBOOKS_HELP));
        assert_eq!(parse_str("notebooks run --help").unwrap(), Command::Help(NOTEBOOKS_HELP));
    }

    #[test]
    fn setup_warm_flag() {
        assert_eq!(parse_str("setup").unwrap(), Command::Setup(SetupOptions { warm: true }));
        assert_eq!(parse_str("setup --no-warm").unwrap(), Command::Setup(SetupOptions { warm: false }));
        assert!(parse_str("setup --cold").is_err());
    }

    #[test]
    fn lab_options() {
        assert_eq!(parse_str("lab").unwrap(), Command::Lab(LabOptions { browser: true, port: None, extra: vec![] }));
        let expected = Command::Lab(LabOptions { browser: false, port: Some(8890), extra: vec![] });
        assert_eq!(parse_str("lab --no-browser --port 8890").unwrap(), expected);
        assert_eq!(parse_str("lab --port=8890 --no-browser").unwrap(), expected);
        let with_extra = Command::Lab(LabOptions {
            browser: true,
            port: None,
            extra: vec!["--ServerApp.ip=0.0.0.0".into(), "--help".into()],
        });
        assert_eq!(parse_str("lab -- --ServerApp.ip=0.0.0.0 --help").unwrap(), with_extra);
        assert!(parse_str("lab --port").is_err());
        assert!(parse_str("lab --port 99999").is_err());
    }

    #[test]
    fn notebooks_run_defaults() {
        let opts = run_opts("notebooks run");
        assert_eq!(opts.mode, Mode::Quick);
        assert_eq!(opts.device, Device::Cpu);
        assert_eq!(opts.timeout_s(), 1200);
        assert!(opts.notebooks.is_empty() && opts.summary.is_none() && opts.out.is_none());
    }

    #[test]
    fn notebooks_run_all_options() {
        let opts =
            run_opts("notebooks run --full --device cuda --timeout=90 --summary s.json --out o a.ipynb notebooks/b");
        assert_eq!(opts.mode, Mode::Full);
        assert_eq!(opts.device, Device::Cuda);
        assert_eq!(opts.timeout_s(), 90);
        assert_eq!(opts.summary, Some(PathBuf::from("s.json")));
        assert_eq!(opts.out, Some(PathBuf::from("o")));
        assert_eq!(opts.notebooks, vec![PathBuf::from("a.ipynb"), PathBuf::from("notebooks/b")]);
        assert_eq!(run_opts("notebooks run --full").timeout_s(), 7200);
    }

    #[test]
    fn notebooks_run_rejects_bad_input() {
        for line in [
            "notebooks run --quick --full",
            "notebooks run --device tpu",
            "notebooks run --timeout 0",
            "notebooks run --timeout soon",
            "notebooks run --timeout",
            "notebooks run --verbose",
            "notebooks list",
            "frobnicate",
        ] {
            assert!(parse_str(line).is_err(), "`{line}` should be rejected");
        }
    }

    #[test]
    fn bench_options() {
        assert_eq!(
            parse_str("bench").unwrap(),
            Command::Bench(BenchOptions { rounds: 3, threads: 2, dlhist_bin: None, device: Device::Cpu })
        );
        assert_eq!(
            parse_str("bench --rounds 5 --threads=1 --dlhist-bin /tmp/t").unwrap(),
            Command::Bench(BenchOptions {
                rounds: 5,
                threads: 1,
                dlhist_bin: Some(PathBuf::from("/tmp/t")),
                device: Device::Cpu
            })
        );
        assert_eq!(
            parse_str("bench --device cuda").unwrap(),
            Command::Bench(BenchOptions { rounds: 3, threads: 2, dlhist_bin: None, device: Device::Cuda })
        );
        assert_eq!(parse_str("bench --help").unwrap(), Command::Help(BENCH_HELP));
        for line in ["bench --rounds 0", "bench --threads x", "bench --rounds", "bench --fast", "bench --device tpu"] {
            assert!(parse_str(line).is_err(), "`{line}` should be rejected");
        }
    }

    #[test]
    fn papers_gets_its_arguments_untouched() {
        assert_eq!(parse_str("papers fetch --force").unwrap(), Command::Papers(vec!["fetch".into(), "--force".into()]));
    }
}
