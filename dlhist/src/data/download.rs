//! Verified, atomic HTTP downloads: for datasets and for paper PDFs.
//!
//! A [`Download`] streams the response body into a temporary file in the destination's folder,
//! hashing the bytes as they arrive. Only when the body is complete (its length matches
//! `Content-Length`), its SHA-256 matches the expected digest and the optional verify hook
//! accepts it is the file synced to disk and renamed into place. A rename within one folder is
//! atomic, so the destination either does not exist or holds the whole, verified file: a
//! notebook interrupted mid-download never finds half a dataset on the next run.
//!
//! Transient failures (connection errors, timeouts, 5xx answers, a connection dropped before
//! the end of the body) are retried with exponential backoff; permanent ones (404, a checksum
//! mismatch, a rejected file) are not.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// What a finished download delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadInfo {
    /// The URL requested.
    pub url: String,
    /// The number of bytes written.
    pub bytes: u64,
    /// The lowercase hex SHA-256 of those bytes.
    pub sha256: String,
    /// The server's `Content-Type` header, if it sent one (e.g. `application/pdf`).
    pub content_type: Option<String>,
}

/// The type of the extra check run on the complete temporary file (see [`Download::verify`]).
type VerifyHook = Box<dyn Fn(&Path, &DownloadInfo) -> Result<()>>;

/// A download request, built step by step and run with [`Download::to_file`].
///
/// ```no_run
/// use dlhist::data::download::Download;
/// let info = Download::new("https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt")
///     .sha256("86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed")
///     .progress(true)
///     .to_file(std::path::Path::new("data/input.txt"))?;
/// assert_eq!(info.bytes, 1_115_394);
/// # Ok::<(), dlhist::Error>(())
/// ```
pub struct Download {
    url: String,
    sha256: Option<String>,
    retries: u32,
    timeout: Duration,
    backoff: Duration,
    progress: bool,
    hint: String,
    verify: Option<VerifyHook>,
}

impl std::fmt::Debug for Download {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Download")
            .field("url", &self.url)
            .field("sha256", &self.sha256)
            .field("retries", &self.retries)
            .field("timeout", &self.timeout)
            .field("backoff", &self.backoff)
            .field("progress", &self.progress)
            .field("verify", &self.verify.as_ref().map(|_| "<hook>"))
            .finish()
    }
}

/// The advice attached to network failures unless [`Download::hint`] replaces it.
const DEFAULT_HINT: &str = "check your network connection (and proxy settings, e.g. HTTPS_PROXY), then try again";

/// Seconds between two progress lines.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

impl Download {
    /// A download of `url` with the defaults: no checksum, 2 retries, a 30 s timeout, no progress.
    pub fn new(url: impl Into<String>) -> Self {
        Download {
            url: url.into(),
            sha256: None,
            retries: 2,
            timeout: Duration::from_secs(30),
            backoff: Duration::from_secs(1),
            progress: false,
            hint: DEFAULT_HINT.to_string(),
            verify: None,
        }
    }

    /// The expected SHA-256 (hex, either case). The file only appears at the destination if
    /// the downloaded bytes hash to it; otherwise [`Error::Checksum`] (not retried: the server
    /// would send the same bytes again).
    pub fn sha256(mut self, hex: impl Into<String>) -> Self {
        self.sha256 = Some(hex.into().trim().to_ascii_lowercase());
        self
    }

    /// How many times a transient failure (connection error, timeout, HTTP 5xx/408/429, a
    /// connection dropped mid-body) is retried after the first attempt. Default 2.
    pub fn retries(mut self, n: u32) -> Self {
        self.retries = n;
        self
    }

