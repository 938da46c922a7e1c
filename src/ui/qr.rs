//! QR codes drawn in the terminal: the modules of a code's symbol, and half-block text.

/// The modules of a QR code (true = dark) for `text`, row-major, with its width.
/// Upper-case base32 codes fit alphanumeric mode, which keeps the symbol small.
pub fn qr_modules(text: &str) -> Result<(usize, Vec<bool>), qrcode::types::QrError> {
    let qr = qrcode::QrCode::with_error_correction_level(text.as_bytes(), qrcode::EcLevel::L)?;
    let w = qr.width();
    let modules = qr
        .to_colors()
        .into_iter()
        .map(|c| c == qrcode::Color::Dark)
        .collect();
    Ok((w, modules))
}

/// Render a QR code as text with Unicode half blocks, two module rows per line, with a
/// quiet zone of `quiet` modules. Light modules are the drawn ones (a terminal background is
/// usually dark), so the symbol reads as dark-on-light like a printed code.
pub fn qr_half_blocks(width: usize, modules: &[bool], quiet: usize) -> Vec<String> {
    let size = width + 2 * quiet;
    let light = |x: usize, y: usize| -> bool {
        if y >= size {
            return false; // below the symbol: background, not drawn
        }
        if x < quiet || y < quiet || x >= quiet + width || y >= quiet + width {
            return true;
        }
        !modules[(y - quiet) * width + (x - quiet)]
    };
    (0..size)
        .step_by(2)
        .map(|y| {
            (0..size)
                .map(|x| match (light(x, y), light(x, y + 1)) {
                    (true, true) => '█',
                    (true, false) => '▀',
                    (false, true) => '▄',
                    (false, false) => ' ',
                })
                .collect()
        })
        .collect()
}
