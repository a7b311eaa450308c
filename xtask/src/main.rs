//! `cargo xtask`: the project's own commands, written in Rust so that a fresh clone needs nothing but cargo and
//! python3 (the alias lives in `.cargo/config.toml`).
//!
//! - `setup`: a project-local Python venv with Jupyter, the evcxr Jupyter kernel, its kernel spec and config,
//!   and a warm build of dlhist for the kernel.
//! - `lab`: `setup`, then Jupyter Lab on `notebooks/`.
//! - `notebooks run`: the headless runner (`xtask/runner/run_notebooks.py`) through the real kernel.
//! - `bench`: dlhist's training step against PyTorch's (see `bench.rs`).
//! - `papers`: the paper PDFs next to the notebooks (see `papers.rs`).

mod bench;
mod cli;
// The kernel's cache cleaner, shared so that setup finds the cache where the kernel does and cleans it after warming.
#[path = "../kernel/evcxr_cache.rs"]
mod evcxr_cache;
mod lab;
mod notebook;
mod notebooks;
mod papers;
#[cfg(test)]
mod pins;
mod project;
mod runner;
mod setup;

use anyhow::Result;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Err(err) = run(&args) {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}

/// Parses the arguments and dispatches to the command.
fn run(args: &[String]) -> Result<()> {
    match cli::parse(args)? {
        cli::Command::Help(text) => {
            print!("{text}");
            Ok(())
        }
        cli::Command::Setup(opts) => {
            let project = project::Project::locate()?;
            setup::run(&project, &opts)
        }
        cli::Command::Lab(opts) => {
            let project = project::Project::locate()?;
            lab::run(&project, &opts)
        }
        cli::Command::NotebooksRun(opts) => {
            let project = project::Project::locate()?;
            notebooks::run(&project, &opts)
        }
        cli::Command::Bench(opts) => {
            let project = project::Project::locate()?;
            bench::run(&project, &opts)
        }
        cli::Command::Papers(rest) => papers::run(&rest),
    }
}