    /// How long connecting, or waiting for the next bytes of a stalled transfer, may take
    /// before the attempt counts as failed. It does not cap the whole transfer, so a large
    /// file on a slow line still completes. Default 30 s.
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = d;
        self
    }

    /// The wait before the first retry; each further retry waits twice as long. Default 1 s.
    pub fn backoff(mut self, d: Duration) -> Self {
        self.backoff = d;
        self
    }

    /// Print progress lines to stdout (notebooks treat stderr as failure): one at the start, one about every 2 s, one at the end.
    /// Lines, not `\r` redraws, because a Jupyter cell only shows complete lines.
    pub fn progress(mut self, on: bool) -> Self {
        self.progress = on;
        self
    }

    /// The advice appended to network errors, replacing the default "check your network...".
    /// The dataset loaders use it to point at `DLHIST_DATA`; an empty hint appends nothing.
    pub fn hint(mut self, text: impl Into<String>) -> Self {
        self.hint = text.into();
        self
    }

    /// An extra check on the complete temporary file before it is moved into place (e.g. that
    /// a PDF starts with `%PDF-`, or that the content type is right). An error from the hook
    /// is returned as is, the temporary file is removed and nothing is retried.
    ///
    /// ```no_run
    /// use dlhist::data::download::Download;
    /// use dlhist::Error;
    /// Download::new("https://arxiv.org/pdf/1706.03762")
    ///     .verify(|path, _info| {
    ///         let head = std::fs::read(path).map_err(|e| Error::io("cannot read", path, e))?;
    ///         if head.starts_with(b"%PDF-") { Ok(()) } else { Err(Error::Invalid("not a PDF".into())) }
    ///     })
    ///     .to_file(std::path::Path::new("papers/attention.pdf"))?;
    /// # Ok::<(), dlhist::Error>(())
    /// ```
    pub fn verify(mut self, f: impl Fn(&Path, &DownloadInfo) -> Result<()> + 'static) -> Self {
        self.verify = Some(Box::new(f));
        self
    }

    /// Downloads to `dest`, creating its folder, retrying transient failures. On success `dest`
    /// holds the complete, verified file (replacing any earlier one); on any error nothing is
    /// left at `dest` and no temporary file remains in its folder.
    pub fn to_file(&self, dest: &Path) -> Result<DownloadInfo> {
        if let Some(hex) = &self.sha256 {
            if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(Error::Invalid(format!(
                    "expected SHA-256 for {} is {hex:?}, which is not 64 hex digits; pass the digest as printed by `sha256sum`",
                    self.url
                )));
            }
        }
        let dir = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let file_name = dest
            .file_name()
            .ok_or_else(|| Error::Invalid(format!("download destination {} has no file name", dest.display())))?;
        fs::create_dir_all(&dir).map_err(|e| Error::io("cannot create folder", &dir, e))?;

        let mut failures: Vec<String> = Vec::new();
        for attempt in 0..=self.retries {
            if attempt > 0 {
                // Exponential backoff: 1x, 2x, 4x... the base wait, capped so a huge retry
                // count cannot overflow the shift.
                let wait = self.backoff * (1u32 << (attempt - 1).min(16));
                if self.progress {
                    println!(
                        "  retrying {} in {:.1} s (attempt {} of {}): {}",
                        self.url,
                        wait.as_secs_f64(),
                        attempt + 1,
                        self.retries + 1,
                        failures.last().map(String::as_str).unwrap_or("")
                    );
                }
                std::thread::sleep(wait);
            }
            match self.attempt(dest, &dir, file_name) {
                Ok(info) => return Ok(info),
                Err(Failure::Permanent(e)) => return Err(e),
                Err(Failure::Transient(reason)) => failures.push(reason),
            }
        }
        let tries = failures.len();
        let last = failures.pop().unwrap_or_default();
        Err(Error::Download {
            url: self.url.clone(),
            reason: format!(
                "{last} (gave up after {tries} attempt{}){}",
                if tries == 1 { "" } else { "s" },
                if self.hint.is_empty() { String::new() } else { format!("; {}", self.hint) }
            ),
        })
    }

    /// One attempt: request, stream to a temp file, check, move into place.
    fn attempt(&self, dest: &Path, dir: &Path, file_name: &std::ffi::OsStr) -> Result<DownloadInfo, Failure> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            // We judge the status ourselves: a 404 is permanent, a 503 is worth a retry.
            .http_status_as_error(false)
            .timeout_connect(Some(self.timeout))
            .timeout_recv_response(Some(self.timeout))
            .timeout_per_read(Some(self.timeout))
            // Ask for the bytes exactly as stored: the SHA-256 is of the file, not of a
            // re-encoding, and Content-Length then counts the bytes we write.
            .accept_encoding("identity")
            .user_agent(concat!("dlhist/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        let mut response = agent.get(&self.url).call().map_err(|e| classify(&self.url, e))?;

        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            let reason = response.status().canonical_reason().unwrap_or("");
            let msg = format!("HTTP {status} {reason}").trim_end().to_string();
            // 408 (request timeout), 429 (too many requests) and 5xx are the server's
            // passing trouble; any other status will not change by asking again.
            return Err(if status >= 500 || status == 408 || status == 429 {
                Failure::Transient(format!("the server answered {msg}"))
            } else {
                Failure::Permanent(Error::Download {
                    url: self.url.clone(),
                    reason: format!("the server answered {msg}; check that the URL is still right"),
                })
            });
        }
        let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        let content_type = header("content-type");
        let encoded = header("content-encoding").is_some_and(|v| !v.eq_ignore_ascii_case("identity"));
        // With a content encoding the header counts encoded bytes, not the ones we receive.
        let expected_len =
            if encoded { None } else { header("content-length").and_then(|v| v.trim().parse::<u64>().ok()) };

        let mut temp = TempFile::create(dir, file_name).map_err(Failure::Permanent)?;
        let mut hasher = Sha256::new();
        let mut bytes: u64 = 0;
        let mut buf = vec![0u8; 64 * 1024];
        let started = Instant::now();
        let mut last_line = started;
        if self.progress {
            let size = expected_len.map(|n| format!(" ({})", human(n))).unwrap_or_default();
            println!("downloading {}{size}", self.url);
        }
        {
            let mut reader = response.body_mut().as_reader();
            loop {
                let n = match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    // A reset, a timeout or a body cut short: the network's fault, worth a retry.
                    Err(e) => {
                        let of = expected_len.map(|t| format!(" of {t}")).unwrap_or_default();
                        return Err(Failure::Transient(format!("the connection failed after {bytes}{of} bytes: {e}")));
                    }
                };
                hasher.update(&buf[..n]);
                temp.file
                    .write_all(&buf[..n])
                    .map_err(|e| Failure::Permanent(Error::io("cannot write", &temp.path, e)))?;
                bytes += n as u64;
                if self.progress && last_line.elapsed() >= PROGRESS_EVERY {
                    last_line = Instant::now();
                    println!("  {}", progress_line(bytes, expected_len, started.elapsed()));
                }
            }
        }
        if let Some(expected) = expected_len {
            if bytes != expected {
                return Err(Failure::Transient(format!(
                    "the connection was dropped: got {bytes} of the {expected} bytes announced by Content-Length"
                )));
            }
        }

        let info = DownloadInfo { url: self.url.clone(), bytes, sha256: hex(&hasher.finalize()), content_type };
        if let Some(expected) = &self.sha256 {
            if *expected != info.sha256 {
                return Err(Failure::Permanent(Error::Checksum {
                    path: format!("{} (downloaded for {})", self.url, dest.display()),
                    expected: expected.clone(),
                    actual: info.sha256,
                }));
            }
        }
        // Data on disk before the rename: otherwise a crash could leave a renamed but empty file.
        temp.file.sync_all().map_err(|e| Failure::Permanent(Error::io("cannot sync", &temp.path, e)))?;
        if let Some(hook) = &self.verify {
            hook(&temp.path, &info).map_err(Failure::Permanent)?;
        }
        temp.persist(dest).map_err(Failure::Permanent)?;
        if self.progress {
            println!("  done: {} in {:.1} s -> {}", human(bytes), started.elapsed().as_secs_f64(), dest.display());
        }
        Ok(info)
    }
}

