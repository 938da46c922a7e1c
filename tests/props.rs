//! Property tests over the same decoders the fuzz targets drive (`lama_tui::fuzzing`), so a
//! regression a fuzzer once found shows up in CI: random and mutated bytes never panic, and
//! every code and message survives its own encoding.

use lama_tui::domain::ShortCode;
use lama_tui::domain::{Card, Code, Invite};
use lama_tui::fuzzing;
use lama_tui::net::wire::{CloseCode, WireMsg};
use proptest::prelude::*;

/// Valid inputs of each decoder, to mutate: fuzz seeds from the repository.
fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut v: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("seeds in {}: {e}", dir.display()))
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no seeds in {}", dir.display());
    v
}

/// A seed with a few bytes overwritten, inserted or cut.
fn mutated(target: &'static str) -> impl Strategy<Value = Vec<u8>> {
    let seeds = seeds(target);
    (
        0..seeds.len(),
        prop::collection::vec((any::<u16>(), any::<u8>(), 0u8..3), 1..6),
    )
        .prop_map(move |(i, edits)| {
            let mut s = seeds[i].clone();
            for (at, byte, op) in edits {
                let at = if s.is_empty() {
                    0
                } else {
                    usize::from(at) % s.len()
                };
                match op {
                    0 if !s.is_empty() => s[at] = byte,
                    1 => s.insert(at, byte),
                    _ if !s.is_empty() => {
                        s.truncate(at);
                    }
                    _ => s.push(byte),
                }
            }
            s
        })
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..1024)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn frames_never_panic(b in bytes()) { fuzzing::frame(&b) }

    #[test]
    fn mutated_frames_never_panic(b in mutated("wire_frame")) { fuzzing::frame(&b) }

    #[test]
    fn handshake_messages_never_panic(b in bytes()) { fuzzing::handshake(&b) }

    #[test]
    fn mutated_handshake_messages_never_panic(b in mutated("handshake")) { fuzzing::handshake(&b) }

    #[test]
    fn typed_codes_never_panic(b in bytes()) { fuzzing::codes(&b) }

    #[test]
    fn mutated_codes_never_panic(b in mutated("codes")) { fuzzing::codes(&b) }

    #[test]
    fn code_like_text_never_panics(s in "(LAMA1)?[A-Z2-7 -]{0,300}|[0-9]{1,4}[- ][a-z]{0,9}[- ][a-z]{0,9}[- ][a-z]{0,9}( ws://[a-z:0-9]{0,20})?") {
        fuzzing::codes(s.as_bytes())
    }

    #[test]
    fn sync_messages_never_panic(b in bytes()) { fuzzing::sync(&b) }

    #[test]
    fn mutated_sync_messages_never_panic(b in mutated("sync_msg")) { fuzzing::sync(&b) }

    #[test]
    fn headless_lines_never_panic(b in bytes()) { fuzzing::headless(&b) }

    #[test]
    fn mutated_headless_lines_never_panic(b in mutated("headless_line")) { fuzzing::headless(&b) }

    #[test]
    fn store_values_never_panic(b in bytes()) { fuzzing::store_value(&b) }

    #[test]
    fn mutated_store_values_never_panic(b in mutated("store_value")) { fuzzing::store_value(&b) }

    #[test]
    fn invites_and_cards_survive_their_encoding(
        person_id in any::<[u8; 32]>(),
        home in any::<Option<[u8; 32]>>(),
        key in any::<[u8; 32]>(),
        token in any::<[u8; 16]>(),
        expires_at in any::<u64>(),
        urls in prop::collection::vec("wss?://[a-z0-9.]{1,40}:[0-9]{1,5}", 0..4),
        name in "[a-z0-9.@-]{1,60}",
    ) {
        let inv = Code::Invite(Invite { person_id, home, transport_key: key, token, expires_at, urls: urls.clone() });
        prop_assert_eq!(Code::decode(&inv.encode()), Ok(inv.clone()));
        // Case and separators do not matter to a reader.
        let loose = inv.encode().to_lowercase().chars().collect::<Vec<_>>()
            .chunks(7).map(|c| c.iter().collect::<String>()).collect::<Vec<_>>().join("-");
        prop_assert_eq!(Code::decode(&loose), Ok(inv));
        let card = Code::Card(Card { name, person_key: key, instance_id: person_id, transport_key: key, urls });
        prop_assert_eq!(Code::decode(&card.encode()), Ok(card));
    }

    #[test]
    fn short_codes_survive_their_text(slot in 1u16..=999, words in any::<[u8; 3]>()) {
        let c = ShortCode::new(slot, words);
        prop_assert_eq!(ShortCode::parse(&c.reveal()), Ok(c.clone()));
        prop_assert_eq!(ShortCode::parse(&c.reveal().replace('-', "  ").to_uppercase()), Ok(c));
    }

    #[test]
    fn messages_survive_their_encoding(n in any::<u64>(), reason in ".{0,300}") {
        for m in [WireMsg::Ping { n }, WireMsg::Pong { n }, WireMsg::Close { code: CloseCode::CodeMismatch, reason: reason.clone() }] {
            prop_assert_eq!(WireMsg::decode(&m.encode().unwrap()), Ok(m));
        }
    }
}

/// The store_value seeds are real values (one compact, one JSON), so mutation starts from
/// inputs that decode.
#[test]
fn store_value_seeds_decode() {
    for seed in seeds("store_value") {
        let r = lama_tui::store::codec::decode(
            "g-000102030405060708090a0b0c0d0e0f",
            "8fe5dc13875dbb14a2048b6148161be7fd980093502e62973c4ff09c0192d0be",
            u64::from(seed[0]),
            &seed[1..],
        );
        assert!(r.is_ok(), "{r:?}");
    }
}
