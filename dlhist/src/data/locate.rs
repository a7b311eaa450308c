//! Finding a dataset file on disk, or downloading it, and always verifying it.
//!
//! Every loader in [`crate::data`] goes through [`locate_or_fetch`]: it looks for the file in
//! a fixed order of folders, hashes whatever it finds against the published SHA-256, and only
//! when nothing is found (and downloading is allowed) fetches it into the user's cache folder.
//! The environment is read in one place, [`Roots::from_env`], so the search itself takes its
//! folders as arguments and can be tested without touching process-global variables.

use std::path::{Path, PathBuf};

use super::download::{sha256_bytes, Download};
use super::{DATA_ENV, OFFLINE_ENV};
use crate::{Error, Result};

/// One file of a dataset: where it may live, what it must hash to, where to download it.
#[derive(Debug, Clone)]
pub(crate) struct FileSpec {
    /// The dataset's folder name under `$DLHIST_DATA` and the cache, e.g. `fashion-mnist`.
    pub dataset: String,
    /// The file's name, e.g. `train-images-idx3-ubyte.gz`.
    pub file: String,
    /// The published SHA-256 of the file (lowercase hex).
    pub sha256: String,
    /// Full URLs of the file, tried in order (a mirror list).
    pub urls: Vec<String>,
    /// System folders that may hold the file (e.g. a Debian package's), searched after
    /// `$DLHIST_DATA` and before the cache.
    pub system_dirs: Vec<PathBuf>,
    /// What to do if a file in a system folder is corrupt (e.g. "reinstall ...").
    pub system_repair: String,
    /// Another way to get the file, offered when it is missing (e.g. "apt-get install ..."),
    /// starting with "or"; empty if there is none.
    pub other_source: String,
}

/// The folders searched, and whether downloading is allowed.
#[derive(Debug, Clone, Default)]
pub(crate) struct Roots {
    /// `$DLHIST_DATA`: a folder holding `<dataset>/<file>`.
    pub data: Option<PathBuf>,
    /// The download cache: `<user cache dir>/dlhist`, holding `<dataset>/<file>`.
    pub cache: Option<PathBuf>,
    /// `DLHIST_OFFLINE=1`: never download.
    pub offline: bool,
    /// Print download progress lines.
    pub progress: bool,
}

impl Roots {
    /// The roots the environment asks for: `DLHIST_DATA`, the user cache folder, `DLHIST_OFFLINE`.
    /// The one place in the data module that reads the environment.
    pub fn from_env() -> Roots {
        let data = std::env::var_os(DATA_ENV).filter(|v| !v.is_empty()).map(PathBuf::from);
        let offline = std::env::var(OFFLINE_ENV)
            .map(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
            .unwrap_or(false);
        Roots { data, cache: dirs::cache_dir().map(|d| d.join("dlhist")), offline, progress: true }
    }
}

#[cfg(test)]
impl Roots {
    /// Offline roots inside `dir` (`d/` for `$DLHIST_DATA`, `c/` for the cache), for tests of what is searched.
    pub fn offline_in(dir: &Path) -> Roots {
        Roots { data: Some(dir.join("d")), cache: Some(dir.join("c")), offline: true, progress: false }
    }
}

/// Where a candidate path came from: decides the advice when its content is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Data,
    System,
    Cache,
}

/// A verified file: where it is and its bytes.
#[derive(Debug)]
pub(crate) struct Found {
    /// Where the file was found (or downloaded to).
    pub path: PathBuf,
    /// Its whole content, already checked against the expected SHA-256.
    pub bytes: Vec<u8>,
}

/// Every path searched for `spec`, in order, with its origin.
fn candidates(spec: &FileSpec, roots: &Roots) -> Vec<(PathBuf, Origin)> {
    let mut out = Vec::new();
    if let Some(d) = &roots.data {
        out.push((d.join(&spec.dataset).join(&spec.file), Origin::Data));
    }
    for d in &spec.system_dirs {
        out.push((d.join(&spec.file), Origin::System));
    }
    if let Some(c) = &roots.cache {
        out.push((c.join(&spec.dataset).join(&spec.file), Origin::Cache));
    }
    out
}

