//! The papers catalog (`papers/catalog.toml`): its types, loading with validation, and the
//! BibTeX rendering behind `papers/references.bib`.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

/// One paper of the catalog: its bibliographic record and where its PDF belongs.
///
/// The field meanings are documented at the top of `papers/catalog.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Paper {
    /// Citation key: the BibTeX key and the key in `papers/papers.lock`.
    pub key: String,
    /// The milestone's short label in the curriculum, e.g. `AlexNet`.
    pub short_name: String,
    /// The title as printed on the paper.
    pub title: String,
    /// Author names in the paper's order (a prefix of the list when `et_al` is set).
    pub authors: Vec<String>,
    /// True when `authors` lists only the first authors of a longer list.
    #[serde(default)]
    pub et_al: bool,
    /// The year the paper first appeared (preprint or publication).
    pub year: u16,
    /// Where it was published, spelled out.
    pub venue: String,
    /// The venue's year, when it differs from `year`.
    #[serde(default)]
    pub venue_year: Option<u16>,
    /// BibTeX entry type.
    pub kind: EntryKind,
    /// Journal volume (or proceedings volume).
    #[serde(default)]
    pub volume: Option<String>,
    /// Journal issue number.
    #[serde(default)]
    pub number: Option<String>,
    /// Page range, BibTeX style (`541--551`).
    #[serde(default)]
    pub pages: Option<String>,
    /// Publisher (or institution, for a technical report).
    #[serde(default)]
    pub publisher: Option<String>,
    /// Chapter number, for a book chapter.
    #[serde(default)]
    pub chapter: Option<String>,
    /// Digital object identifier, without the `https://doi.org/` prefix.
    #[serde(default)]
    pub doi: Option<String>,
    /// The paper's landing page (publisher or arXiv abstract page).
    pub url: String,
    /// The PDF that `papers fetch` downloads first.
    pub pdf_url: String,
    /// Further PDF locations, tried in order when `pdf_url` fails.
    #[serde(default)]
    pub mirrors: Vec<String>,
    /// arXiv identifier, e.g. `1706.03762`.
    #[serde(default)]
    pub arxiv: Option<String>,
    /// Notebook section folder, e.g. `01-deep-neural-networks`.
    pub section: String,
    /// Milestone folder inside the section, e.g. `02-cnn`.
    pub milestone: String,
    /// The milestone notebook's file name, e.g. `03-cnn.ipynb`.
    pub notebook: String,
    /// The PDF's file name next to the notebook, e.g. `02-le-net.pdf`.
    pub pdf_file: String,
    /// The PDF's SHA-256 (lowercase hex) once known.
    #[serde(default)]
    pub sha256: Option<String>,
    /// What could not be verified, or why a field differs from the curriculum list.
    #[serde(default)]
    pub note: Option<String>,
}

/// The BibTeX entry types the catalog uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    /// A journal article: `venue` is the journal.
    Article,
    /// A conference paper: `venue` is the proceedings.
    Inproceedings,
    /// A chapter of an edited book: `venue` is the book.
    Incollection,
    /// A technical report: `publisher` is the institution.
    Techreport,
    /// Anything else, here arXiv preprints: `venue` is printed as `howpublished`.
    Misc,
}

impl EntryKind {
    /// The BibTeX type name, e.g. `inproceedings`.
    pub fn bibtex_name(self) -> &'static str {
        match self {
            EntryKind::Article => "article",
            EntryKind::Inproceedings => "inproceedings",
            EntryKind::Incollection => "incollection",
            EntryKind::Techreport => "techreport",
            EntryKind::Misc => "misc",
        }
    }
}

impl Paper {
    /// The milestone as `section/milestone`, the notebook folder under `notebooks/`.
    pub fn milestone_path(&self) -> String {
        format!("{}/{}", self.section, self.milestone)
    }

    /// Where the PDF belongs under a repository root: `root/notebooks/<section>/<milestone>/<pdf_file>`.
    pub fn pdf_path(&self, root: &Path) -> PathBuf {
        root.join("notebooks").join(&self.section).join(&self.milestone).join(&self.pdf_file)
    }

