//! The project's Jupyter kernel: evcxr_jupyter's own entry point, built inside this workspace.
//!
//! Building it here rather than with `cargo install evcxr_jupyter` means the kernel links the very evcxr
//! (and rust-analyzer crates) that the `cargo test` notebook harness links, compiled once in `target/`
//! with the same profile and features: a fresh machine compiles evcxr once instead of twice, and the
//! kernel and `cargo test` cannot drift apart. `cargo xtask setup` builds it with `cargo test --no-run`
//! and copies it to `.venv/bin/evcxr_jupyter`.

mod build_dir;
mod evcxr_cache;

fn main() -> anyhow::Result<()> {
    // evcxr re-executes this binary as the process that runs cells and as its rustc wrapper (hundreds of
    // times per build); only the kernel itself, before evcxr starts, cleans the compiled-crate cache.
    let is_subprocess =
        std::env::var_os("EVCXR_IS_RUNTIME").is_some() || std::env::var_os("EVCXR_RUSTC_WRAPPER").is_some();
    if !is_subprocess {
        if let Some(cache) = evcxr_cache::cache_dir() {
            if let Err(e) = evcxr_cache::sanitize(&cache) {
                // Not fatal: the kernel works, each cell just recompiles more than it needs to.
                eprintln!("dlhist kernel: could not clean evcxr's cache {}: {e}", cache.display());
            }
        }
    }
    // The kernel builds in the project's shared build folder when it is free (kernel.json names it), so a
    // restarted kernel is warm; an explicit EVCXR_TMPDIR wins. The claim lives as long as the kernel.
    let _claim = if is_subprocess || std::env::var_os("EVCXR_TMPDIR").is_some() {
        None
    } else {
        std::env::var_os("DLHIST_KERNEL_BUILD_DIR").and_then(|dir| claim_build_dir(std::path::Path::new(&dir)))
    };
    // evcxr's cell crate needs the incremental builds it asks Cargo for: with CARGO_INCREMENTAL=0 inherited
    // from the environment, loading a cell fails with "dlsym failed" (the notebook harness does the same).
    std::env::remove_var("CARGO_INCREMENTAL");
    // evcxr_jupyter::main also serves as evcxr's runtime when evcxr re-executes this binary.
    evcxr_jupyter::main()
}

/// Points evcxr at `dir` if this kernel can claim it; otherwise at `DLHIST_KERNEL_FALLBACK_DIR` (a folder the
/// headless runner removes after the notebook), or else evcxr makes a temporary folder.
fn claim_build_dir(dir: &std::path::Path) -> Option<build_dir::Claim> {
    let claim = match build_dir::claim(dir) {
        Ok(Some(claim)) => Some(claim),
        Ok(None) => {
            eprintln!("dlhist kernel: another kernel builds in {}; this one uses a fresh folder", dir.display());
            None
        }
        Err(e) => {
            eprintln!("dlhist kernel: cannot use {} ({e}); building in a fresh folder", dir.display());
            None
        }
    };
    let folder = match &claim {
        Some(_) => Some(dir.as_os_str().to_owned()),
        None => std::env::var_os("DLHIST_KERNEL_FALLBACK_DIR"),
    };
    if let Some(folder) = folder {
        std::env::set_var("EVCXR_TMPDIR", folder);
    }
    claim
}
