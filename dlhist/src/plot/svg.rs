//! A small SVG writer: the handful of elements the figures draw, with numbers rounded to
//! two decimals (sub-pixel precision is invisible and would only bloat notebooks).
//!
//! The writer emits neither `id` attributes nor nested `<svg>` elements. Figures are combined
//! by [`Figure::grid`](super::Figure::grid) and inlined into pages side by side (nbconvert's
//! HTML export, the classic notebook), where a repeated id would make one figure's clip path
//! apply to another, and where page CSS such as JupyterLab's `svg { height: auto }` would
//! resize a nested `<svg>` viewport. Charts therefore clip their data themselves.

use std::fmt::{self, Write};

use super::{Rgb, FONT_FAMILY, TEXT_COLOR};

/// A number written with at most two decimals and no trailing zeros.
#[derive(Clone, Copy)]
pub(crate) struct N(pub f64);

impl fmt::Display for N {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = (self.0 * 100.0).round() / 100.0;
        // `-0` reads badly and costs a byte.
        let v = if v == 0.0 { 0.0 } else { v };
        let s = format!("{v:.2}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        f.write_str(s)
    }
}

/// Escapes the five XML special characters so user text (titles, class names) cannot break
/// the document.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Control characters are not allowed in XML 1.0 at all.
            c if (c as u32) < 0x20 && c != '\t' && c != '\n' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Estimated width in pixels of `text` at `size` px in a common sans-serif font.
///
/// SVG gives no way to measure text before a viewer lays it out, so layouts use per-character
/// widths close to DejaVu Sans (the widest of the usual sans-serif defaults): an overestimate
/// on Helvetica or Arial only leaves a little more room.
pub(crate) fn text_width(text: &str, size: f64) -> f64 {
    let em: f64 = text
        .chars()
        .map(|c| match c {
            'i' | 'j' | 'l' | '.' | ',' | ':' | ';' | '\'' | '|' | '!' => 0.3,
            ' ' | 'f' | 't' | 'r' | 'I' | '(' | ')' | '[' | ']' | '-' | '/' => 0.4,
            'm' | 'w' | 'M' | 'W' | '%' | '@' => 0.95,
            'A'..='Z' => 0.72,
            '0'..='9' => 0.64,
            c if c.is_ascii() => 0.6,
            // CJK and other wide scripts take roughly a full em.
            _ => 1.0,
        })
        .sum();
    em * size
}

/// Horizontal anchor of a text element.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Anchor {
    Start,
    Middle,
    End,
}

impl Anchor {
    fn as_str(self) -> &'static str {
        match self {
            Anchor::Start => "start",
            Anchor::Middle => "middle",
            Anchor::End => "end",
        }
    }
}

/// How a text element is drawn. `y` passed to [`Svg::text`] is the vertical *centre* of the
/// text: `dominant-baseline` is not honoured by every renderer, so the baseline is computed here.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TextStyle {
    pub size: f64,
    pub anchor: Anchor,
    pub bold: bool,
    /// Rotation in degrees around the anchor point (negative is counter-clockwise).
    pub rotate: f64,
    pub color: Rgb,
}

impl TextStyle {
    pub fn new(size: f64) -> Self {
        TextStyle { size, anchor: Anchor::Middle, bold: false, rotate: 0.0, color: TEXT_COLOR }
    }
    pub fn anchor(mut self, anchor: Anchor) -> Self {
        self.anchor = anchor;
        self
    }
    pub fn bold(mut self) -> Self {
        self.bold = true;
        self
    }
    pub fn rotate(mut self, degrees: f64) -> Self {
        self.rotate = degrees;
        self
    }
    pub fn color(mut self, color: Rgb) -> Self {
        self.color = color;
        self
    }
}

/// The root element's start tag of every document this writer makes. `font-family` on the
/// root is inherited by every `<text>`, so it is written once.
pub(crate) fn root_open(width: u32, height: u32) -> String {
    format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="{FONT_FAMILY}">"#
    )
}

/// An SVG document under construction.
pub(crate) struct Svg {
    buf: String,
}

