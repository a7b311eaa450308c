//! Tests of `cargo xtask papers`: the catalog's shape, the generated BibTeX, and `papers fetch`
//! against a loopback HTTP server (success, 404, HTML instead of PDF, checksum mismatch, dropped
//! connection, rerun). Every fetch writes under a temporary root, never under `notebooks/`.

// The xtask crate is a binary, so the module is compiled into this test crate from its source.
// Helpers the binary uses but these tests do not would otherwise warn as dead code.
#[allow(dead_code)]
#[path = "../src/papers.rs"]
mod papers;

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use papers::catalog::Catalog;
use papers::fetch::{fetch, FetchOptions, Lock, Outcome, LOCK_PATH};
use sha2::{Digest, Sha256};

// ---------------------------------------------------------------------------------------------
// The catalog
// ---------------------------------------------------------------------------------------------

/// The 31 milestone folders of the curriculum (`../shared/curriculum.tsv`), in order.
const MILESTONES: [&str; 31] = [
    "01-deep-neural-networks/01-dnn",
    "01-deep-neural-networks/02-cnn",
    "01-deep-neural-networks/03-alex-net",
    "01-deep-neural-networks/04-u-net",
    "02-optimization-and-regularization/01-weight-decay",
    "02-optimization-and-regularization/02-relu",
    "02-optimization-and-regularization/03-residuals",
    "02-optimization-and-regularization/04-dropout",
    "02-optimization-and-regularization/05-batch-norm",
    "02-optimization-and-regularization/06-layer-norm",
    "02-optimization-and-regularization/07-gelu",
    "02-optimization-and-regularization/08-adam",
    "03-sequence-modeling/01-rnn",
    "03-sequence-modeling/02-lstm",
    "03-sequence-modeling/03-learning-to-forget",
    "03-sequence-modeling/04-word2vec",
    "03-sequence-modeling/05-seq2seq",
    "03-sequence-modeling/06-attention",
    "03-sequence-modeling/07-mixture-of-experts",
    "04-transformers/01-transformer",
    "04-transformers/02-bert",
    "04-transformers/03-t5",
    "04-transformers/04-gpt",
    "04-transformers/05-lora",
    "04-transformers/06-rlhf",
    "04-transformers/07-vision-transformer",
    "05-image-generation/01-gan",
    "05-image-generation/02-vae",
    "05-image-generation/03-diffusion",
    "05-image-generation/04-clip",
    "05-image-generation/05-dall-e",
];

fn real_catalog() -> Catalog {
    Catalog::load(&papers::catalog_path()).expect("papers/catalog.toml loads and validates")
}

#[test]
fn catalog_has_45_papers_with_unique_keys_and_places() {
    let c = real_catalog();
    assert_eq!(c.papers.len(), 45);
    let keys: BTreeSet<&str> = c.papers.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(keys.len(), 45, "keys must be unique");
    let places: BTreeSet<(&str, &str)> = c.papers.iter().map(|p| (p.milestone.as_str(), p.pdf_file.as_str())).collect();
    assert_eq!(places.len(), 45, "(milestone, pdf_file) must be unique");
    assert_eq!(c.milestones(), MILESTONES.to_vec());
    for p in &c.papers {
        // arXiv papers are fetched from arXiv's own PDF URL first.
        if let Some(id) = &p.arxiv {
            assert_eq!(p.pdf_url, format!("https://arxiv.org/pdf/{id}"), "{}", p.key);
            assert_eq!(p.url, format!("https://arxiv.org/abs/{id}"), "{}", p.key);
        }
    }
}

