//! The project's Jupyter kernel: evcxr_jupyter's own entry point, built inside this workspace.
//!
//! Building it here rather than with `cargo install evcxr_jupyter` means the kernel links the very evcxr
//! (and rust-analyzer crates) that the `cargo test` notebook harness links, compiled once in `target/`
//! with the same profile and features: a fresh machine compiles evcxr once instead of twice, and the
//! kernel and `cargo test` cannot drift apart. `cargo xtask setup` builds it with `cargo test --no-run`
//! and copies it to `.venv/bin/evcxr_jupyter`.

fn main() -> anyhow::Result<()> {
    // evcxr_jupyter::main also serves as evcxr's runtime when evcxr re-executes this binary.
    evcxr_jupyter::main()
}
