//! `cargo xtask papers`: the catalog of the papers behind the notebooks and the command that
//! puts each paper's PDF next to its notebook.
//!
//! ```text
//! cargo xtask papers list  [--root DIR]
//! cargo xtask papers bib   [--check]
//! cargo xtask papers fetch [--milestone M]... [--mirror URL] [--root DIR] [--retries N] [--timeout SECS]
//! ```
//!
//! The catalog is `papers/catalog.toml` of this checkout ([`catalog`]); `papers/references.bib`
//! is generated from it; `papers fetch` ([`fetch`]) downloads, verifies and places the PDFs and
//! records their hashes in `papers/papers.lock`. `papers/README.md` explains all three.

#[path = "papers/catalog.rs"]
pub mod catalog;
#[path = "papers/fetch.rs"]
pub mod fetch;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

use catalog::Catalog;
use fetch::FetchOptions;

/// The usage text printed by `papers help` and after a usage error.
pub const USAGE: &str = "\
usage: cargo xtask papers <command> [options]

commands:
  list                 print the catalog as a table (key, year, title, milestone, fetched?)
  bib [--check]        regenerate papers/references.bib from papers/catalog.toml
                       (--check: only compare, fail if the file is out of date)
  fetch [options]      download each missing PDF next to its notebook and verify it
  help                 print this text

fetch options:
  --milestone M        only this milestone (02-cnn or 01-deep-neural-networks/02-cnn); repeatable
  --mirror URL         fetch URL/<section>/<milestone>/<pdf_file> instead of the catalog's URLs
  --retries N          retries per URL after a transient failure (default 3)
  --timeout SECS       connect/stall timeout per attempt (default 60)

common options:
  --root DIR           repository root holding notebooks/ and papers/papers.lock
                       (default: this checkout); the catalog always comes from this checkout
";

/// The root of this checkout (the workspace folder above `xtask/`).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(Path::to_path_buf).unwrap_or_else(|| manifest.to_path_buf())
}

/// The catalog file of this checkout.
pub fn catalog_path() -> PathBuf {
    workspace_root().join("papers").join("catalog.toml")
}

/// The BibTeX file of this checkout.
pub fn bib_path() -> PathBuf {
    workspace_root().join("papers").join("references.bib")
}

/// Runs `cargo xtask papers <args...>`; `args` excludes the word `papers` itself.
/// Returns an error (a non-zero exit) on a usage error or when any paper failed to fetch.
pub fn run(args: &[String]) -> Result<()> {
    let (command, rest) = match args.split_first() {
        Some((c, rest)) => (c.as_str(), rest),
        None => ("help", &[][..]),
    };
    match command {
        "list" => {
            let opts = parse_options(rest, &["--root"], &[])?;
            let catalog = Catalog::load(&catalog_path())?;
            let root = opts.root.unwrap_or_else(workspace_root);
            print!("{}", list_table(&catalog, &root));
            Ok(())
        }
        "bib" => {
            let opts = parse_options(rest, &[], &["--check"])?;
            let catalog = Catalog::load(&catalog_path())?;
            bib(&catalog, &bib_path(), opts.check)
        }
        "fetch" => {
            let opts = parse_options(rest, &["--root", "--milestone", "--mirror", "--retries", "--timeout"], &[])?;
            let catalog = Catalog::load(&catalog_path())?;
            let mut fetch_opts = FetchOptions::new(opts.root.unwrap_or_else(workspace_root));
            fetch_opts.milestones = opts.milestones;
            fetch_opts.mirror = opts.mirror;
            if let Some(n) = opts.retries {
                fetch_opts.retries = n;
            }
            if let Some(t) = opts.timeout {
                fetch_opts.timeout = t;
            }
            let report = fetch::fetch(&catalog, &fetch_opts)?;
            println!("{}", report.summary());
            let failed = report.failures().len();
            if failed > 0 {
                bail!("{failed} of {} papers could not be fetched (reasons above)", report.outcomes.len());
            }
            Ok(())
        }
        "help" | "--help" | "-h" => {
            print!("{USAGE}");
            Ok(())
        }
        other => Err(anyhow!("unknown papers command {other:?}\n\n{USAGE}")),
    }
}

/// Options parsed from the command line (each command accepts a subset).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// `--root DIR`.
    pub root: Option<PathBuf>,
    /// Every `--milestone M`.
    pub milestones: Vec<String>,
    /// `--mirror URL`.
    pub mirror: Option<String>,
    /// `--retries N`.
    pub retries: Option<u32>,
    /// `--timeout SECS`.
    pub timeout: Option<Duration>,
    /// `--check`.
    pub check: bool,
}

/// Parses `args` allowing the options in `valued` (which take a value, as `--x V` or `--x=V`)
/// and the switches in `flags`. Anything else is a usage error that names it.
pub fn parse_options(args: &[String], valued: &[&str], flags: &[&str]) -> Result<Options> {
    let mut opts = Options::default();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        if flags.contains(&name) && inline.is_none() {
            if name == "--check" {
                opts.check = true;
            }
            continue;
        }
        if !valued.contains(&name) {
            bail!("unexpected argument {arg:?}\n\n{USAGE}");
        }
        let value = match inline {
            Some(v) => v,
            None => it.next().cloned().ok_or_else(|| anyhow!("{name} needs a value\n\n{USAGE}"))?,
        };
        match name {
            "--root" => opts.root = Some(PathBuf::from(value)),
            "--milestone" => opts.milestones.push(value),
            "--mirror" => {
                if !(value.starts_with("http://") || value.starts_with("https://")) {
                    bail!("--mirror needs an http(s) URL, got {value:?}");
                }
                opts.mirror = Some(value);
            }
            "--retries" => {
                opts.retries =
                    Some(value.parse().with_context(|| format!("--retries needs a whole number, got {value:?}"))?)
            }
            "--timeout" => {
                let secs: f64 = value.parse().with_context(|| format!("--timeout needs seconds, got {value:?}"))?;
                if !(secs > 0.0 && secs.is_finite()) {
                    bail!("--timeout needs a positive number of seconds, got {value:?}");
                }
                opts.timeout = Some(Duration::from_secs_f64(secs));
            }
            _ => unreachable!("every valued option is handled above"),
        }
    }
    Ok(opts)
}

