//! Untrusted text on its way to a terminal: names, messages and endpoints come from peers.

/// Whether `c` must never reach the terminal: control characters (C0, DEL, C1: escape
/// sequences, bells) and the bidirectional overrides and isolates (U+202A..U+202E,
/// U+2066..U+2069), which let a name or message reorder the text drawn after it.
pub fn is_unsafe(c: char) -> bool {
    c.is_control()
        || ('\u{202a}'..='\u{202e}').contains(&c)
        || ('\u{2066}'..='\u{2069}').contains(&c)
}

/// `s` without its unsafe characters, for printing outside the TUI (doctor, paths).
pub fn printable(s: &str) -> String {
    s.chars().filter(|c| !is_unsafe(*c)).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn printable_drops_escapes_and_bidi_overrides() {
        assert_eq!(super::printable("ev\x1b[2Jil\u{202e}x é"), "ev[2Jilx é");
    }
}