/// Cross-checks the catalog against the curriculum list the project started from, when the
/// shared folder is present (it sits next to the checkout, not in it).
#[test]
fn catalog_matches_the_curriculum_layout() {
    let tsv = papers::workspace_root().join("../shared/curriculum.tsv");
    let Ok(text) = std::fs::read_to_string(&tsv) else {
        eprintln!("{} not found; layout cross-check skipped", tsv.display());
        return;
    };
    let c = real_catalog();
    let rows: Vec<Vec<&str>> =
        text.lines().skip(1).filter(|l| !l.trim().is_empty()).map(|l| l.split('\t').collect()).collect();
    assert_eq!(rows.len(), c.papers.len());
    for (row, p) in rows.iter().zip(&c.papers) {
        // Folders and file names are the original layout and were kept; titles, authors and
        // years were corrected in the catalog, so they are not compared.
        assert_eq!(&row[..4], &[p.section.as_str(), p.milestone.as_str(), p.notebook.as_str(), p.pdf_file.as_str()]);
        assert_eq!(row[4], p.short_name);
    }
}

#[test]
fn references_bib_is_in_sync_with_the_catalog() {
    let committed = std::fs::read_to_string(papers::bib_path()).expect("papers/references.bib exists");
    assert!(
        committed == real_catalog().to_bibtex(),
        "papers/references.bib is out of date: run `cargo xtask papers bib` and commit it"
    );
    assert_eq!(committed.matches("\n@").count(), 45);
}

#[test]
fn list_shows_every_paper_and_whether_it_is_fetched() {
    let c = real_catalog();
    let root = tempfile::tempdir().unwrap();
    let table = papers::list_table(&c, root.path());
    let lines: Vec<&str> = table.lines().collect();
    // Header, rule, 45 rows, two summary lines.
    assert_eq!(lines.len(), 49, "{table}");
    assert!(lines[0].starts_with("key") && lines[0].ends_with("fetched"), "{table}");
    assert!(lines[2].starts_with("rumelhart1986learning") && lines[2].contains(" 1986 "), "{table}");
    assert!(lines[2..47].iter().all(|l| l.ends_with(" no")), "{table}");
    // Columns line up: every row has its year at the same offset as the header's.
    let year_col = lines[0].find("year").unwrap();
    assert!(lines[2..47].iter().all(|l| l[year_col..year_col + 4].parse::<u16>().is_ok()), "{table}");

    let p = &c.papers[1];
    std::fs::create_dir_all(p.pdf_path(root.path()).parent().unwrap()).unwrap();
    std::fs::write(p.pdf_path(root.path()), b"%PDF-1.4").unwrap();
    let table = papers::list_table(&c, root.path());
    assert!(table.lines().nth(3).unwrap().ends_with(" yes"), "{table}");
    assert!(table.contains("45 papers in 31 milestones; 1 fetched"), "{table}");
    assert!(table.ends_with("0 hashes recorded in papers/papers.lock\n"), "{table}");
}

// ---------------------------------------------------------------------------------------------
// A loopback server
// ---------------------------------------------------------------------------------------------

/// How the test server answers one path.
#[derive(Clone)]
struct Route {
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
    /// The first this many requests get a dropped connection (Content-Length larger than the body).
    drop_first: usize,
}

impl Route {
    fn pdf(body: Vec<u8>) -> Route {
        Route { status: 200, content_type: "application/pdf", body, drop_first: 0 }
    }
}

