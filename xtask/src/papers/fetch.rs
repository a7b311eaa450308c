//! `papers fetch`: puts each paper's PDF next to its notebook, verified, with trust on first use.
//!
//! For every selected paper the destination is `notebooks/<section>/<milestone>/<pdf_file>`
//! under the repository root. The expected SHA-256 comes from the catalog (`sha256`) or, failing
//! that, from the lock file `papers/papers.lock`, where the first successful fetch records it.
//! A recorded hash is never replaced: a file or download that does not match it is an error.
//! The downloads themselves (atomic writes, retries, progress lines) are dlhist's
//! [`Download`](dlhist::data::download::Download); this module decides what to fetch from where
//! and checks that what arrives is a PDF.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use dlhist::data::download::{sha256_file, Download, DownloadInfo};
use serde::{Deserialize, Serialize};

use super::catalog::{is_sha256, Catalog, Paper};

/// The lock file's path relative to the repository root.
pub const LOCK_PATH: &str = "papers/papers.lock";

/// The comment written at the top of the lock file.
const LOCK_HEADER: &str = "\
# SHA-256 of each paper's PDF, keyed by the catalog key (papers/catalog.toml).
# `cargo xtask papers fetch` records a paper's hash the first time it fetches the PDF (trust on
# first use) and from then on checks every copy against it; it never overwrites an entry.
# Commit this file so that everyone verifies the same bytes. If a paper's PDF legitimately
# changed upstream, delete its line here and fetch again.
";

/// The recorded SHA-256 of each paper's PDF (`papers/papers.lock`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lock {
    path: PathBuf,
    entries: BTreeMap<String, String>,
}

/// The lock file's TOML shape.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LockFile {
    #[serde(default)]
    sha256: BTreeMap<String, String>,
}

impl Lock {
    /// Reads the lock file at `path`; a missing file is an empty lock.
    pub fn load(path: &Path) -> Result<Lock> {
        let entries = match std::fs::read_to_string(path) {
            Ok(text) => {
                let file: LockFile = toml::from_str(&text).with_context(|| {
                    format!(
                        "{} is not a valid lock file; fix it or delete it (hashes are re-recorded on the next fetch)",
                        path.display()
                    )
                })?;
                for (key, hash) in &file.sha256 {
                    if !is_sha256(hash) {
                        bail!(
                            "{}: the hash recorded for `{key}` is not 64 lowercase hex digits; fix or delete that line",
                            path.display()
                        );
                    }
                }
                file.sha256
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(e).with_context(|| format!("cannot read the lock file {}", path.display())),
        };
        Ok(Lock { path: path.to_path_buf(), entries })
    }

    /// The hash recorded for `key`, if any.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries.get(key).map(String::as_str)
    }

    /// Every recorded `(key, sha256)`, sorted by key.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Records `sha256` for `key` and saves the file. Recording the same hash again is a no-op;
    /// a different hash for an existing key is an error: entries are never overwritten.
    pub fn record(&mut self, key: &str, sha256: &str) -> Result<()> {
        match self.entries.get(key) {
            Some(old) if old == sha256 => Ok(()),
            Some(old) => bail!(
                "{} already records sha256 {old} for `{key}`, not {sha256}; delete that line first if the new file is the right one",
                self.path.display()
            ),
            None => {
                self.entries.insert(key.to_string(), sha256.to_string());
                self.save()
            }
        }
    }

    /// Writes the lock file atomically (a temporary file renamed over it).
    fn save(&self) -> Result<()> {
        let body = toml::to_string(&LockFile { sha256: self.entries.clone() }).context("cannot serialize the lock")?;
        let dir = self.path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let tmp = dir.join(format!(".papers.lock.{}.tmp", std::process::id()));
        std::fs::write(&tmp, format!("{LOCK_HEADER}\n{body}"))
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &self.path).with_context(|| format!("cannot replace {}", self.path.display()))
    }
}

/// What `papers fetch` does and how.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// The repository root: PDFs go under `root/notebooks/`, the lock is `root/papers/papers.lock`.
    pub root: PathBuf,
    /// Only these milestones (`02-cnn` or `01-deep-neural-networks/02-cnn`); empty means all.
    pub milestones: Vec<String>,
    /// Fetch `<mirror>/<section>/<milestone>/<pdf_file>` instead of the catalog's URLs.
    pub mirror: Option<String>,
    /// Retries of a transient failure per URL.
    pub retries: u32,
    /// Connect / stall timeout per attempt.
    pub timeout: Duration,
    /// Wait before the first retry (doubling after each).
    pub backoff: Duration,
    /// Print progress lines to stderr.
    pub progress: bool,
}

