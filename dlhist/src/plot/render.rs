//! What every figure draws with: plotters' SVG backend writing into a `String`, fonts sized in
//! pixels, text width estimates for the layouts plotters leaves to its caller, and PNG images
//! (encoded by the `png` crate, base64 by the `base64` crate) embedded as `data:` URIs.

use base64::Engine as _;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;

use super::{Rgb, FONT_FAMILY, TEXT_COLOR};
use crate::{Error, Result};

/// A figure's whole canvas.
pub(crate) type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
/// What plotters' drawing calls return on the SVG backend.
pub(crate) type DrawResult = std::result::Result<(), DrawingAreaErrorKind<std::io::Error>>;

/// plotters sizes fonts by line height and its SVG backend writes `font-size` as the requested
/// size divided by 1.24; requesting `px * 1.24` gives text `px` pixels high.
const PLOTTERS_FONT_SCALE: f64 = 1.24;

impl From<Rgb> for RGBColor {
    fn from(c: Rgb) -> RGBColor {
        RGBColor(c.0, c.1, c.2)
    }
}

/// The size to ask plotters for to get text `px` pixels high. For whole pixel sizes other
/// than 13 and 15 the backend's division gives back exactly `px`, so the documents say
/// `font-size="12"`, not `12.000000000000002`; the figures use only such sizes.
fn plotters_size(px: f64) -> f64 {
    px * PLOTTERS_FONT_SCALE
}

/// Text `px` pixels high in the figures' font stack and text colour.
pub(crate) fn font(px: f64) -> TextStyle<'static> {
    let style = FontDesc::new(FontFamily::Name(FONT_FAMILY), plotters_size(px), FontStyle::Normal);
    colored(style.into(), TEXT_COLOR)
}

/// Bold text `px` pixels high (titles, highlighted captions).
pub(crate) fn bold(px: f64) -> TextStyle<'static> {
    let style = FontDesc::new(FontFamily::Name(FONT_FAMILY), plotters_size(px), FontStyle::Bold);
    colored(style.into(), TEXT_COLOR)
}

