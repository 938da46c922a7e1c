//! The invite and card codecs: round trips, every error kind, exhaustive typo and
//! truncation checks, and QR codes that decode back to the same text.

use lama_tui::ui::qr::{qr_half_blocks, qr_modules};

use lama_tui::domain::{Card, Code, CodeError, Invite};

use lama_tui::domain::codes::PREFIX;

fn invite() -> Code {
    Code::Invite(Invite {
        person_id: [0xab; 32],
        home: None,
        transport_key: [0x17; 32],
        token: [0x5c; 16],
        expires_at: 1_790_000_000,
        urls: vec![
            "ws://localhost:8765".into(),
            "ws://192.168.1.20:8765".into(),
        ],
    })
}

fn card() -> Code {
    Code::Card(Card {
        name: "démo@lama.local".into(),
        person_key: [3; 32],
        instance_id: [5; 32],
        transport_key: [4; 32],
        urls: vec![],
    })
}

#[test]
fn round_trip_and_forgiving_input() {
    for c in [invite(), card()] {
        let s = c.encode();
        assert!(s.starts_with(PREFIX));
        assert!(s
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()));
        assert_eq!(Code::decode(&s).unwrap(), c);
        // Lower case, wrapped by a chat app, with spaces and dashes.
        let lower = s.to_lowercase();
        assert_eq!(Code::decode(&lower).unwrap(), c);
        let wrapped: String = s
            .as_bytes()
            .chunks(20)
            .map(|ch| std::str::from_utf8(ch).unwrap())
            .collect::<Vec<_>>()
            .join("\n  ");
        assert_eq!(Code::decode(&format!("  {wrapped}\n")).unwrap(), c);
        let dashed: String = s
            .as_bytes()
            .chunks(5)
            .map(|ch| std::str::from_utf8(ch).unwrap())
            .collect::<Vec<_>>()
            .join("-");
        assert_eq!(Code::decode(&dashed).unwrap(), c);
    }
}

#[test]
fn every_error_kind() {
    let s = invite().encode();
    assert_eq!(Code::decode("   "), Err(CodeError::Empty));
    assert_eq!(Code::decode("hello world"), Err(CodeError::BadPrefix));
    let mut bad = s.clone();
    bad.push('!');
    assert_eq!(Code::decode(&bad), Err(CodeError::BadCharacter('!')));
    assert_eq!(Code::decode("LAMA1AB"), Err(CodeError::Truncated));
    // A valid checksum over a newer version byte.
    let mut p = vec![9u8, 1];
    p.extend_from_slice(&[0; 10]);
    let crc = crc32fast::hash(&p);
    p.extend_from_slice(&crc.to_be_bytes());
    let newer = format!("{PREFIX}{}", data_encoding::BASE32_NOPAD.encode(&p));
    assert_eq!(Code::decode(&newer), Err(CodeError::UnsupportedVersion(9)));
    // A valid checksum over garbage.
    let mut p = vec![1u8, 77, 0, 0];
    let crc = crc32fast::hash(&p);
    p.extend_from_slice(&crc.to_be_bytes());
    let junk = format!("{PREFIX}{}", data_encoding::BASE32_NOPAD.encode(&p));
    assert!(matches!(Code::decode(&junk), Err(CodeError::Malformed(_))));
    // Every message names the fix.
    for e in [
        CodeError::Checksum,
        CodeError::Truncated,
        CodeError::BadPrefix,
    ] {
        let m = e.to_string();
        assert!(m.contains("copy") || m.contains("LAMA1"), "{m}");
    }
}

#[test]
fn any_one_character_change_is_caught() {
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    for code in [invite(), card()] {
        let s = code.encode();
        let body_start = PREFIX.len();
        let mut checked = 0;
        for i in body_start..s.len() {
            for c in alphabet.chars() {
                if s.as_bytes()[i] as char == c {
                    continue;
                }
                let mut t = s.clone().into_bytes();
                t[i] = c as u8;
                let t = String::from_utf8(t).unwrap();
                let r = Code::decode(&t);
                assert!(r.is_err(), "change at {i} to {c} not caught");
                checked += 1;
            }
        }
        assert!(checked > 3000, "{checked}");
    }
}

#[test]
fn any_truncation_is_caught() {
    for code in [invite(), card()] {
        let s = code.encode();
        for n in 0..s.len() {
            let r = Code::decode(&s[..n]);
            assert!(r.is_err(), "truncation to {n} chars accepted");
        }
    }
}

/// Decode a module grid with rqrr.
fn decode_grid(width: usize, dark: impl Fn(usize, usize) -> bool) -> String {
    let scale = 4;
    let quiet = 4;
    let size = (width + 2 * quiet) * scale;
    let mut img = rqrr::PreparedImage::prepare_from_greyscale(size, size, |x, y| {
        let (mx, my) = (x / scale, y / scale);
        if mx < quiet || my < quiet || mx >= quiet + width || my >= quiet + width {
            return 255;
        }
        if dark(mx - quiet, my - quiet) {
            0
        } else {
            255
        }
    });
    let grids = img.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code expected");
    grids[0].decode().unwrap().1
}

#[test]
fn qr_code_decodes_to_the_same_text_and_stays_small() {
    let s = invite().encode();
    let (w, m) = qr_modules(&s).unwrap();
    assert!(w <= 57, "QR is {w} modules wide for {} chars", s.len());
    assert_eq!(decode_grid(w, |x, y| m[y * w + x]), s);

    // The half-block text rendering, read back cell by cell, is the same symbol.
    let quiet = 2;
    let lines = qr_half_blocks(w, &m, quiet);
    let cells: Vec<Vec<char>> = lines.iter().map(|l| l.chars().collect()).collect();
    let light = |x: usize, y: usize| {
        let ch = cells[y / 2][x];
        if y.is_multiple_of(2) {
            ch == '█' || ch == '▀'
        } else {
            ch == '█' || ch == '▄'
        }
    };
    let text = decode_grid(w, |x, y| !light(x + quiet, y + quiet));
    assert_eq!(text, s);
}