/// A loopback HTTP/1.1 server on 127.0.0.1:0 in a thread: one request per connection, then
/// close. Unknown paths get 404. It stops when dropped, or after 60 s whatever happens.
struct Server {
    url: String,
    routes: Arc<Mutex<HashMap<String, Route>>>,
    hits: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Server {
    fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let routes: Arc<Mutex<HashMap<String, Route>>> = Arc::default();
        let hits: Arc<Mutex<Vec<String>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (r, h, s) = (Arc::clone(&routes), Arc::clone(&hits), Arc::clone(&stop));
        let handle = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !s.load(Ordering::SeqCst) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((stream, _)) => serve(stream, &r, &h),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(2))
                    }
                    Err(_) => break,
                }
            }
        });
        Server { url, routes, hits, stop, handle: Some(handle) }
    }

    fn route(&self, path: &str, route: Route) {
        self.routes.lock().unwrap().insert(path.to_string(), route);
    }

    fn hits(&self) -> Vec<String> {
        self.hits.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn serve(stream: TcpStream, routes: &Mutex<HashMap<String, Route>>, hits: &Mutex<Vec<String>>) {
    stream.set_nonblocking(false).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    // Skip the headers up to the blank line.
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) if line == "\r\n" || line == "\n" => break,
            Ok(_) => {}
        }
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("/").to_string();
    hits.lock().unwrap().push(path.clone());
    let route = {
        let mut routes = routes.lock().unwrap();
        match routes.get_mut(&path) {
            Some(r) => {
                let answer = r.clone();
                r.drop_first = r.drop_first.saturating_sub(1);
                answer
            }
            None => Route { status: 404, content_type: "text/plain", body: b"not found".to_vec(), drop_first: 0 },
        }
    };
    let mut stream = stream;
    let reason = match route.status {
        200 => "OK",
        404 => "Not Found",
        _ => "Other",
    };
    // A dropped connection announces more bytes than it sends, then closes.
    let (declared, sent) = if route.drop_first > 0 {
        (route.body.len() + 1000, &route.body[..route.body.len() / 2])
    } else {
        (route.body.len(), &route.body[..])
    };
    let head = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {declared}\r\nConnection: close\r\n\r\n",
        route.status, route.content_type
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(sent);
    let _ = stream.flush();
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

// ---------------------------------------------------------------------------------------------
// Fetch
// ---------------------------------------------------------------------------------------------

/// The diffusion milestone: four papers, so a run is small but not trivial.
const MILESTONE: &str = "03-diffusion";

fn fake_pdf(key: &str) -> Vec<u8> {
    format!("%PDF-1.4\n% stand-in for {key}\n%%EOF\n").into_bytes()
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Serves the milestone's papers under the mirror layout `/<section>/<milestone>/<pdf_file>`,
/// except the keys in `skip`.
fn serve_milestone(server: &Server, catalog: &Catalog, skip: &[&str]) {
    for p in catalog.papers.iter().filter(|p| p.milestone == MILESTONE && !skip.contains(&p.key.as_str())) {
        server.route(&format!("/{}/{}/{}", p.section, p.milestone, p.pdf_file), Route::pdf(fake_pdf(&p.key)));
    }
}

fn options(root: &Path, server: &Server) -> FetchOptions {
    let mut o = FetchOptions::new(root);
    o.milestones = vec![MILESTONE.to_string()];
    o.mirror = Some(format!("{}/", server.url));
    o.retries = 0;
    o.timeout = Duration::from_secs(5);
    o.backoff = Duration::from_millis(10);
    o.progress = false;
    o
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn outcome<'a>(report: &'a papers::fetch::FetchReport, key: &str) -> &'a Outcome {
    &report.outcomes.iter().find(|(k, _, _)| k == key).unwrap().2
}

/// The names of the files in a folder (to catch leftover temporary files).
fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = match std::fs::read_dir(dir) {
        Ok(rd) => rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names
}

#[test]
fn fetch_places_pdfs_next_to_notebooks_and_records_hashes() {
    let catalog = real_catalog();
    let server = Server::start();
    serve_milestone(&server, &catalog, &[]);
    let root = tempfile::tempdir().unwrap();
    let root_s = root.path().to_str().unwrap();

    // Through the command line, as `cargo xtask papers fetch ...` runs it.
    papers::run(&args(&[
        "fetch",
        "--milestone",
        MILESTONE,
        "--mirror",
        &server.url,
        "--root",
        root_s,
        "--retries",
        "0",
    ]))
    .expect("all four papers fetch");

    let folder = root.path().join("notebooks/05-image-generation/03-diffusion");
    assert_eq!(
        files_in(&folder),
        [
            "01-diffusion.pdf",
            "02-denoising-diffusion.pdf",
            "03-denoising-diffusion-2.pdf",
            "04-diffusion-beats-gans.pdf"
        ]
    );
    let lock = Lock::load(&root.path().join(LOCK_PATH)).unwrap();
    for p in catalog.papers.iter().filter(|p| p.milestone == MILESTONE) {
        let bytes = std::fs::read(p.pdf_path(root.path())).unwrap();
        assert_eq!(bytes, fake_pdf(&p.key));
        assert_eq!(lock.get(&p.key), Some(sha256(&bytes).as_str()), "{}", p.key);
    }
    assert_eq!(lock.entries().count(), 4);
    assert_eq!(server.hits().len(), 4);
    // Nothing outside the selected milestone was touched.
    assert_eq!(files_in(&root.path().join("notebooks")), ["05-image-generation"]);
}

