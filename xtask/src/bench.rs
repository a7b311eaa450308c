//! `cargo xtask bench`: dlhist's training step against PyTorch's, on the same machine, in one run.
//!
//! Builds dlhist's `train_steps` example (release), makes `.venv-bench` with `torch` from PyPI if it is missing
//! (a separate venv, so the Jupyter venv stays small), then runs the two programs alternately for some rounds,
//! so that both see the same machine load, and prints per model the median over rounds of each side's median
//! step time and the ratio dlhist / PyTorch.

use anyhow::{anyhow, bail, Context, Result};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use crate::cli::{BenchOptions, Device};
use crate::project::{self, Project};

/// One JSON line of either benchmark program.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct StepTime {
    pub model: String,
    pub median_ms: f64,
    pub min_ms: f64,
    pub threads: usize,
}

/// Reads the JSON lines of a benchmark's output, skipping anything else it printed.
pub fn parse_lines(text: &str) -> Vec<StepTime> {
    text.lines().filter(|l| l.trim_start().starts_with('{')).filter_map(|l| serde_json::from_str(l).ok()).collect()
}

/// The `{"machine": {...}}` line a benchmark program prints first (where it ran), if there is one.
pub fn parse_machine(text: &str) -> Option<serde_json::Value> {
    text.lines()
        .filter(|l| l.trim_start().starts_with('{'))
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find_map(|v| v.get("machine").cloned())
}

/// The header line naming the machine: the CPU and the instruction sets dlhist's kernels picked, and PyTorch's
/// version and CPU capability (its `torch.backends.cpu.get_cpu_capability()`), from the two `machine` lines.
pub fn machine_line(dlhist: Option<&serde_json::Value>, torch: Option<&serde_json::Value>) -> String {
    let field = |v: Option<&serde_json::Value>, k: &str| {
        v.and_then(|v| v.get(k)).map(|x| x.as_str().map(str::to_string).unwrap_or_else(|| x.to_string()))
    };
    let unknown = || "?".to_string();
    format!(
        "machine: {}; dlhist: matrix products {}, element-wise kernels {}, {} threads; PyTorch {}: CPU capability {}, \
         {} threads\n",
        field(dlhist, "cpu").unwrap_or_else(unknown),
        field(dlhist, "matmul").unwrap_or_else(unknown),
        field(dlhist, "elementwise").unwrap_or_else(unknown),
        field(dlhist, "threads").unwrap_or_else(unknown),
        field(torch, "version").unwrap_or_else(unknown),
        field(torch, "cpu_capability").unwrap_or_else(unknown),
        field(torch, "threads").unwrap_or_else(unknown),
    )
}

/// A model's result over all rounds.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub model: String,
    /// Median over rounds of dlhist's per-round median step time.
    pub dlhist_ms: f64,
    /// The same for PyTorch.
    pub torch_ms: f64,
    /// Median over rounds of dlhist's fastest step (less sensitive to other load on the machine).
    pub dlhist_min_ms: f64,
    /// The same for PyTorch.
    pub torch_min_ms: f64,
}