impl FetchOptions {
    /// The defaults for a repository root: all milestones, catalog URLs, 3 retries, 60 s timeout.
    pub fn new(root: impl Into<PathBuf>) -> FetchOptions {
        FetchOptions {
            root: root.into(),
            milestones: Vec::new(),
            mirror: None,
            retries: 3,
            timeout: Duration::from_secs(60),
            backoff: Duration::from_secs(1),
            progress: true,
        }
    }
}

/// What happened to one paper.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Downloaded and verified; `recorded` is true when its hash was new to the lock.
    Fetched {
        /// The URL that delivered it.
        url: String,
        /// True when the hash was recorded in the lock by this run.
        recorded: bool,
    },
    /// Already present and valid; `recorded` is true when its hash was new to the lock.
    Skipped {
        /// True when the hash was recorded in the lock by this run.
        recorded: bool,
    },
    /// Could not be placed; the reason says why and what to do.
    Failed(String),
}

/// The result of a fetch run: one outcome per selected paper, in catalog order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchReport {
    /// `(catalog key, path relative to the root, outcome)` per selected paper.
    pub outcomes: Vec<(String, String, Outcome)>,
}

impl FetchReport {
    /// How many papers were downloaded.
    pub fn fetched(&self) -> usize {
        self.outcomes.iter().filter(|(_, _, o)| matches!(o, Outcome::Fetched { .. })).count()
    }

    /// How many were already present and valid.
    pub fn skipped(&self) -> usize {
        self.outcomes.iter().filter(|(_, _, o)| matches!(o, Outcome::Skipped { .. })).count()
    }

    /// The failures: `(key, path, reason)`.
    pub fn failures(&self) -> Vec<(&str, &str, &str)> {
        self.outcomes
            .iter()
            .filter_map(|(k, p, o)| match o {
                Outcome::Failed(reason) => Some((k.as_str(), p.as_str(), reason.as_str())),
                _ => None,
            })
            .collect()
    }

    /// The end-of-run summary: counts, then each failure with its reason.
    pub fn summary(&self) -> String {
        let failures = self.failures();
        let mut s = format!(
            "papers fetch: {} fetched, {} skipped (already present and valid), {} failed",
            self.fetched(),
            self.skipped(),
            failures.len()
        );
        for (key, path, reason) in failures {
            let _ = write!(s, "\n  FAILED {key} ({path}):\n    {}", reason.replace('\n', "\n    "));
        }
        s
    }
}

/// The papers of `catalog` in the selected milestones (all of them when `milestones` is empty).
/// A milestone is named `02-cnn` or `01-deep-neural-networks/02-cnn`; an unknown one is an error
/// that lists the known ones.
pub fn select<'a>(catalog: &'a Catalog, milestones: &[String]) -> Result<Vec<&'a Paper>> {
    for m in milestones {
        let m = m.trim_matches('/');
        if !catalog.papers.iter().any(|p| p.milestone == m || p.milestone_path() == m) {
            bail!("no milestone {m:?} in the catalog; known milestones:\n  {}", catalog.milestones().join("\n  "));
        }
    }
    Ok(catalog
        .papers
        .iter()
        .filter(|p| {
            milestones.is_empty()
                || milestones.iter().map(|m| m.trim_matches('/')).any(|m| p.milestone == m || p.milestone_path() == m)
        })
        .collect())
}

/// The URLs to try for `paper`, in order: the mirror's copy alone when a mirror is given,
/// else `pdf_url` then each of `mirrors`.
pub fn sources(paper: &Paper, mirror: Option<&str>) -> Vec<String> {
    match mirror {
        // The mirror mirrors the notebooks tree, so a plain static file server started in a
        // `notebooks/` folder that already has the PDFs is a valid mirror.
        Some(base) => {
            vec![format!("{}/{}/{}/{}", base.trim_end_matches('/'), paper.section, paper.milestone, paper.pdf_file)]
        }
        None => std::iter::once(paper.pdf_url.clone()).chain(paper.mirrors.iter().cloned()).collect(),
    }
}

