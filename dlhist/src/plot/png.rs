//! A minimal PNG encoder (8-bit RGB, no interlacing) and base64, for images embedded in SVG as
//! `data:` URIs.
//!
//! PNG is a signature followed by chunks (length, type, data, CRC-32); the pixels go in one
//! IDAT chunk as a zlib stream of rows, each prefixed by a filter byte (PNG specification,
//! W3C 2003, sections 5 and 9). The zlib stream and the CRC come from `flate2`, which dlhist
//! already depends on, so embedding images costs no extra crate.

use std::io::Write;

use flate2::write::ZlibEncoder;
use flate2::{Compression, Crc};

use crate::{Error, Result};

const SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n'];

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    // The CRC covers the chunk type and data, not the length.
    let mut crc = Crc::new();
    crc.update(kind);
    crc.update(data);
    out.extend_from_slice(&crc.sum().to_be_bytes());
}

/// Encodes `rgb` (row-major, 3 bytes per pixel) as a PNG image of `width` x `height` pixels.
pub(crate) fn encode_rgb(width: u32, height: u32, rgb: &[u8]) -> Result<Vec<u8>> {
    let stride = width as usize * 3;
    if width == 0 || height == 0 || rgb.len() != stride * height as usize {
        return Err(Error::Plot(format!(
            "PNG encoder: {} bytes do not make a {width}x{height} RGB image ({} expected)",
            rgb.len(),
            stride * height as usize
        )));
    }
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    // Bit depth 8, colour type 2 (RGB), deflate, standard filtering, no interlace.
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);

    let mut z = ZlibEncoder::new(Vec::with_capacity(rgb.len() / 4), Compression::default());
    let mut filtered = vec![0u8; stride + 1];
    for (r, row) in rgb.chunks_exact(stride).enumerate() {
        let prev = (r > 0).then(|| &rgb[(r - 1) * stride..r * stride]);
        if prev == Some(row) {
            // Filter 2 (Up): a repeated row becomes all zeros. Images are upscaled by
            // repeating rows, so this is the common case and compresses to almost nothing.
            filtered[0] = 2;
            filtered[1..].fill(0);
        } else {
            // Filter 1 (Sub): each byte minus the same channel of the pixel to its left, so
            // runs of equal pixels (horizontal upscaling, flat backgrounds) become zeros.
            filtered[0] = 1;
            for i in 0..stride {
                let left = if i >= 3 { row[i - 3] } else { 0 };
                filtered[i + 1] = row[i].wrapping_sub(left);
            }
        }
        z.write_all(&filtered).map_err(|e| Error::Plot(format!("PNG encoder: compression failed: {e}")))?;
    }
    let idat = z.finish().map_err(|e| Error::Plot(format!("PNG encoder: compression failed: {e}")))?;

    let mut out = Vec::with_capacity(idat.len() + 64);
    out.extend_from_slice(&SIGNATURE);
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &idat);
    chunk(&mut out, b"IEND", &[]);
    Ok(out)
}

/// Standard base64 (RFC 4648, with padding).
pub(crate) fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let b = [group[0], group.get(1).copied().unwrap_or(0), group.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= group.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A PNG `data:` URI for an RGB image.
pub(crate) fn data_uri(width: u32, height: u32, rgb: &[u8]) -> Result<String> {
    Ok(format!("data:image/png;base64,{}", base64(&encode_rgb(width, height, rgb)?)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// Decodes what `encode_rgb` writes (Sub and Up filters only) back to pixels.
    fn decode(png: &[u8]) -> (u32, u32, Vec<u8>) {
        assert_eq!(&png[..8], &SIGNATURE);
        let mut pos = 8;
        let (mut w, mut h, mut idat) = (0, 0, Vec::new());
        while pos < png.len() {
            let len = u32::from_be_bytes(png[pos..pos + 4].try_into().expect("4 bytes")) as usize;
            let kind = &png[pos + 4..pos + 8];
            let data = &png[pos + 8..pos + 8 + len];
            let crc = u32::from_be_bytes(png[pos + 8 + len..pos + 12 + len].try_into().expect("4 bytes"));
            let mut c = Crc::new();
            c.update(kind);
            c.update(data);
            assert_eq!(c.sum(), crc, "CRC of {:?}", std::str::from_utf8(kind));
            match kind {
                b"IHDR" => {
                    w = u32::from_be_bytes(data[0..4].try_into().expect("4 bytes"));
                    h = u32::from_be_bytes(data[4..8].try_into().expect("4 bytes"));
                    assert_eq!(&data[8..], &[8, 2, 0, 0, 0]);
                }
                b"IDAT" => idat.extend_from_slice(data),
                b"IEND" => assert_eq!(len, 0),
                other => panic!("unexpected chunk {other:?}"),
            }
            pos += 12 + len;
        }
        let mut raw = Vec::new();
        flate2::read::ZlibDecoder::new(&idat[..]).read_to_end(&mut raw).expect("zlib");
        let stride = w as usize * 3;
        let mut pixels = vec![0u8; stride * h as usize];
        for r in 0..h as usize {
            let line = &raw[r * (stride + 1)..(r + 1) * (stride + 1)];
            for i in 0..stride {
                let v = match line[0] {
                    1 => line[i + 1].wrapping_add(if i >= 3 { pixels[r * stride + i - 3] } else { 0 }),
                    2 => line[i + 1].wrapping_add(if r > 0 { pixels[(r - 1) * stride + i] } else { 0 }),
                    f => panic!("unexpected filter {f}"),
                };
                pixels[r * stride + i] = v;
            }
        }
        (w, h, pixels)
    }

    #[test]
    fn png_round_trips() {
        let (w, h) = (5u32, 4u32);
        let mut rgb = Vec::new();
        for y in 0..h {
            for x in 0..w {
                // Rows 1 and 2 equal, to exercise the Up filter.
                let yy = if y == 2 { 1 } else { y };
                rgb.extend_from_slice(&[(x * 50) as u8, (yy * 60) as u8, 200]);
            }
        }
        let png = encode_rgb(w, h, &rgb).expect("encodes");
        assert_eq!(decode(&png), (w, h, rgb));
        // The IEND chunk's CRC is a constant of the format.
        assert_eq!(&png[png.len() - 4..], &[0xae, 0x42, 0x60, 0x82]);
    }

    #[test]
    fn png_rejects_wrong_sizes() {
        assert!(encode_rgb(2, 2, &[0; 11]).is_err());
        assert!(encode_rgb(0, 2, &[]).is_err());
    }

    #[test]
    fn base64_matches_rfc4648_vectors() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }
}
