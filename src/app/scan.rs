//! Reading a code back from a picture of its QR symbol (a screenshot file or a clipboard
//! image): what `accept` with `qr_image` and the accept dialog's Ctrl-V use.

use crate::domain::codes::{Code, ScanError};

/// Read a lama-tui code from a greyscale image (`luma` row-major, `w`×`h`).
pub fn scan_luma(w: usize, h: usize, luma: &[u8]) -> Result<String, ScanError> {
    let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| luma[y * w + x]);
    let mut last = ScanError::NoQr;
    for grid in img.detect_grids() {
        let Ok((_, text)) = grid.decode() else {
            continue;
        };
        match Code::decode(&text) {
            Ok(_) => return Ok(text.trim().to_ascii_uppercase()),
            Err(e) => last = ScanError::NotACode(e),
        }
    }
    Err(last)
}

/// Read a lama-tui code from a PNG or JPEG file.
pub fn scan_file(path: &std::path::Path) -> Result<String, ScanError> {
    let img =
        image::open(path).map_err(|e| ScanError::Unreadable(format!("{}: {e}", path.display())))?;
    let luma = img.to_luma8();
    scan_luma(luma.width() as usize, luma.height() as usize, luma.as_raw())
}

/// Read a lama-tui code from RGBA pixels (a clipboard image).
pub fn scan_rgba(w: usize, h: usize, rgba: &[u8]) -> Result<String, ScanError> {
    if rgba.len() < w * h * 4 {
        return Err(ScanError::Unreadable("clipboard image".into()));
    }
    let luma: Vec<u8> = rgba
        .chunks_exact(4)
        .map(|p| {
            ((u32::from(p[0]) * 299 + u32::from(p[1]) * 587 + u32::from(p[2]) * 114) / 1000) as u8
        })
        .collect();
    scan_luma(w, h, &luma)
}