impl Row {
    pub fn ratio(&self) -> f64 {
        self.dlhist_ms / self.torch_ms
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// Per model (in PyTorch's order), the median over rounds of each side's median; models missing on either side
/// are left out.
pub fn summarize(dlhist: &[StepTime], torch: &[StepTime]) -> Vec<Row> {
    fn collect(runs: &[StepTime], min: bool) -> BTreeMap<&str, Vec<f64>> {
        let mut by: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
        for r in runs {
            by.entry(r.model.as_str()).or_default().push(if min { r.min_ms } else { r.median_ms });
        }
        by
    }
    let (mut d, mut t) = (collect(dlhist, false), collect(torch, false));
    let (mut dmin, mut tmin) = (collect(dlhist, true), collect(torch, true));
    let mut order: Vec<&str> = vec![];
    for r in torch {
        if !order.contains(&r.model.as_str()) {
            order.push(&r.model);
        }
    }
    order
        .into_iter()
        .filter_map(|m| {
            let dm = median(d.get_mut(m)?);
            let tm = median(t.get_mut(m)?);
            let (dmin, tmin) = (median(dmin.get_mut(m)?), median(tmin.get_mut(m)?));
            Some(Row { model: m.to_string(), dlhist_ms: dm, torch_ms: tm, dlhist_min_ms: dmin, torch_min_ms: tmin })
        })
        .collect()
}

/// The table `cargo xtask bench` prints (Markdown, so it can go into BENCHMARKS.md as it is).
pub fn table(rows: &[Row], rounds: usize, threads: usize) -> String {
    let mut s = format!(
        "{rounds} rounds, {threads} threads; medians over rounds of each program's median (and fastest) step\n\n\
         | model | dlhist ms | PyTorch ms | ratio dlhist/PyTorch | dlhist min ms | PyTorch min ms | ratio of mins |\n\
         | --- | --- | --- | --- | --- | --- | --- |\n"
    );
    for r in rows {
        s.push_str(&format!(
            "| {} | {:.3} | {:.3} | {:.2} | {:.3} | {:.3} | {:.2} |\n",
            r.model,
            r.dlhist_ms,
            r.torch_ms,
            r.ratio(),
            r.dlhist_min_ms,
            r.torch_min_ms,
            r.dlhist_min_ms / r.torch_min_ms
        ));
    }
    s
}

fn bench_venv(project: &Project) -> PathBuf {
    project.root.join(".venv-bench")
}

/// `.venv-bench` with torch (PyPI's Linux wheel brings the CUDA libraries: several GB, once).
fn ensure_torch(project: &Project) -> Result<PathBuf> {
    let venv = bench_venv(project);
    let python = venv.join("bin").join("python");
    if !python.exists() {
        println!("creating {}", venv.display());
        project::run_checked(Command::new("python3").arg("-m").arg("venv").arg(&venv), "python3 -m venv .venv-bench")?;
    }
    let has_torch = Command::new(&python).args(["-c", "import torch"]).output().is_ok_and(|o| o.status.success());
    if !has_torch {
        println!("installing torch into {} (PyPI; a few GB with its CUDA libraries)", venv.display());
        project::run_checked(
            Command::new(&python).args(["-m", "pip", "install", "--disable-pip-version-check", "torch"]),
            "pip install torch",
        )?;
    }
    Ok(python)
}

fn run_program(cmd: &mut Command, what: &str) -> Result<(Vec<StepTime>, Option<serde_json::Value>)> {
    let out = cmd.output().with_context(|| format!("{what}: could not start {:?}", cmd.get_program()))?;
    if !out.status.success() {
        bail!("{what} failed ({}):\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines = parse_lines(&stdout);
    if lines.is_empty() {
        bail!("{what} printed no results");
    }
    Ok((lines, parse_machine(&stdout)))
}

/// Runs the comparison and prints the table.
pub fn run(project: &Project, opts: &BenchOptions) -> Result<()> {
    let python = ensure_torch(project)?;
    let exe = match &opts.dlhist_bin {
        Some(exe) => exe.clone(),
        None => {
            let mut args = vec!["build", "--release", "-p", "dlhist", "--example", "train_steps"];
            if opts.device == Device::Cuda {
                args.extend(["--features", "cuda"]);
            }
            println!("building dlhist's train_steps example (release): cargo {}", args.join(" "));
            project::run_checked(
                project::cargo_command().current_dir(&project.root).args(&args),
                &format!("cargo {}", args.join(" ")),
            )?;
            project.target_dir().join("release").join("examples").join("train_steps")
        }
    };
    let script = project.root.join("xtask").join("bench").join("torch_steps.py");
    if !script.exists() {
        return Err(anyhow!("{} is missing", script.display()));
    }
    let threads = opts.threads.to_string();
    let (mut dl, mut th) = (vec![], vec![]);
    let (mut dl_machine, mut th_machine) = (None, None);
    for round in 1..=opts.rounds {
        let device = opts.device.as_str();
        let (d, dm) = run_program(
            Command::new(&exe).env("THREADS", &threads).env("DLHIST_DEVICE", device),
            "dlhist train_steps",
        )?;
        let (t, tm) = run_program(
            Command::new(&python).arg(&script).env("THREADS", &threads).env("DEVICE", device),
            "torch_steps.py",
        )?;
        if round == 1 {
            (dl_machine, th_machine) = (dm, tm);
            print!("{}", machine_line(dl_machine.as_ref(), th_machine.as_ref()));
        }
        for r in d.iter().chain(&t) {
            println!(
                "round {round}: {}",
                serde_json::json!({"model": r.model, "median_ms": r.median_ms, "min_ms": r.min_ms, "threads": r.threads})
            );
        }
        dl.extend(d);
        th.extend(t);
    }
    print!("\n{}", machine_line(dl_machine.as_ref(), th_machine.as_ref()));
    print!("{}", table(&summarize(&dl, &th), opts.rounds, opts.threads));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(model: &str, ms: f64) -> StepTime {
        StepTime { model: model.into(), median_ms: ms, min_ms: ms, threads: 2 }
    }

    #[test]
    fn parses_json_lines_among_other_output() {
        let text = "warming up\n{\"model\": \"a\", \"median_ms\": 1.5, \"min_ms\": 1.2, \"threads\": 2}\nnot json\n";
        assert_eq!(parse_lines(text), vec![StepTime { model: "a".into(), median_ms: 1.5, min_ms: 1.2, threads: 2 }]);
    }

    #[test]
    fn machine_lines_name_both_sides() {
        let d = "{\"machine\": {\"program\": \"dlhist\", \"cpu\": \"Some CPU\", \"matmul\": \"AVX-512\", \
                 \"elementwise\": \"AVX2+FMA\", \"threads\": 2}}\n{\"model\": \"a\", \"median_ms\": 1.5, \
                 \"min_ms\": 1.2, \"threads\": 2}\n";
        let t = "{\"machine\": {\"program\": \"torch\", \"version\": \"2.15.0\", \"cpu_capability\": \"AVX512\", \
                 \"threads\": 2}}\n";
        assert_eq!(parse_lines(d).len(), 1, "the machine line is not a step time");
        let line = machine_line(parse_machine(d).as_ref(), parse_machine(t).as_ref());
        assert_eq!(
            line,
            "machine: Some CPU; dlhist: matrix products AVX-512, element-wise kernels AVX2+FMA, 2 threads; \
             PyTorch 2.15.0: CPU capability AVX512, 2 threads\n"
        );
        assert!(machine_line(None, None).starts_with("machine: ?;"), "a program without the line leaves a ?");
    }

    #[test]
    fn summary_takes_medians_over_rounds_in_torch_order() {
        let d = [st("b", 4.0), st("a", 10.0), st("b", 6.0), st("a", 30.0), st("a", 20.0), st("b", 5.0)];
        let t = [st("a", 10.0), st("b", 2.0), st("a", 10.0), st("b", 2.0), st("a", 40.0), st("c", 1.0)];
        let rows = summarize(&d, &t);
        assert_eq!(rows.len(), 2, "c has no dlhist result");
        assert_eq!((rows[0].model.as_str(), rows[0].dlhist_ms, rows[0].torch_ms), ("a", 20.0, 10.0));
        assert_eq!((rows[1].model.as_str(), rows[1].dlhist_ms, rows[1].torch_ms), ("b", 5.0, 2.0));
        assert_eq!(rows[1].ratio(), 2.5);
        let tab = table(&rows, 3, 2);
        assert!(tab.contains("| a | 20.000 | 10.000 | 2.00 | 20.000 | 10.000 | 2.00 |"), "{tab}");
    }
}