    /// The PDF's path relative to the repository root, with `/` separators (for messages).
    pub fn pdf_rel(&self) -> String {
        format!("notebooks/{}/{}/{}", self.section, self.milestone, self.pdf_file)
    }
}

/// The whole catalog, in file order (notebook order).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    /// The papers, in notebook order.
    #[serde(rename = "paper")]
    pub papers: Vec<Paper>,
}

impl Catalog {
    /// Reads and validates the catalog at `path`.
    pub fn load(path: &Path) -> Result<Catalog> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the papers catalog {}", path.display()))?;
        Catalog::parse(&text).with_context(|| format!("in {}", path.display()))
    }

    /// Parses catalog TOML and validates it (see [`Catalog::validate`]).
    pub fn parse(text: &str) -> Result<Catalog> {
        let catalog: Catalog =
            toml::from_str(text).context("the papers catalog is not valid TOML of the expected shape")?;
        catalog.validate()?;
        Ok(catalog)
    }

    /// Checks what the commands rely on: unique keys, unique PDF destinations, well-formed
    /// keys, file names, URLs and hashes. The error lists every problem found, not just the first.
    pub fn validate(&self) -> Result<()> {
        let mut problems = Vec::new();
        let mut keys = BTreeSet::new();
        let mut destinations = BTreeSet::new();
        for p in &self.papers {
            let who = if p.key.is_empty() { format!("paper {:?}", p.title) } else { format!("paper `{}`", p.key) };
            if !is_key(&p.key) {
                problems.push(format!("{who}: key must be non-empty lowercase letters, digits, '-' or '_'"));
            }
            if !keys.insert(p.key.as_str()) {
                problems.push(format!("{who}: duplicate key"));
            }
            if !destinations.insert((p.section.as_str(), p.milestone.as_str(), p.pdf_file.as_str())) {
                problems.push(format!("{who}: another paper already goes to {}", p.pdf_rel()));
            }
            for (name, value) in [
                ("short_name", &p.short_name),
                ("title", &p.title),
                ("venue", &p.venue),
                ("section", &p.section),
                ("milestone", &p.milestone),
                ("notebook", &p.notebook),
            ] {
                if value.trim().is_empty() {
                    problems.push(format!("{who}: `{name}` is empty"));
                }
            }
            if p.authors.is_empty() || p.authors.iter().any(|a| a.trim().is_empty()) {
                problems.push(format!("{who}: `authors` must list at least one non-empty name"));
            }
            if !(1900..=2100).contains(&p.year) {
                problems.push(format!("{who}: year {} is out of range", p.year));
            }
            for (name, value) in [("section", &p.section), ("milestone", &p.milestone)] {
                if !is_folder_name(value) {
                    problems.push(format!("{who}: `{name}` {value:?} is not a plain folder name"));
                }
            }
            if !is_folder_name(&p.pdf_file) || !p.pdf_file.ends_with(".pdf") {
                problems.push(format!("{who}: `pdf_file` {:?} must be a plain file name ending in .pdf", p.pdf_file));
            }
            if !p.notebook.ends_with(".ipynb") || !is_folder_name(&p.notebook) {
                problems.push(format!("{who}: `notebook` {:?} must be a file name ending in .ipynb", p.notebook));
            }
            for (name, url) in
                [("url", &p.url), ("pdf_url", &p.pdf_url)].into_iter().chain(p.mirrors.iter().map(|m| ("mirrors", m)))
            {
                if !(url.starts_with("https://") || url.starts_with("http://")) {
                    problems.push(format!("{who}: `{name}` {url:?} is not an http(s) URL"));
                }
            }
            if let Some(id) = &p.arxiv {
                if !is_arxiv_id(id) {
                    problems.push(format!("{who}: `arxiv` {id:?} is not a new-style arXiv id like 1706.03762"));
                }
            }
            if let Some(hash) = &p.sha256 {
                if !is_sha256(hash) {
                    problems.push(format!("{who}: `sha256` must be 64 lowercase hex digits"));
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            bail!("the papers catalog has {} problem(s):\n  {}", problems.len(), problems.join("\n  "))
        }
    }

    /// The distinct milestones, as `section/milestone`, in catalog order.
    pub fn milestones(&self) -> Vec<String> {
        let mut seen = BTreeSet::new();
        self.papers.iter().map(Paper::milestone_path).filter(|m| seen.insert(m.clone())).collect()
    }

    /// Renders the whole catalog as BibTeX, entries in catalog order. Deterministic, so the
    /// committed `papers/references.bib` can be compared with it byte for byte.
    pub fn to_bibtex(&self) -> String {
        let mut out = String::new();
        out.push_str("% The papers behind the dlhist notebooks.\n");
        out.push_str(
            "% Generated from papers/catalog.toml by `cargo xtask papers bib`; edit the catalog, not this file.\n",
        );
        for p in &self.papers {
            out.push('\n');
            out.push_str(&bibtex_entry(p));
        }
        out
    }
}

/// One BibTeX entry for `p`.
pub fn bibtex_entry(p: &Paper) -> String {
    let mut fields: Vec<(&str, String)> = Vec::new();
    let mut authors = p.authors.join(" and ");
    if p.et_al {
        // BibTeX's own spelling of "et al.": styles print it as such.
        authors.push_str(" and others");
    }
    fields.push(("author", authors));
    // Double braces keep the title's capitalization (styles otherwise lowercase it).
    fields.push(("title", format!("{{{}}}", p.title)));
    match p.kind {
        EntryKind::Article => fields.push(("journal", p.venue.clone())),
        EntryKind::Inproceedings | EntryKind::Incollection => fields.push(("booktitle", p.venue.clone())),
        // The style prints "Technical report" itself; the institution is the publisher.
        EntryKind::Techreport => fields.push(("institution", p.publisher.clone().unwrap_or_else(|| p.venue.clone()))),
        EntryKind::Misc => fields.push(("howpublished", p.venue.clone())),
    }
    fields.push(("year", p.venue_year.unwrap_or(p.year).to_string()));
    for (name, value) in [("volume", &p.volume), ("number", &p.number), ("pages", &p.pages), ("chapter", &p.chapter)] {
        if let Some(v) = value {
            fields.push((name, v.clone()));
        }
    }
    if p.kind != EntryKind::Techreport {
        if let Some(publisher) = &p.publisher {
            fields.push(("publisher", publisher.clone()));
        }
    }
    if let Some(doi) = &p.doi {
        fields.push(("doi", doi.clone()));
    }
    if let Some(id) = &p.arxiv {
        fields.push(("eprint", id.clone()));
        fields.push(("archiveprefix", "arXiv".to_string()));
    }
    fields.push(("url", p.url.clone()));
    if p.venue_year.is_some() {
        fields.push(("note", format!("First circulated in {}", p.year)));
    }

    let width = fields.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut s = String::new();
    let _ = writeln!(s, "@{}{{{},", p.kind.bibtex_name(), p.key);
    for (name, value) in &fields {
        // URLs and DOIs go verbatim (url/doi fields are read raw by biblatex and the url
        // package); everything else has its TeX specials escaped.
        let value = if matches!(*name, "url" | "doi") { value.clone() } else { escape_bibtex(value) };
        let _ = writeln!(s, "  {name:<width$} = {{{value}}},");
    }
    s.push_str("}\n");
    s
}

/// Escapes the characters TeX treats specially in a BibTeX value (`&`, `%`, `$`, `#`, `_`).
/// Braces are left alone: the catalog uses them only to protect capitalization.
pub fn escape_bibtex(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '&' | '%' | '$' | '#' | '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// True for a citation key: lowercase ASCII letters, digits, `-`, `_`.
fn is_key(key: &str) -> bool {
    !key.is_empty() && key.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// True for a single path component without separators or `..` (it must stay inside its folder).
fn is_folder_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\'])
        && name.bytes().all(|b| b.is_ascii_graphic())
}

/// True for a new-style arXiv id: `YYMM.NNNN` or `YYMM.NNNNN`.
fn is_arxiv_id(id: &str) -> bool {
    match id.split_once('.') {
        Some((yymm, num)) => {
            yymm.len() == 4
                && (4..=5).contains(&num.len())
                && yymm.bytes().all(|b| b.is_ascii_digit())
                && num.bytes().all(|b| b.is_ascii_digit())
        }
        None => false,
    }
}

/// True for 64 lowercase hex digits.
pub fn is_sha256(hash: &str) -> bool {
    hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: &str = r#"
[[paper]]
key = "doe2020thing"
short_name = "Thing"
title = "A Thing & Its Cost: 100% Better"
authors = ["Jane Doe", "John van der Roe"]
year = 2019
venue = "Proceedings of Things (ICT 2020)"
venue_year = 2020
kind = "inproceedings"
pages = "1--10"
url = "https://arxiv.org/abs/2001.00001"
pdf_url = "https://arxiv.org/pdf/2001.00001"
arxiv = "2001.00001"
section = "01-section"
milestone = "01-thing"
notebook = "02-thing.ipynb"
pdf_file = "01-thing.pdf"
"#;

    #[test]
    fn parses_and_renders_one_entry() {
        let c = Catalog::parse(ONE).unwrap();
        assert_eq!(c.papers.len(), 1);
        assert_eq!(c.papers[0].pdf_rel(), "notebooks/01-section/01-thing/01-thing.pdf");
        let bib = bibtex_entry(&c.papers[0]);
        assert!(bib.starts_with("@inproceedings{doe2020thing,\n"), "{bib}");
        assert!(bib.contains("author        = {Jane Doe and John van der Roe},"), "{bib}");
        assert!(bib.contains("title         = {{A Thing \\& Its Cost: 100\\% Better}},"), "{bib}");
        // The venue year wins for the citation; the first-release year goes to the note.
        assert!(bib.contains("year          = {2020},"), "{bib}");
        assert!(bib.contains("note          = {First circulated in 2019},"), "{bib}");
        assert!(bib.contains("eprint        = {2001.00001},"), "{bib}");
        assert!(bib.ends_with("}\n"));
    }

    #[test]
    fn et_al_becomes_and_others() {
        let mut c = Catalog::parse(ONE).unwrap();
        c.papers[0].et_al = true;
        assert!(bibtex_entry(&c.papers[0]).contains("{Jane Doe and John van der Roe and others}"));
    }

    #[test]
    fn duplicate_keys_and_destinations_are_reported_together() {
        let twice = format!("{ONE}\n{ONE}");
        let err = Catalog::parse(&twice).unwrap_err().to_string();
        assert!(err.contains("2 problem(s)"), "{err}");
        assert!(err.contains("duplicate key"), "{err}");
        assert!(err.contains("already goes to notebooks/01-section/01-thing/01-thing.pdf"), "{err}");
    }

    #[test]
    fn rejects_bad_fields() {
        let bad = ONE
            .replace("\"01-thing.pdf\"", "\"../escape.pdf\"")
            .replace("\"2001.00001\"\nsection", "\"hep-th/9901001\"\nsection")
            .replace("https://arxiv.org/pdf/2001.00001", "ftp://example.org/x.pdf");
        let err = Catalog::parse(&bad).unwrap_err().to_string();
        assert!(err.contains("`pdf_file` \"../escape.pdf\""), "{err}");
        assert!(err.contains("not a new-style arXiv id"), "{err}");
        assert!(err.contains("`pdf_url` \"ftp://example.org/x.pdf\" is not an http(s) URL"), "{err}");
    }

    #[test]
    fn unknown_fields_are_errors() {
        let err = format!("{:#}", Catalog::parse(&ONE.replace("short_name", "shortname")).unwrap_err());
        assert!(err.contains("shortname"), "{err}");
    }

    #[test]
    fn sha256_shape() {
        assert!(is_sha256(&"ab".repeat(32)));
        assert!(!is_sha256(&"AB".repeat(32)));
        assert!(!is_sha256("abc"));
    }
}