/// Why one attempt failed, and whether another attempt could help.
enum Failure {
    /// Worth retrying; the text says what happened.
    Transient(String),
    /// Final: returned to the caller as is.
    Permanent(Error),
}

/// Sorts a ureq error into retry-worthy or not.
fn classify(url: &str, e: ureq::Error) -> Failure {
    match e {
        ureq::Error::Io(_)
        | ureq::Error::Timeout(_)
        | ureq::Error::HostNotFound
        | ureq::Error::ConnectionFailed
        | ureq::Error::Protocol(_)
        | ureq::Error::BodyStalled => Failure::Transient(format!("could not fetch it: {e}")),
        other => Failure::Permanent(Error::Download {
            url: url.to_string(),
            reason: format!("{other}; check the URL (and proxy settings)"),
        }),
    }
}

/// Writes `bytes` to `dest` atomically: into a temporary file in the same folder, synced, then renamed over
/// `dest`, so `dest` either keeps its old content or holds all of the new.
pub(crate) fn write_atomic(dest: &Path, bytes: &[u8]) -> Result<()> {
    let dir = dest.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| Error::io("cannot create folder", dir, e))?;
    let name = dest.file_name().ok_or_else(|| Error::Invalid(format!("{} names no file", dest.display())))?;
    let mut tmp = TempFile::create(dir, name)?;
    tmp.file.write_all(bytes).map_err(|e| Error::io("cannot write", &tmp.path, e))?;
    tmp.file.sync_all().map_err(|e| Error::io("cannot sync", &tmp.path, e))?;
    tmp.persist(dest)
}