/// Fetches every selected paper that is missing, verifies the ones present, and returns what
/// happened to each. Errors only for problems that stop the whole run (unreadable lock, unknown
/// milestone); a paper that cannot be placed is a [`Outcome::Failed`] in the report.
pub fn fetch(catalog: &Catalog, opts: &FetchOptions) -> Result<FetchReport> {
    let selected = select(catalog, &opts.milestones)?;
    let mut lock = Lock::load(&opts.root.join(LOCK_PATH))?;
    let mut outcomes = Vec::with_capacity(selected.len());
    for (i, paper) in selected.iter().enumerate() {
        if opts.progress {
            eprintln!("[{}/{}] {} -> {}", i + 1, selected.len(), paper.key, paper.pdf_rel());
        }
        let outcome = match fetch_one(paper, opts, &mut lock) {
            Ok(o) => o,
            Err(e) => Outcome::Failed(format!("{e:#}")),
        };
        if opts.progress {
            match &outcome {
                Outcome::Skipped { .. } => eprintln!("  present and valid, skipped"),
                Outcome::Fetched { .. } => {}
                Outcome::Failed(reason) => eprintln!("  FAILED: {reason}"),
            }
        }
        outcomes.push((paper.key.clone(), paper.pdf_rel(), outcome));
    }
    Ok(FetchReport { outcomes })
}

/// Where a paper's expected hash comes from, for messages.
fn hash_source(paper: &Paper) -> String {
    if paper.sha256.is_some() {
        format!("papers/catalog.toml (`sha256` of `{}`)", paper.key)
    } else {
        format!("{LOCK_PATH} (entry `{}`)", paper.key)
    }
}

/// Handles one paper: verify what is there, or download it.
fn fetch_one(paper: &Paper, opts: &FetchOptions, lock: &mut Lock) -> Result<Outcome> {
    let expected = match (paper.sha256.as_deref(), lock.get(&paper.key)) {
        (Some(cat), Some(locked)) if cat != locked => bail!(
            "papers/catalog.toml says sha256 {cat} but {LOCK_PATH} records {locked} for `{}`; \
             make them agree (the catalog is the reviewed source) and run again",
            paper.key
        ),
        (Some(cat), _) => Some(cat.to_string()),
        (None, locked) => locked.map(str::to_string),
    };
    let dest = paper.pdf_path(&opts.root);

    if dest.exists() {
        // Present: re-verify on every run, never trust a file only because it exists.
        let actual = sha256_file(&dest)?;
        return match &expected {
            Some(exp) if *exp == actual => Ok(Outcome::Skipped { recorded: false }),
            Some(exp) => bail!(
                "{} has sha256 {actual}, but {} records {exp}: the file was changed or is a different \
                 version. Delete it and run `cargo xtask papers fetch` again for a fresh copy, or, if this \
                 copy is the right one, delete the recorded hash and run again to record this one",
                dest.display(),
                hash_source(paper)
            ),
            None => {
                check_pdf_magic(&dest)?;
                // Trust on first use, for a PDF placed by hand or fetched before the lock existed.
                lock.record(&paper.key, &actual)?;
                Ok(Outcome::Skipped { recorded: true })
            }
        };
    }

    let mut reasons = Vec::new();
    for url in sources(paper, opts.mirror.as_deref()) {
        let mut download = Download::new(url.as_str())
            .retries(opts.retries)
            .timeout(opts.timeout)
            .backoff(opts.backoff)
            .progress(opts.progress)
            .hint("check your network connection and proxy settings (HTTPS_PROXY), or fetch from a copy with --mirror URL");
        if let Some(exp) = &expected {
            download = download.sha256(exp.as_str());
        }
        let shown = dest.clone();
        let download = download.verify(move |path, info| verify_pdf(path, info, &shown));
        match download.to_file(&dest) {
            Ok(info) => {
                let recorded = expected.is_none();
                if recorded {
                    lock.record(&paper.key, &info.sha256)?;
                }
                return Ok(Outcome::Fetched { url, recorded });
            }
            Err(dlhist::Error::Checksum { expected: exp, actual, .. }) => reasons.push(format!(
                "{url} delivered a file with sha256 {actual}, but {} records {exp} for {}: the file changed \
                 upstream or this source serves a different version. Check the PDF; if it is the right paper, \
                 delete the recorded hash and fetch again",
                hash_source(paper),
                paper.pdf_rel()
            )),
            Err(e) => reasons.push(e.to_string()),
        }
    }
    bail!("{}", reasons.join("\n"))
}