#[test]
fn rerun_skips_valid_files_and_reverifies_them() {
    let catalog = real_catalog();
    let server = Server::start();
    serve_milestone(&server, &catalog, &[]);
    let root = tempfile::tempdir().unwrap();
    let opts = options(root.path(), &server);

    let first = fetch(&catalog, &opts).unwrap();
    assert_eq!((first.fetched(), first.skipped(), first.failures().len()), (4, 0, 0), "{}", first.summary());
    let second = fetch(&catalog, &opts).unwrap();
    assert_eq!((second.fetched(), second.skipped(), second.failures().len()), (0, 4, 0), "{}", second.summary());
    assert_eq!(server.hits().len(), 4, "a rerun must not download again");

    // A file changed after it was fetched fails the next run, which names it and both hashes,
    // and leaves the file alone.
    let p = catalog.papers.iter().find(|p| p.key == "ho2020denoising").unwrap();
    let path = p.pdf_path(root.path());
    std::fs::write(&path, b"%PDF-1.4\n% edited\n").unwrap();
    let third = fetch(&catalog, &opts).unwrap();
    let Outcome::Failed(reason) = outcome(&third, "ho2020denoising") else { panic!("{}", third.summary()) };
    assert!(reason.contains("02-denoising-diffusion.pdf"), "{reason}");
    assert!(reason.contains(&sha256(b"%PDF-1.4\n% edited\n")), "{reason}");
    assert!(reason.contains(&sha256(&fake_pdf("ho2020denoising"))), "{reason}");
    assert!(reason.contains("Delete it"), "{reason}");
    assert_eq!(std::fs::read(&path).unwrap(), b"%PDF-1.4\n% edited\n");
    assert_eq!(third.skipped(), 3);
    assert_eq!(server.hits().len(), 4);
}

#[test]
fn a_404_fails_that_paper_only_and_the_command_exits_non_zero() {
    let catalog = real_catalog();
    let server = Server::start();
    serve_milestone(&server, &catalog, &["nichol2021improved"]);
    let root = tempfile::tempdir().unwrap();

    let report = fetch(&catalog, &options(root.path(), &server)).unwrap();
    assert_eq!((report.fetched(), report.failures().len()), (3, 1), "{}", report.summary());
    let Outcome::Failed(reason) = outcome(&report, "nichol2021improved") else { panic!("{}", report.summary()) };
    assert!(reason.contains("404"), "{reason}");
    let summary = report.summary();
    assert!(summary.contains("3 fetched, 0 skipped (already present and valid), 1 failed"), "{summary}");
    assert!(
        summary.contains(
            "FAILED nichol2021improved (notebooks/05-image-generation/03-diffusion/03-denoising-diffusion-2.pdf)"
        ),
        "{summary}"
    );
    let lock = Lock::load(&root.path().join(LOCK_PATH)).unwrap();
    assert_eq!(lock.get("nichol2021improved"), None);
    assert_eq!(lock.entries().count(), 3);

    // The command line turns any failure into an error (a non-zero exit).
    let err = papers::run(&args(&[
        "fetch",
        "--milestone",
        MILESTONE,
        "--mirror",
        &server.url,
        "--root",
        root.path().to_str().unwrap(),
        "--retries",
        "0",
    ]))
    .unwrap_err();
    assert!(err.to_string().contains("1 of 4 papers could not be fetched"), "{err}");
}