/// A uniquely named file in the destination's folder, removed on drop unless persisted.
struct TempFile {
    path: PathBuf,
    file: File,
    keep: bool,
}

impl TempFile {
    fn create(dir: &Path, file_name: &std::ffi::OsStr) -> Result<TempFile> {
        // Unique within the process (counter) and across processes (pid), so two notebooks
        // fetching the same file never write into each other's temp file.
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let mut name = std::ffi::OsString::from(".");
        name.push(file_name);
        name.push(format!(".{}-{n}.part", std::process::id()));
        let path = dir.join(name);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| Error::io("cannot create temporary file", &path, e))?;
        Ok(TempFile { path, file, keep: false })
    }

    /// Moves the file to `dest` (atomic within one filesystem, replacing `dest`).
    fn persist(mut self, dest: &Path) -> Result<()> {
        fs::rename(&self.path, dest).map_err(|e| Error::io("cannot move the download into place at", dest, e))?;
        self.keep = true;
        // Make the rename itself durable where the OS allows syncing a folder; failing to
        // is harmless (the file is complete either way), so the result is ignored.
        #[cfg(unix)]
        if let Some(dir) = dest.parent() {
            let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.keep {
            // Best effort: the error path that dropped us is already being reported.
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}

/// The lowercase hex SHA-256 of `data` (bytes already in memory).
///
/// ```
/// assert_eq!(
///     dlhist::data::download::sha256_bytes(b""),
///     "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
/// );
/// ```
pub fn sha256_bytes(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// The lowercase hex SHA-256 of the file at `path`, read in chunks (never whole into memory).
///
/// ```
/// let dir = std::env::temp_dir().join(format!("dlhist-doc-sha-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let path = dir.join("abc.txt");
/// std::fs::write(&path, b"abc").unwrap();
/// assert_eq!(
///     dlhist::data::download::sha256_file(&path)?,
///     "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
/// );
/// # std::fs::remove_dir_all(&dir).unwrap();
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = File::open(path).map_err(|e| Error::io("cannot open", path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io("cannot read", path, e)),
        };
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// `12.3 MB`-style sizes (decimal units, like browsers and `ls -h --si`).
fn human(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1e9 {
        format!("{:.2} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.1} MB", b / 1e6)
    } else if b >= 1e3 {
        format!("{:.1} kB", b / 1e3)
    } else {
        format!("{bytes} B")
    }
}

/// One progress line: how much, of how much, how fast.
fn progress_line(bytes: u64, total: Option<u64>, elapsed: Duration) -> String {
    let rate = bytes as f64 / elapsed.as_secs_f64().max(1e-3);
    match total {
        Some(t) if t > 0 => {
            format!(
                "{} / {} ({:.0}%), {}/s",
                human(bytes),
                human(t),
                100.0 * bytes as f64 / t as f64,
                human(rate as u64)
            )
        }
        _ => format!("{}, {}/s", human(bytes), human(rate as u64)),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::BufRead;
    use std::net::{TcpListener, TcpStream};
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    use std::thread::JoinHandle;

    /// A loopback HTTP server answering successive connections with canned raw responses
    /// (one per connection, then closing it). It stops when told to, or after 20 s.
    pub(crate) struct Server {
        pub(crate) url: String,
        stop: Arc<AtomicBool>,
        handle: Option<JoinHandle<Vec<String>>>,
    }

    impl Server {
        pub(crate) fn start(responses: Vec<Vec<u8>>) -> Server {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
            listener.set_nonblocking(true).expect("nonblocking");
            let url = format!("http://{}", listener.local_addr().expect("addr"));
            let stop = Arc::new(AtomicBool::new(false));
            let stop2 = Arc::clone(&stop);
            let handle = std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(20);
                let mut seen = Vec::new();
                let mut responses = responses.into_iter();
                while !stop2.load(Ordering::SeqCst) && Instant::now() < deadline {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let Some(resp) = responses.next() else { break };
                            seen.push(serve(stream, &resp));
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(5))
                        }
                        Err(_) => break,
                    }
                }
                seen
            });
            Server { url, stop, handle: Some(handle) }
        }

        /// Stops the server and returns the request lines it saw, in order.
        pub(crate) fn finish(mut self) -> Vec<String> {
            self.stop.store(true, Ordering::SeqCst);
            self.handle.take().map(|h| h.join().expect("server thread")).unwrap_or_default()
        }
    }

    /// Reads one request's head, writes `resp`, closes. Returns the request line.
    fn serve(stream: TcpStream, resp: &[u8]) -> String {
        stream.set_nonblocking(false).expect("blocking");
        stream.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        let mut reader = std::io::BufReader::new(stream.try_clone().expect("clone"));
        let mut first = String::new();
        let _ = reader.read_line(&mut first);
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) if line == "\r\n" => break,
                Ok(_) => {}
            }
        }
        let mut stream = stream;
        let _ = stream.write_all(resp);
        let _ = stream.flush();
        let _ = stream.shutdown(std::net::Shutdown::Both);
        first.trim_end().to_string()
    }

    pub(crate) fn ok(body: &[u8], content_type: &str) -> Vec<u8> {
        let mut r = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        r.extend_from_slice(body);
        r
    }

    fn status(code: u16, text: &str) -> Vec<u8> {
        format!("HTTP/1.1 {code} {text}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").into_bytes()
    }

    fn fast(url: String) -> Download {
        Download::new(url).backoff(Duration::from_millis(10)).timeout(Duration::from_secs(5))
    }

    fn listing(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> =
            fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    }

    const BODY: &[u8] = b"the quick brown fox jumps over the lazy dog\n";

    #[test]
    fn success_writes_the_file_with_the_right_hash() {
        let server = Server::start(vec![ok(BODY, "text/plain")]);
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("sub/folder/fox.txt");
        let info =
            fast(format!("{}/fox.txt", server.url)).sha256(sha256_bytes(BODY).to_uppercase()).to_file(&dest).unwrap();
        assert_eq!(fs::read(&dest).unwrap(), BODY);
        assert_eq!(info.bytes, BODY.len() as u64);
        assert_eq!(info.sha256, sha256_bytes(BODY));
        assert_eq!(info.sha256, sha256_file(&dest).unwrap());
        assert_eq!(info.content_type.as_deref(), Some("text/plain"));
        assert_eq!(listing(dest.parent().unwrap()), vec!["fox.txt"]);
        assert_eq!(server.finish(), vec!["GET /fox.txt HTTP/1.1"]);
    }

    #[test]
    fn not_found_names_url_and_status_and_is_not_retried() {
        let server = Server::start(vec![status(404, "Not Found"), ok(BODY, "text/plain")]);
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("missing.bin");
        let url = format!("{}/missing.bin", server.url);
        let err = fast(url.clone()).to_file(&dest).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, Error::Download { .. }), "{err:?}");
        assert!(msg.contains(&url) && msg.contains("404"), "{msg}");
        assert!(!dest.exists());
        assert!(listing(dir.path()).is_empty());
        assert_eq!(server.finish().len(), 1, "a 404 must not be retried");
    }

    #[test]
    fn corrupt_bytes_give_a_checksum_error_and_leave_nothing() {
        let server = Server::start(vec![ok(b"not the fox", "text/plain"), ok(BODY, "text/plain")]);
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("fox.txt");
        let err = fast(format!("{}/fox.txt", server.url)).sha256(sha256_bytes(BODY)).to_file(&dest).unwrap_err();
        match &err {
            Error::Checksum { path, expected, actual } => {
                assert!(path.contains("/fox.txt"), "{path}");
                assert_eq!(expected, &sha256_bytes(BODY));
                assert_eq!(actual, &sha256_bytes(b"not the fox"));
            }
            other => panic!("expected a checksum error, got {other:?}"),
        }
        assert!(!dest.exists());
        assert!(listing(dir.path()).is_empty(), "{:?}", listing(dir.path()));
        assert_eq!(server.finish().len(), 1, "a checksum mismatch must not be retried");
    }

    #[test]
    fn dropped_connection_is_retried_then_fails_without_a_partial_file() {
        let mut cut = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n".to_vec();
        cut.extend_from_slice(&[7u8; 500]);
        let server = Server::start(vec![cut.clone(), cut.clone(), cut]);
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("half.bin");
        let url = format!("{}/half.bin", server.url);
        let err = fast(url.clone()).retries(2).hint("set DLHIST_DATA").to_file(&dest).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, Error::Download { .. }), "{err:?}");
        assert!(msg.contains(&url) && msg.contains("3 attempts") && msg.contains("set DLHIST_DATA"), "{msg}");
        assert!(!dest.exists());
        assert!(listing(dir.path()).is_empty(), "{:?}", listing(dir.path()));
        assert_eq!(server.finish().len(), 3);
    }

    #[test]
    fn transient_503_then_success() {
        let server = Server::start(vec![status(503, "Service Unavailable"), ok(BODY, "application/octet-stream")]);
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("fox.txt");
        let info = fast(format!("{}/fox.txt", server.url)).sha256(sha256_bytes(BODY)).to_file(&dest).unwrap();
        assert_eq!(info.bytes, BODY.len() as u64);
        assert_eq!(fs::read(&dest).unwrap(), BODY);
        assert_eq!(server.finish().len(), 2);
    }

    #[test]
    fn verify_hook_sees_the_file_and_can_reject_it() {
        let server = Server::start(vec![ok(BODY, "text/html"), ok(b"%PDF-1.5 ...", "application/pdf")]);
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("paper.pdf");
        let pdf_only = |path: &Path, info: &DownloadInfo| -> Result<()> {
            let head = fs::read(path).map_err(|e| Error::io("cannot read", path, e))?;
            if head.starts_with(b"%PDF-") && info.content_type.as_deref() == Some("application/pdf") {
                Ok(())
            } else {
                Err(Error::Invalid(format!("{} is not a PDF", info.url)))
            }
        };
        let url = format!("{}/paper.pdf", server.url);
        let err = fast(url.clone()).verify(pdf_only).to_file(&dest).unwrap_err();
        assert!(err.to_string().contains("is not a PDF"), "{err}");
        assert!(listing(dir.path()).is_empty());
        let info = fast(url).verify(pdf_only).to_file(&dest).unwrap();
        assert_eq!(info.content_type.as_deref(), Some("application/pdf"));
        assert!(fs::read(&dest).unwrap().starts_with(b"%PDF-"));
        assert_eq!(server.finish().len(), 2);
    }

    #[test]
    fn unreachable_server_is_a_download_error_with_the_hint() {
        // Bind then drop a listener: nothing listens on that port any more.
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("x.bin");
        let err = fast(format!("http://127.0.0.1:{port}/x.bin")).retries(1).to_file(&dest).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("2 attempts") && msg.contains("check your network"), "{msg}");
        assert!(listing(dir.path()).is_empty());
    }

    #[test]
    fn bad_expected_digest_is_rejected_before_any_request() {
        let dir = tempfile::tempdir().unwrap();
        let err = Download::new("http://127.0.0.1:9/x").sha256("abc").to_file(&dir.path().join("x")).unwrap_err();
        assert!(err.to_string().contains("not 64 hex digits"), "{err}");
    }

    #[test]
    fn sizes_and_progress_lines_read_well() {
        assert_eq!(human(999), "999 B");
        assert_eq!(human(26_421_880), "26.4 MB");
        let line = progress_line(5_000_000, Some(10_000_000), Duration::from_secs(2));
        assert_eq!(line, "5.0 MB / 10.0 MB (50%), 2.5 MB/s");
    }
}
