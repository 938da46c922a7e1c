//! The benchmark's quick mode, so the benchmark code cannot rot: every figure is produced
//! and finite. (Timings are not asserted here: performance lives in the benchmark report.)

mod common;

#[test]
fn quick_benchmark_produces_every_figure() {
    let tmp = tempfile::tempdir().unwrap();
    // The upgrade stage makes its sled store with the helper and upgrades it through it.
    std::env::set_var("LAMA_SLED_EXPORT", common::sled_export());
    let bin = std::path::PathBuf::from(env!("CARGO_BIN_EXE_lama-tui"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (rows, json) = rt.block_on(lama_tui::bench::run_all(
        &lama_tui::bench::Sizes::quick(),
        tmp.path(),
        Some(&bin),
        |_| {},
    ));
    let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
    for want in [
        "ed25519 verify, single",
        "redb insert, durable commit every 128",
        "redb: open with 1000 entries",
        "upgrade of a 1000-entry sled store",
        "store size per 100-byte text entry",
        "fjall: open with 1000 entries",
        "WebSocket round trip p50 (200 B)",
        "pairing: accept to both connected",
        "live latency client→node→client p99",
        "catch-up of 1000 entries",
        "reconnect, nothing new, 500 held",
        "fan-out to 4 clients p99",
        "node RSS after a catch-up, 1000 entries",
        "render one frame, channel of 2000 messages",
        "command round trip during the flood p99",
    ] {
        assert!(
            names.contains(&want),
            "missing figure `{want}` in {names:?}"
        );
    }
    for r in &rows {
        assert!(
            r.stat.median.is_finite() && r.stat.median > 0.0,
            "{}: {:?}",
            r.name,
            r.stat
        );
    }
    let md = lama_tui::bench::markdown(&rows, "# quick");
    assert!(md.contains("| raw | ed25519 verify, single |"));
    assert_eq!(json["rows"].as_array().unwrap().len(), rows.len());
}