#[test]
fn an_html_page_instead_of_a_pdf_is_rejected() {
    let catalog = real_catalog();
    let server = Server::start();
    serve_milestone(&server, &catalog, &[]);
    let p = catalog.papers.iter().find(|p| p.key == "sohldickstein2015deep").unwrap();
    let route_path = format!("/{}/{}/{}", p.section, p.milestone, p.pdf_file);
    server.route(
        &route_path,
        Route {
            status: 200,
            content_type: "text/html; charset=utf-8",
            body: b"<html>sign in</html>".to_vec(),
            drop_first: 0,
        },
    );
    // The same page sent as a generic binary type is caught by the magic bytes.
    let q = catalog.papers.iter().find(|p| p.key == "dhariwal2021diffusion").unwrap();
    server.route(
        &format!("/{}/{}/{}", q.section, q.milestone, q.pdf_file),
        Route {
            status: 200,
            content_type: "application/octet-stream",
            body: b"<html>sign in</html>".to_vec(),
            drop_first: 0,
        },
    );
    let root = tempfile::tempdir().unwrap();

    let report = fetch(&catalog, &options(root.path(), &server)).unwrap();
    assert_eq!((report.fetched(), report.failures().len()), (2, 2), "{}", report.summary());
    let Outcome::Failed(html) = outcome(&report, "sohldickstein2015deep") else { panic!() };
    assert!(html.contains("HTML page") && html.contains("01-diffusion.pdf"), "{html}");
    let Outcome::Failed(magic) = outcome(&report, "dhariwal2021diffusion") else { panic!() };
    assert!(magic.contains("%PDF-"), "{magic}");
    // Neither reached its place, no temporary file is left, and nothing was recorded.
    assert!(!p.pdf_path(root.path()).exists() && !q.pdf_path(root.path()).exists());
    assert_eq!(files_in(p.pdf_path(root.path()).parent().unwrap()).len(), 2);
    let lock = Lock::load(&root.path().join(LOCK_PATH)).unwrap();
    assert_eq!((lock.get(&p.key), lock.get(&q.key)), (None, None));
}

#[test]
fn a_download_that_does_not_match_the_lock_is_an_error_naming_both_hashes() {
    let catalog = real_catalog();
    let server = Server::start();
    serve_milestone(&server, &catalog, &[]);
    let root = tempfile::tempdir().unwrap();
    let recorded = sha256(b"the bytes fetched the first time");
    std::fs::create_dir_all(root.path().join("papers")).unwrap();
    let lock_text = format!("[sha256]\nho2020denoising = \"{recorded}\"\n");
    std::fs::write(root.path().join(LOCK_PATH), &lock_text).unwrap();

    let report = fetch(&catalog, &options(root.path(), &server)).unwrap();
    let Outcome::Failed(reason) = outcome(&report, "ho2020denoising") else { panic!("{}", report.summary()) };
    assert!(reason.contains(&recorded), "{reason}");
    assert!(reason.contains(&sha256(&fake_pdf("ho2020denoising"))), "{reason}");
    assert!(reason.contains("notebooks/05-image-generation/03-diffusion/02-denoising-diffusion.pdf"), "{reason}");
    assert!(reason.contains("papers/papers.lock"), "{reason}");
    let p = catalog.papers.iter().find(|p| p.key == "ho2020denoising").unwrap();
    assert!(!p.pdf_path(root.path()).exists());
    // The recorded hash stays as it was; the other three papers were recorded alongside it.
    let lock = Lock::load(&root.path().join(LOCK_PATH)).unwrap();
    assert_eq!(lock.get("ho2020denoising"), Some(recorded.as_str()));
    assert_eq!(report.fetched(), 3);
    assert_eq!(lock.entries().count(), 4);
}

