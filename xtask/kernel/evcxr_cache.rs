//! Keeps evcxr's compiled-crate cache from rebuilding dlhist at every notebook cell.
//!
//! With `:cache` on, evcxr stores each registry crate it compiles (the rlib, rmeta and the dep-info `.d`
//! file) in `~/.cache/evcxr` and copies them back when another kernel compiles the same crate. The `.d`
//! file is copied as rustc wrote it, and for a crate with a build script it names files in that build's
//! `OUT_DIR` (`<first kernel's folder>/target/.../build/serde_core-<hash>/out/private.rs`) and records
//! `OUT_DIR` itself. Once the first kernel's folder is gone, cargo in every later kernel finds those files
//! missing, so it takes serde_core, pulp, thiserror and rustversion for stale at *every* cell, and with them
//! everything above: candle, polars, dlhist (recompiled incrementally) and the cell. That cost 2-4 s per
//! cell (measured on the pilot notebook: cells of 3.1, 9.0 and 4.6 s took 1.3, 5.8 and 3.3 s once fixed).
//!
//! A registry crate's sources never change and cargo fingerprints its build script separately, so the
//! `OUT_DIR` entries add nothing: [`sanitize`] removes them from every cached `.d` file. The kernel and the
//! `cargo test` harness call it before they start evcxr.

use std::io;
use std::path::{Path, PathBuf};

/// evcxr's cache folder: `dirs::cache_dir()/evcxr` in evcxr's `module/cache.rs`, i.e. `$XDG_CACHE_HOME/evcxr`
/// or `~/.cache/evcxr` on Linux, `~/Library/Caches/evcxr` on macOS.
pub fn cache_dir() -> Option<PathBuf> {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let base = if cfg!(target_os = "macos") {
        home.map(|h| h.join("Library").join("Caches"))
    } else {
        std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .or_else(|| home.map(|h| h.join(".cache")))
    };
    base.map(|b| b.join("evcxr"))
}

/// True for a path inside a build script's output folder (`.../build/<crate>-<hash>/out/...`).
fn in_out_dir(path: &str) -> bool {
    let mut parts = path.split('/').peekable();
    while let Some(part) = parts.next() {
        if part == "build" {
            let mut rest = parts.clone();
            if rest.next().is_some() && rest.next() == Some("out") {
                return true;
            }
        }
    }
    false
}

/// Returns `text` (a Makefile-style dep-info file) without `OUT_DIR` files and without the `OUT_DIR` env
/// record, or `None` when there is nothing to remove.
pub fn sanitize_dep_info(text: &str) -> Option<String> {
    let mut changed = false;
    let mut out = Vec::new();
    for line in text.split('\n') {
        if line.starts_with("# env-dep:OUT_DIR=") {
            changed = true;
            continue;
        }
        if let Some((target, deps)) = line.split_once(": ") {
            // "<output>: <dep> <dep> ...": keep the output and the dependencies outside OUT_DIR.
            let kept: Vec<&str> = deps.split(' ').filter(|d| !in_out_dir(d)).collect();
            if kept.len() != deps.split(' ').count() {
                changed = true;
                out.push(format!("{target}: {}", kept.join(" ")));
                continue;
            }
        } else if let Some(dep) = line.strip_suffix(':') {
            // "<dep>:" (one per dependency, so a deleted file is no error for make).
            if in_out_dir(dep) {
                changed = true;
                continue;
            }
        }
        out.push(line.to_string());
    }
    changed.then(|| out.join("\n"))
}

/// Rewrites every cached `.d` file under `cache` (one folder per cached compilation) without its `OUT_DIR`
/// entries. Returns how many files changed. A missing cache folder is not an error (nothing cached yet).
pub fn sanitize(cache: &Path) -> io::Result<usize> {
    let entries = match std::fs::read_dir(cache) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut changed = 0;
    for entry in entries {
        let dir = entry?.path();
        if !dir.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(&dir)? {
            let path = file?.path();
            if path.extension().is_none_or(|e| e != "d") {
                continue;
            }
            let Ok(text) = std::fs::read_to_string(&path) else { continue };
            if let Some(clean) = sanitize_dep_info(&text) {
                // Written beside and renamed over, so a kernel reading the cache never sees half a file.
                let tmp = path.with_extension("d.dlhist-tmp");
                std::fs::write(&tmp, clean)?;
                std::fs::rename(&tmp, &path)?;
                changed += 1;
            }
        }
    }
    Ok(changed)
}