/// The verify hook run on each complete download before it is moved into place: the server
/// must not call it HTML, and the bytes must start with the PDF magic `%PDF-`.
fn verify_pdf(path: &Path, info: &DownloadInfo, dest: &Path) -> dlhist::Result<()> {
    if let Some(ct) = &info.content_type {
        let mime = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        if mime == "text/html" || mime == "application/xhtml+xml" {
            return Err(dlhist::Error::Format {
                path: dest.to_path_buf(),
                format: "PDF",
                reason: format!(
                    "{} answered with an HTML page (Content-Type {ct}), not the PDF: usually a login, \
                     cookie or error page. Open the URL in a browser and save the PDF there by hand, \
                     or fetch from a copy with --mirror",
                    info.url
                ),
            });
        }
    }
    check_pdf_magic(path).map_err(|e| dlhist::Error::Format {
        path: dest.to_path_buf(),
        format: "PDF",
        reason: format!("{} sent something else: {e}", info.url),
    })
}

/// Checks that the file at `path` starts with `%PDF-`.
fn check_pdf_magic(path: &Path) -> Result<()> {
    let mut head = [0u8; 5];
    let mut file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let n = read_up_to(&mut file, &mut head).with_context(|| format!("cannot read {}", path.display()))?;
    if head[..n] != *b"%PDF-" {
        bail!(
            "{} does not start with %PDF- (it starts with {:?}), so it is not a PDF",
            path.display(),
            String::from_utf8_lossy(&head[..n])
        );
    }
    Ok(())
}

/// Reads until `buf` is full or the file ends; returns the count read.
fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paper() -> Paper {
        let text = r#"
[[paper]]
key = "doe2020thing"
short_name = "Thing"
title = "A Thing"
authors = ["Jane Doe"]
year = 2020
venue = "Somewhere"
kind = "misc"
url = "https://example.org/thing"
pdf_url = "https://example.org/thing.pdf"
mirrors = ["https://mirror.example.org/thing.pdf"]
section = "01-section"
milestone = "01-thing"
notebook = "02-thing.ipynb"
pdf_file = "01-thing.pdf"
"#;
        Catalog::parse(text).unwrap().papers.remove(0)
    }

    #[test]
    fn sources_prefer_the_mirror_tree() {
        let p = paper();
        assert_eq!(sources(&p, None), vec!["https://example.org/thing.pdf", "https://mirror.example.org/thing.pdf"]);
        assert_eq!(
            sources(&p, Some("http://127.0.0.1:8000/")),
            vec!["http://127.0.0.1:8000/01-section/01-thing/01-thing.pdf"]
        );
    }

    #[test]
    fn lock_records_once_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("papers/papers.lock");
        let mut lock = Lock::load(&path).unwrap();
        assert_eq!(lock.get("a"), None);
        let h1 = "1".repeat(64);
        let h2 = "2".repeat(64);
        lock.record("a", &h1).unwrap();
        lock.record("a", &h1).unwrap();
        let err = lock.record("a", &h2).unwrap_err().to_string();
        assert!(err.contains(&h1) && err.contains(&h2), "{err}");
        let reloaded = Lock::load(&path).unwrap();
        assert_eq!(reloaded.get("a"), Some(h1.as_str()));
        assert!(std::fs::read_to_string(&path).unwrap().starts_with("# SHA-256 of each paper's PDF"));
    }

    #[test]
    fn lock_rejects_malformed_hashes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("papers.lock");
        std::fs::write(&path, "[sha256]\na = \"xyz\"\n").unwrap();
        let err = Lock::load(&path).unwrap_err().to_string();
        assert!(err.contains("`a`"), "{err}");
    }

    #[test]
    fn pdf_magic() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.pdf");
        let bad = dir.path().join("bad.pdf");
        std::fs::write(&good, b"%PDF-1.5\n...").unwrap();
        std::fs::write(&bad, b"<!doctype html>").unwrap();
        check_pdf_magic(&good).unwrap();
        assert!(check_pdf_magic(&bad).unwrap_err().to_string().contains("not a PDF"));
    }
}