/// `style` in `color`. (`TextStyle::color` borrows the colour for the style's lifetime.)
pub(crate) fn colored(mut style: TextStyle<'static>, color: Rgb) -> TextStyle<'static> {
    style.color = RGBColor::from(color).to_backend_color();
    style
}

/// Estimated width in pixels of `text` at `px` pixels in a common sans-serif font.
///
/// SVG gives no way to measure text before a viewer lays it out, and plotters' estimate without
/// its `ttf` feature counts bytes at a fixed width (too narrow for capitals and digits). Layout
/// decisions (label area sizes, rotation, cell sizes) use per-character widths close to DejaVu
/// Sans, the widest of the usual defaults, so an estimate errs on the side of room.
pub(crate) fn text_width(text: &str, px: f64) -> f64 {
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
    em * px
}

/// [`text_width`] for bold text (titles): bold glyphs of DejaVu Sans run about a tenth wider than regular ones, and a
/// title estimated at the regular width was clipped at both ends of a figure sized to fit it.
pub(crate) fn bold_text_width(text: &str, px: f64) -> f64 {
    text_width(text, px) * 1.12
}

/// Draws a `width` x `height` figure on a white canvas with plotters and returns the SVG
/// document. `what` names the figure in the error message if plotters fails.
pub(crate) fn render_svg(
    what: &str,
    (width, height): (u32, u32),
    draw: impl FnOnce(&Area<'_>) -> DrawResult,
) -> Result<String> {
    let mut buf = String::with_capacity(32 * 1024);
    {
        let root = SVGBackend::with_string(&mut buf, (width, height)).into_drawing_area();
        root.fill(&WHITE)
            .and_then(|()| draw(&root))
            .and_then(|()| root.present())
            .map_err(|e| Error::Plot(format!("{what}: drawing failed: {e}")))?;
    }
    Ok(buf)
}

/// Adds `markup` (already valid SVG) at the end of `svg`'s root element, on top of everything
/// plotters drew. Used for embedded images, which plotters' SVG backend can only write through
/// the `image` crate.
pub(crate) fn append_markup(svg: &mut String, markup: &str) -> Result<()> {
    let end = svg.rfind("</svg>").ok_or_else(|| Error::Plot("figure has no closing </svg> tag".into()))?;
    svg.insert_str(end, markup);
    Ok(())
}

/// Encodes `rgb` (row-major, 3 bytes per pixel) as a PNG `data:` URI.
pub(crate) fn png_data_uri(width: u32, height: u32, rgb: &[u8]) -> Result<String> {
    let fail = |e: png::EncodingError| Error::Plot(format!("cannot encode a {width}x{height} image as PNG: {e}"));
    let mut bytes = Vec::with_capacity(rgb.len() / 8 + 64);
    {
        let mut encoder = png::Encoder::new(&mut bytes, width, height);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        // Upscaled images repeat rows and pixels: adaptive filtering turns those repeats into
        // zeros (the Up and Sub filters), which deflate to almost nothing.
        encoder.set_filter(png::Filter::Adaptive);
        let mut writer = encoder.write_header().map_err(fail)?;
        writer.write_image_data(rgb).map_err(fail)?;
        writer.finish().map_err(fail)?;
    }
    Ok(format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(&bytes)))
}

/// An `<image>` element showing `uri` over the rectangle at (x, y), `w` x `h` pixels, with
/// sharp pixel edges when scaled.
pub(crate) fn image_element(x: i32, y: i32, w: i32, h: i32, uri: &str) -> String {
    format!(
        "<image x=\"{x}\" y=\"{y}\" width=\"{w}\" height=\"{h}\" preserveAspectRatio=\"none\" \
         style=\"image-rendering:pixelated\" href=\"{uri}\"/>\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plot::{CAPTION_SIZE, LABEL_SIZE, LEGEND_SIZE, TICK_SIZE, TITLE_SIZE};

    #[test]
    fn png_round_trips_through_base64() {
        let rgb: Vec<u8> = (0..2 * 3 * 3).map(|i| (i * 13) as u8).collect();
        let uri = png_data_uri(3, 2, &rgb).expect("encodes");
        let b64 = uri.strip_prefix("data:image/png;base64,").expect("prefix");
        let bytes = base64::engine::general_purpose::STANDARD.decode(b64).expect("base64");
        let mut reader = png::Decoder::new(std::io::Cursor::new(bytes)).read_info().expect("png header");
        let mut out = vec![0; reader.output_buffer_size().expect("size")];
        let info = reader.next_frame(&mut out).expect("frame");
        assert_eq!((info.width, info.height), (3, 2));
        assert_eq!(&out[..info.buffer_size()], rgb.as_slice());
        // A buffer that does not match the size is an error, not a panic.
        assert!(png_data_uri(3, 3, &rgb).is_err());
    }

    #[test]
    fn font_sizes_come_out_in_pixels() {
        let sizes = [7.0, 8.0, 10.0, 11.0, 12.0, 14.0];
        let svg = render_svg("t", (100, 50), |root| {
            for px in sizes {
                root.draw(&Text::new("hi", (10, 10), font(px)))?;
            }
            root.draw(&Text::new("bold", (10, 10), bold(TITLE_SIZE)))?;
            Ok(())
        })
        .expect("renders");
        let doc = roxmltree::Document::parse(&svg).expect("xml");
        let written: Vec<&str> =
            doc.descendants().filter(|n| n.has_tag_name("text")).filter_map(|n| n.attribute("font-size")).collect();
        assert_eq!(written, ["7", "8", "10", "11", "12", "14", "14"]);
        // Every size the figures use comes out exact.
        for px in [TITLE_SIZE, LABEL_SIZE, TICK_SIZE, LEGEND_SIZE, CAPTION_SIZE] {
            assert_eq!(plotters_size(px) / PLOTTERS_FONT_SCALE, px);
        }
        let t = doc.descendants().find(|n| n.has_tag_name("text")).expect("text");
        assert_eq!(t.attribute("font-family"), Some(FONT_FAMILY));
    }

    #[test]
    fn markup_goes_inside_the_root() {
        let mut svg = render_svg("t", (10, 10), |_| Ok(())).expect("renders");
        append_markup(&mut svg, &image_element(0, 0, 10, 10, "data:image/png;base64,AA==")).expect("appends");
        let doc = roxmltree::Document::parse(&svg).expect("xml");
        assert_eq!(doc.root_element().last_element_child().map(|n| n.tag_name().name()), Some("image"));
        assert!(append_markup(&mut String::from("<g/>"), "<g/>").is_err());
    }

    #[test]
    fn text_width_grows_with_length_and_size() {
        assert!(text_width("loss", 12.0) < text_width("training loss", 12.0));
        assert!(text_width("loss", 12.0) < text_width("loss", 16.0));
        assert_eq!(text_width("", 12.0), 0.0);
        assert!(bold_text_width("title", 16.0) > text_width("title", 16.0));
    }
}
