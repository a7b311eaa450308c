//! The project's Jupyter kernel: evcxr_jupyter's own entry point, built inside this workspace.
//!
//! Building it here rather than with `cargo install evcxr_jupyter` means the kernel links the very evcxr
//! (and rust-analyzer crates) that the `cargo test` notebook harness links, compiled once in `target/`
//! with the same profile and features: a fresh machine compiles evcxr once instead of twice, and the
//! kernel and `cargo test` cannot drift apart. `cargo xtask setup` builds it with `cargo test --no-run`
//! and copies it to `.venv/bin/evcxr_jupyter`.

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
    // evcxr_jupyter::main also serves as evcxr's runtime when evcxr re-executes this binary.
    evcxr_jupyter::main()
}