/// Finds `spec`'s file (first hit of: `$DLHIST_DATA/<dataset>/<file>`, the system folders, the
/// cache), or downloads it into the cache, and returns its verified bytes.
///
/// A file that is found but hashes wrong is an error (not silently skipped: it would mask a
/// broken install); the message says how to repair it. Downloads are verified while they
/// stream, so a downloaded file is not hashed twice.
pub(crate) fn locate_or_fetch(spec: &FileSpec, roots: &Roots) -> Result<Found> {
    let searched = candidates(spec, roots);
    for (path, origin) in &searched {
        if !path.is_file() {
            continue;
        }
        let bytes = std::fs::read(path).map_err(|e| Error::io("cannot read", path, e))?;
        let actual = sha256_bytes(&bytes);
        if actual != spec.sha256 {
            let repair = match origin {
                Origin::Data => format!("replace it with the original {} or remove it from ${DATA_ENV}", spec.file),
                Origin::System => spec.system_repair.clone(),
                Origin::Cache => "delete it and rerun to download it again".to_string(),
            };
            return Err(Error::Checksum {
                path: format!("{} ({repair})", path.display()),
                expected: spec.sha256.clone(),
                actual,
            });
        }
        return Ok(Found { path: path.clone(), bytes });
    }

    let what = format!("{}/{}", spec.dataset, spec.file);
    let paths: Vec<PathBuf> = searched.iter().map(|(p, _)| p.clone()).collect();
    if spec.urls.is_empty() {
        // Nothing to download (a file only a system package ships): say where it was looked for.
        return Err(Error::NotFound {
            what,
            searched: paths,
            hint: format!(
                "dlhist cannot download it; put it in one of those folders (or point {DATA_ENV} at a folder holding {}/){}",
                spec.dataset,
                other_source(spec)
            ),
        });
    }
    if roots.offline {
        return Err(Error::NotFound {
            what,
            searched: paths,
            hint: format!(
                "{OFFLINE_ENV} is set, so dlhist does not download; unset it, or put the file in one of those folders (or point {DATA_ENV} at a folder holding {}/){}",
                spec.dataset,
                other_source(spec)
            ),
        });
    }
    // Download into the cache; without one (rare: no home folder), into $DLHIST_DATA.
    let Some(dest) =
        searched.iter().rev().find(|(_, o)| matches!(o, Origin::Cache | Origin::Data)).map(|(p, _)| p.clone())
    else {
        return Err(Error::NotFound {
            what,
            searched: paths,
            hint: format!(
                "this system has no user cache folder to download into; set {DATA_ENV} to a folder and dlhist will use {DATA_ENV}/{}/",
                spec.dataset
            ),
        });
    };
    fetch(spec, &dest, roots.progress)?;
    let bytes = std::fs::read(&dest).map_err(|e| Error::io("cannot read", &dest, e))?;
    Ok(Found { path: dest, bytes })
}

/// `", or ..."` for the spec's alternative source, or nothing.
fn other_source(spec: &FileSpec) -> String {
    if spec.other_source.is_empty() {
        String::new()
    } else {
        format!(", {}", spec.other_source)
    }
}

/// Downloads `spec` to `dest`, trying each mirror in turn.
fn fetch(spec: &FileSpec, dest: &Path, progress: bool) -> Result<()> {
    let hint = format!(
        "check your network, or set {DATA_ENV} to a folder holding {}/{}{}",
        spec.dataset,
        spec.file,
        other_source(spec)
    );
    if spec.urls.is_empty() {
        return Err(Error::Invalid(format!("no download URL is known for {}/{}; {hint}", spec.dataset, spec.file)));
    }
    let mut failures = Vec::new();
    for (i, url) in spec.urls.iter().enumerate() {
        let last = i + 1 == spec.urls.len();
        // A single mirror's error is returned as is, advice included; with several, the
        // advice is given once, after the whole list.
        let download = Download::new(url.as_str())
            .sha256(spec.sha256.as_str())
            .progress(progress)
            .hint(if spec.urls.len() == 1 { hint.clone() } else { String::new() });
        match download.to_file(dest) {
            Ok(_) => return Ok(()),
            Err(e) if spec.urls.len() == 1 => return Err(e),
            Err(e) => {
                if !last {
                    // Always said, not only with progress on: a silent fallback hides a dead mirror.
                    println!("dlhist: {e}; trying the next mirror");
                }
                // "url: what happened", without repeating "download of ... failed" each time.
                failures.push(match e {
                    Error::Download { url, reason } => format!("[{}] {url}: {reason}", i + 1),
                    other => format!("[{}] {other}", i + 1),
                });
            }
        }
    }
    Err(Error::Download {
        url: spec.urls[0].clone(),
        reason: format!("no mirror worked: {}; {hint}", failures.join("; ")),
    })
}