/// `papers bib`: writes the BibTeX rendering of `catalog` to `path`, or with `check` only
/// compares and fails when the file is missing or out of date.
pub fn bib(catalog: &Catalog, path: &Path, check: bool) -> Result<()> {
    let generated = catalog.to_bibtex();
    let current = std::fs::read_to_string(path).ok();
    if check {
        if current.as_deref() == Some(generated.as_str()) {
            println!("{} is up to date ({} entries)", path.display(), catalog.papers.len());
            return Ok(());
        }
        bail!("{} is out of date with papers/catalog.toml; run `cargo xtask papers bib` and commit it", path.display());
    }
    if current.as_deref() != Some(generated.as_str()) {
        std::fs::write(path, &generated).with_context(|| format!("cannot write {}", path.display()))?;
    }
    println!("wrote {} ({} entries)", path.display(), catalog.papers.len());
    Ok(())
}

/// The longest title shown by `papers list` before it is cut with `...`.
const TITLE_WIDTH: usize = 52;

/// `papers list`: the catalog as an aligned table (key, year, title, milestone folder, fetched?)
/// and a closing count. "fetched" means the PDF exists at its place under `root`; `papers fetch`
/// is what verifies it against its hash.
pub fn list_table(catalog: &Catalog, root: &Path) -> String {
    let rows: Vec<[String; 5]> = catalog
        .papers
        .iter()
        .map(|p| {
            let fetched = if p.pdf_path(root).is_file() { "yes" } else { "no" };
            [p.key.clone(), p.year.to_string(), shorten(&p.title, TITLE_WIDTH), p.milestone.clone(), fetched.into()]
        })
        .collect();
    let header = ["key", "year", "title", "milestone", "fetched"].map(String::from);
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |row: &[String; 5]| {
        let cells: Vec<String> = row.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        format!("{}\n", cells.join("  ").trim_end())
    };
    let mut out = line(&header);
    out.push_str(&line(&widths.map(|w| "-".repeat(w))));
    for row in &rows {
        out.push_str(&line(row));
    }
    let fetched = rows.iter().filter(|r| r[4] == "yes").count();
    out.push_str(&format!(
        "{} papers in {} milestones; {} fetched under {}\n",
        rows.len(),
        catalog.milestones().len(),
        fetched,
        root.join("notebooks").display()
    ));
    // The lock's count tells whether `papers fetch` has recorded hashes to verify against.
    match fetch::Lock::load(&root.join(fetch::LOCK_PATH)) {
        Ok(lock) => out.push_str(&format!("{} hashes recorded in {}\n", lock.entries().count(), fetch::LOCK_PATH)),
        Err(e) => out.push_str(&format!("{} is unreadable: {e:#}\n", fetch::LOCK_PATH)),
    }
    out
}

/// `text` cut to at most `max` characters, ending in `...` when cut.
fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let kept: String = text.chars().take(max.saturating_sub(3)).collect();
        format!("{}...", kept.trim_end())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_fetch_options() {
        let args = strings(&[
            "--milestone",
            "02-cnn",
            "--milestone=05-image-generation/03-diffusion",
            "--mirror",
            "http://127.0.0.1:9/",
            "--root",
            "/tmp/x",
            "--retries",
            "0",
            "--timeout=2.5",
        ]);
        let o = parse_options(&args, &["--root", "--milestone", "--mirror", "--retries", "--timeout"], &[]).unwrap();
        assert_eq!(o.milestones, vec!["02-cnn", "05-image-generation/03-diffusion"]);
        assert_eq!(o.mirror.as_deref(), Some("http://127.0.0.1:9/"));
        assert_eq!(o.root, Some(PathBuf::from("/tmp/x")));
        assert_eq!(o.retries, Some(0));
        assert_eq!(o.timeout, Some(Duration::from_millis(2500)));
    }

    #[test]
    fn usage_errors_name_the_argument() {
        let err = parse_options(&strings(&["--bogus"]), &["--root"], &[]).unwrap_err().to_string();
        assert!(err.contains("\"--bogus\""), "{err}");
        let err = parse_options(&strings(&["--root"]), &["--root"], &[]).unwrap_err().to_string();
        assert!(err.contains("--root needs a value"), "{err}");
        let err = parse_options(&strings(&["--mirror", "ftp://x"]), &["--mirror"], &[]).unwrap_err().to_string();
        assert!(err.contains("http(s)"), "{err}");
        assert!(run(&strings(&["frobnicate"])).is_err());
    }

    #[test]
    fn shorten_cuts_long_titles() {
        assert_eq!(shorten("short", 10), "short");
        assert_eq!(shorten("abcdefghijklmnop", 10), "abcdefg...");
        assert_eq!(shorten("abcdefghijklmnop", 10).chars().count(), 10);
    }
}