#[test]
fn a_dropped_connection_fails_cleanly_and_is_retried() {
    let catalog = real_catalog();
    let server = Server::start();
    serve_milestone(&server, &catalog, &[]);
    let p = catalog.papers.iter().find(|p| p.key == "dhariwal2021diffusion").unwrap();
    let route_path = format!("/{}/{}/{}", p.section, p.milestone, p.pdf_file);
    server.route(&route_path, Route { drop_first: 5, ..Route::pdf(fake_pdf(&p.key)) });
    let root = tempfile::tempdir().unwrap();

    // Without retries the cut-short body is a failure, and nothing is left behind.
    let report = fetch(&catalog, &options(root.path(), &server)).unwrap();
    let Outcome::Failed(reason) = outcome(&report, &p.key) else { panic!("{}", report.summary()) };
    assert!(reason.contains("dropped") || reason.contains("connection"), "{reason}");
    assert!(!p.pdf_path(root.path()).exists());
    assert_eq!(files_in(p.pdf_path(root.path()).parent().unwrap()).len(), 3, "no temporary file may remain");

    // With retries the next attempt gets the whole file.
    server.route(&route_path, Route { drop_first: 1, ..Route::pdf(fake_pdf(&p.key)) });
    let mut opts = options(root.path(), &server);
    opts.retries = 2;
    let report = fetch(&catalog, &opts).unwrap();
    assert!(matches!(outcome(&report, &p.key), Outcome::Fetched { recorded: true, .. }), "{}", report.summary());
    assert_eq!(std::fs::read(p.pdf_path(root.path())).unwrap(), fake_pdf(&p.key));
    assert_eq!(report.skipped(), 3);
}

#[test]
fn catalog_urls_are_tried_in_order_when_there_is_no_mirror() {
    let server = Server::start();
    server.route("/good/thing.pdf", Route::pdf(fake_pdf("doe2020thing")));
    let catalog = Catalog::parse(&format!(
        r#"
[[paper]]
key = "doe2020thing"
short_name = "Thing"
title = "A Thing"
authors = ["Jane Doe"]
year = 2020
venue = "Somewhere"
kind = "misc"
url = "{u}/thing"
pdf_url = "{u}/gone/thing.pdf"
mirrors = ["{u}/good/thing.pdf"]
section = "01-section"
milestone = "01-thing"
notebook = "02-thing.ipynb"
pdf_file = "01-thing.pdf"
"#,
        u = server.url
    ))
    .unwrap();
    let root = tempfile::tempdir().unwrap();
    let mut opts = options(root.path(), &server);
    opts.mirror = None;
    opts.milestones.clear();

    let report = fetch(&catalog, &opts).unwrap();
    assert_eq!(
        report.outcomes[0].2,
        Outcome::Fetched { url: format!("{}/good/thing.pdf", server.url), recorded: true },
        "{}",
        report.summary()
    );
    assert_eq!(server.hits(), ["/gone/thing.pdf", "/good/thing.pdf"]);
    assert!(root.path().join("notebooks/01-section/01-thing/01-thing.pdf").is_file());
}

#[test]
fn a_pdf_placed_by_hand_is_recorded_on_first_use() {
    let catalog = real_catalog();
    let server = Server::start();
    let root = tempfile::tempdir().unwrap();
    for p in catalog.papers.iter().filter(|p| p.milestone == MILESTONE) {
        std::fs::create_dir_all(p.pdf_path(root.path()).parent().unwrap()).unwrap();
        std::fs::write(p.pdf_path(root.path()), fake_pdf(&p.key)).unwrap();
    }
    let report = fetch(&catalog, &options(root.path(), &server)).unwrap();
    assert_eq!(report.skipped(), 4, "{}", report.summary());
    assert!(report.outcomes.iter().all(|(_, _, o)| *o == Outcome::Skipped { recorded: true }));
    assert!(server.hits().is_empty());
    let lock = Lock::load(&root.path().join(LOCK_PATH)).unwrap();
    assert_eq!(lock.get("ho2020denoising"), Some(sha256(&fake_pdf("ho2020denoising")).as_str()));
}

#[test]
fn an_unknown_milestone_is_an_error_listing_the_known_ones() {
    let root = tempfile::tempdir().unwrap();
    let err = papers::run(&args(&["fetch", "--milestone", "99-nope", "--root", root.path().to_str().unwrap()]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("no milestone \"99-nope\"") && err.contains("05-image-generation/03-diffusion"), "{err}");
    assert!(!root.path().join("notebooks").exists());
}