impl Svg {
    /// Opens a `width` x `height` document on a white background.
    pub fn new(width: u32, height: u32) -> Self {
        let mut buf = String::with_capacity(16 * 1024);
        buf.push_str(&root_open(width, height));
        buf.push('\n');
        let _ =
            writeln!(buf, r#"<rect class="background" x="0" y="0" width="{width}" height="{height}" fill="white"/>"#);
        Svg { buf }
    }

    /// Appends raw markup (already escaped).
    pub fn raw(&mut self, markup: &str) {
        self.buf.push_str(markup);
    }

    /// Opens a `<g>` with the given (already formatted) attributes.
    pub fn open_group(&mut self, attrs: &str) {
        let _ = writeln!(self.buf, "<g {attrs}>");
    }

    pub fn close_group(&mut self) {
        self.buf.push_str("</g>\n");
    }

    /// A rectangle; `extra` holds further attributes (class, stroke...), may be empty.
    pub fn rect(&mut self, x: f64, y: f64, w: f64, h: f64, fill: &str, extra: &str) {
        let _ = writeln!(
            self.buf,
            r#"<rect x="{}" y="{}" width="{}" height="{}" fill="{fill}"{}{extra}/>"#,
            N(x),
            N(y),
            N(w.max(0.0)),
            N(h.max(0.0)),
            if extra.is_empty() { "" } else { " " }
        );
    }

    /// A straight line.
    pub fn line(&mut self, x1: f64, y1: f64, x2: f64, y2: f64, stroke: &str, width: f64) {
        let _ = writeln!(
            self.buf,
            r#"<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="{stroke}" stroke-width="{}"/>"#,
            N(x1),
            N(y1),
            N(x2),
            N(y2),
            N(width)
        );
    }

    /// A circle; `extra` holds further attributes, may be empty.
    pub fn circle(&mut self, cx: f64, cy: f64, r: f64, fill: &str, extra: &str) {
        let _ = writeln!(
            self.buf,
            r#"<circle cx="{}" cy="{}" r="{}" fill="{fill}"{}{extra}/>"#,
            N(cx),
            N(cy),
            N(r),
            if extra.is_empty() { "" } else { " " }
        );
    }

    /// An open polyline through `points` (pixel coordinates).
    pub fn polyline(&mut self, points: &[(f64, f64)], stroke: &str, width: f64, extra: &str) {
        let mut pts = String::with_capacity(points.len() * 12);
        for (i, (x, y)) in points.iter().enumerate() {
            if i > 0 {
                pts.push(' ');
            }
            let _ = write!(pts, "{},{}", N(*x), N(*y));
        }
        let _ = writeln!(
            self.buf,
            r#"<polyline points="{pts}" fill="none" stroke="{stroke}" stroke-width="{}" stroke-linejoin="round" stroke-linecap="round"{}{extra}/>"#,
            N(width),
            if extra.is_empty() { "" } else { " " }
        );
    }

    /// A text element centred vertically on `y` (see [`TextStyle`]); `extra` holds further
    /// attributes, may be empty.
    pub fn text(&mut self, x: f64, y: f64, text: &str, style: TextStyle, extra: &str) {
        // The baseline sits about 0.35 em below the visual centre of mixed-case text.
        let baseline = y + 0.35 * style.size;
        let mut attrs =
            format!(r#"x="{}" y="{}" font-size="{}" fill="{}""#, N(x), N(baseline), N(style.size), style.color.hex());
        if style.anchor != Anchor::Start {
            let _ = write!(attrs, r#" text-anchor="{}""#, style.anchor.as_str());
        }
        if style.bold {
            attrs.push_str(r#" font-weight="bold""#);
        }
        if style.rotate != 0.0 {
            // Rotate around the anchor point on the centre line, not the baseline, so rotated
            // labels stay centred on their tick.
            let _ = write!(attrs, r#" transform="rotate({} {} {})""#, N(style.rotate), N(x), N(y));
        }
        if !extra.is_empty() {
            attrs.push(' ');
            attrs.push_str(extra);
        }
        let _ = writeln!(self.buf, "<text {attrs}>{}</text>", escape(text));
    }

    /// Closes the document and returns its text.
    pub fn finish(mut self) -> String {
        self.buf.push_str("</svg>\n");
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_short() {
        assert_eq!(N(1.0).to_string(), "1");
        assert_eq!(N(1.5).to_string(), "1.5");
        assert_eq!(N(1.23456).to_string(), "1.23");
        assert_eq!(N(-0.001).to_string(), "0");
        assert_eq!(N(-2.5).to_string(), "-2.5");
    }

    #[test]
    fn escapes_markup() {
        assert_eq!(escape(r#"a<b & "c">"#), "a&lt;b &amp; &quot;c&quot;&gt;");
        assert_eq!(escape("tab\u{1}x"), "tab x");
    }

    #[test]
    fn text_width_grows_with_length_and_size() {
        assert!(text_width("loss", 12.0) < text_width("training loss", 12.0));
        assert!(text_width("loss", 12.0) < text_width("loss", 16.0));
        assert_eq!(text_width("", 12.0), 0.0);
    }

    #[test]
    fn document_is_well_formed() {
        let mut svg = Svg::new(100, 50);
        svg.rect(1.0, 2.0, 3.0, 4.0, "#ff0000", r#"class="x""#);
        svg.text(10.0, 10.0, "a < b", TextStyle::new(12.0).rotate(-90.0), "");
        svg.polyline(&[(0.0, 0.0), (1.0, 1.0)], "#000", 1.0, "");
        let text = svg.finish();
        let doc = roxmltree::Document::parse(&text).expect("valid XML");
        assert_eq!(doc.root_element().attribute("width"), Some("100"));
        assert_eq!(doc.descendants().filter(|n| n.has_tag_name("rect")).count(), 2);
        let t = doc.descendants().find(|n| n.has_tag_name("text")).expect("text element");
        assert_eq!(t.text(), Some("a < b"));
    }
}