/// Copies the files of `specs` found under a mirror folder (`<dir>/<dataset>/<file>`, the layout of
/// `$DLHIST_DATA`) into the cache of `roots`, each verified against its SHA-256 and written atomically. Files
/// already in the cache with the right digest are left alone. Returns the cache paths written.
pub(crate) fn install_mirror_into(specs: &[FileSpec], dir: &Path, roots: &Roots) -> Result<Vec<PathBuf>> {
    let cache = roots.cache.as_ref().ok_or_else(|| {
        Error::Invalid(format!("this system has no user cache folder; set {DATA_ENV} to {} instead", dir.display()))
    })?;
    let mut written = vec![];
    for spec in specs {
        let from = dir.join(&spec.dataset).join(&spec.file);
        if !from.is_file() {
            continue;
        }
        let bytes = std::fs::read(&from).map_err(|e| Error::io("cannot read", &from, e))?;
        let actual = sha256_bytes(&bytes);
        if actual != spec.sha256 {
            return Err(Error::Checksum {
                path: format!("{} (the mirror's copy is not the original; replace it or leave it out)", from.display()),
                expected: spec.sha256.clone(),
                actual,
            });
        }
        let to = cache.join(&spec.dataset).join(&spec.file);
        let current = std::fs::read(&to).ok().map(|b| sha256_bytes(&b));
        if current.as_deref() != Some(spec.sha256.as_str()) {
            super::download::write_atomic(&to, &bytes)?;
            written.push(to);
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::download::tests::{ok, Server};

    fn spec(dataset: &str, file: &str, content: &[u8], system: Vec<PathBuf>, urls: Vec<String>) -> FileSpec {
        FileSpec {
            dataset: dataset.into(),
            file: file.into(),
            sha256: sha256_bytes(content),
            urls,
            system_dirs: system,
            system_repair: "reinstall the package".into(),
            other_source: "or install the toy package".into(),
        }
    }

    fn put(path: &Path, content: &[u8]) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }

    #[test]
    fn search_order_is_data_then_system_then_cache() {
        let tmp = tempfile::tempdir().unwrap();
        let (data, system, cache) = (tmp.path().join("data"), tmp.path().join("sys"), tmp.path().join("cache"));
        let roots = Roots { data: Some(data.clone()), cache: Some(cache.clone()), offline: true, progress: false };
        let content = b"dataset bytes";
        let s = spec("toy", "f.bin", content, vec![system.clone()], vec![]);

        put(&cache.join("toy/f.bin"), content);
        assert_eq!(locate_or_fetch(&s, &roots).unwrap().path, cache.join("toy/f.bin"));
        put(&system.join("f.bin"), content);
        assert_eq!(locate_or_fetch(&s, &roots).unwrap().path, system.join("f.bin"));
        put(&data.join("toy/f.bin"), content);
        let found = locate_or_fetch(&s, &roots).unwrap();
        assert_eq!(found.path, data.join("toy/f.bin"));
        assert_eq!(found.bytes, content);
    }

    #[test]
    fn a_corrupt_local_file_is_a_checksum_error_with_repair_advice() {
        let tmp = tempfile::tempdir().unwrap();
        let system = tmp.path().join("sys");
        let roots = Roots { data: None, cache: Some(tmp.path().join("cache")), offline: true, progress: false };
        let s = spec("toy", "f.bin", b"good", vec![system.clone()], vec![]);
        put(&system.join("f.bin"), b"bad!");
        let err = locate_or_fetch(&s, &roots).unwrap_err();
        assert!(matches!(err, Error::Checksum { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("sys/f.bin") && msg.contains("reinstall the package"), "{msg}");

        put(&tmp.path().join("cache/toy/f.bin"), b"bad!");
        std::fs::remove_file(system.join("f.bin")).unwrap();
        let msg = locate_or_fetch(&s, &roots).unwrap_err().to_string();
        assert!(msg.contains("delete it and rerun"), "{msg}");
    }

    #[test]
    fn offline_lists_every_searched_path() {
        let tmp = tempfile::tempdir().unwrap();
        let roots = Roots::offline_in(tmp.path());
        let s = spec("toy", "f.bin", b"x", vec![tmp.path().join("s")], vec!["http://127.0.0.1:9/f.bin".into()]);
        let err = locate_or_fetch(&s, &roots).unwrap_err();
        match &err {
            Error::NotFound { searched, .. } => assert_eq!(
                searched,
                &vec![tmp.path().join("d/toy/f.bin"), tmp.path().join("s/f.bin"), tmp.path().join("c/toy/f.bin")]
            ),
            other => panic!("expected NotFound, got {other:?}"),
        }
        let msg = err.to_string();
        assert!(msg.contains(OFFLINE_ENV) && msg.contains(DATA_ENV) && msg.contains("toy package"), "{msg}");
    }

    #[test]
    fn missing_file_is_downloaded_into_the_cache_and_found_there_next_time() {
        let content = b"fresh from the server".to_vec();
        let server = Server::start(vec![ok(&content, "application/octet-stream")]);
        let tmp = tempfile::tempdir().unwrap();
        let cache = tmp.path().join("cache");
        let mut roots =
            Roots { data: Some(tmp.path().join("data")), cache: Some(cache.clone()), offline: false, progress: false };
        let s = spec("toy", "f.bin", &content, vec![], vec![format!("{}/f.bin", server.url)]);
        let found = locate_or_fetch(&s, &roots).unwrap();
        assert_eq!(found.path, cache.join("toy/f.bin"));
        assert_eq!(found.bytes, content);
        assert_eq!(server.finish().len(), 1);
        // The server is gone; offline, the cached copy is what we get.
        roots.offline = true;
        assert_eq!(locate_or_fetch(&s, &roots).unwrap().bytes, content);
    }

    #[test]
    fn a_failing_mirror_falls_back_to_the_next() {
        let content = b"mirror two".to_vec();
        let bad =
            Server::start(vec![b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec()]);
        let good = Server::start(vec![ok(&content, "application/octet-stream")]);
        let tmp = tempfile::tempdir().unwrap();
        let roots = Roots { data: None, cache: Some(tmp.path().to_path_buf()), offline: false, progress: false };
        let s =
            spec("toy", "f.bin", &content, vec![], vec![format!("{}/f.bin", bad.url), format!("{}/f.bin", good.url)]);
        assert_eq!(locate_or_fetch(&s, &roots).unwrap().bytes, content);
        assert_eq!((bad.finish().len(), good.finish().len()), (1, 1));
    }

    #[test]
    fn when_every_mirror_fails_the_error_names_them_and_says_what_to_do() {
        let a =
            Server::start(vec![b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec()]);
        let b = Server::start(vec![ok(b"wrong bytes", "application/octet-stream")]);
        let tmp = tempfile::tempdir().unwrap();
        let roots = Roots { data: None, cache: Some(tmp.path().to_path_buf()), offline: false, progress: false };
        let (ua, ub) = (format!("{}/f.bin", a.url), format!("{}/f.bin", b.url));
        let s = spec("toy", "f.bin", b"right bytes", vec![], vec![ua.clone(), ub.clone()]);
        let msg = locate_or_fetch(&s, &roots).unwrap_err().to_string();
        assert!(msg.contains(&ua) && msg.contains("404") && msg.contains("checksum mismatch"), "{msg}");
        assert!(msg.contains(DATA_ENV), "{msg}");
        assert!(!tmp.path().join("toy/f.bin").exists());
        a.finish();
        b.finish();
    }

    #[test]
    fn a_mirror_is_verified_and_installed_into_the_cache_once() {
        let root = std::env::temp_dir().join(format!("dlhist-mirror-{}", std::process::id()));
        let (mirror, cache) = (root.join("mirror"), root.join("cache"));
        let good = spec("toy", "data.txt", b"hello", vec![], vec![]);
        let missing = spec("absent", "x.bin", b"x", vec![], vec![]);
        std::fs::create_dir_all(mirror.join("toy")).unwrap();
        std::fs::write(mirror.join("toy/data.txt"), b"hello").unwrap();
        let roots = Roots { data: None, cache: Some(cache.clone()), offline: true, progress: false };
        let written = install_mirror_into(&[good.clone(), missing], &mirror, &roots).unwrap();
        assert_eq!(written, vec![cache.join("toy/data.txt")]);
        assert_eq!(std::fs::read(cache.join("toy/data.txt")).unwrap(), b"hello");
        // Found in the cache now, offline; a second install writes nothing.
        assert_eq!(locate_or_fetch(&good, &roots).unwrap().bytes, b"hello");
        assert!(install_mirror_into(std::slice::from_ref(&good), &mirror, &roots).unwrap().is_empty());
        // A corrupt mirror is refused, naming the file, and the cached copy is untouched.
        std::fs::write(mirror.join("toy/data.txt"), b"HELLO").unwrap();
        let bad = spec("toy", "data.txt", b"hello", vec![], vec![]);
        let e = install_mirror_into(&[bad], &mirror, &roots).unwrap_err().to_string();
        assert!(e.contains("data.txt"), "{e}");
        assert_eq!(std::fs::read(cache.join("toy/data.txt")).unwrap(), b"hello");
        let _ = std::fs::remove_dir_all(&root);
    }
}
