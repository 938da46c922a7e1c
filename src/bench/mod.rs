//! Benchmarks: the app's figures beside the raw limits of the same machine, measured in the
//! same run, reported as ratios. Driven by `lama-bench` (full or `--quick`); the test suite
//! runs the quick mode as a smoke test so this code cannot rot.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

mod engines;
mod flood;
mod raw;
mod stages;
mod wan;

/// Sizes of one benchmark run.
#[derive(Clone, Debug)]
pub struct Sizes {
    /// Repetitions of each measurement (min/median/max over them).
    pub runs: usize,
    /// Signatures verified for the raw limit.
    pub verify_n: usize,
    /// Records inserted for the raw limit.
    pub insert_n: usize,
    /// Round trips for the WebSocket limit.
    pub rtt_n: usize,
    /// Live messages measured.
    pub live_n: usize,
    /// Entries for the catch-up measurement.
    pub catchup_n: usize,
    /// History sizes for the reconnect-cost measurement.
    pub reconnect_sizes: Vec<usize>,
    /// Clients for the fan-out measurement.
    pub fanout_clients: usize,
    /// Messages for the fan-out measurement.
    pub fanout_msgs: usize,
    /// Entries held for the memory and start-up measurement.
    pub memory_n: usize,
    /// Messages in the channel for the render measurement.
    pub render_n: usize,
    /// Channels one contact floods a node with.
    pub flood_channels: usize,
}

impl Sizes {
    /// The full run (issue targets).
    pub fn full() -> Sizes {
        Sizes {
            runs: 3,
            verify_n: 20_000,
            insert_n: 50_000,
            rtt_n: 2_000,
            live_n: 300,
            catchup_n: 100_000,
            reconnect_sizes: vec![10_000, 100_000, 1_000_000],
            fanout_clients: 100,
            fanout_msgs: 20,
            memory_n: 1_000_000,
            render_n: 100_000,
            flood_channels: 20_000,
        }
    }

    /// A few seconds: the smoke test.
    pub fn quick() -> Sizes {
        Sizes {
            runs: 1,
            verify_n: 500,
            insert_n: 1_000,
            rtt_n: 100,
            live_n: 20,
            catchup_n: 1_000,
            reconnect_sizes: vec![500],
            fanout_clients: 4,
            fanout_msgs: 3,
            memory_n: 1_000,
            render_n: 2_000,
            flood_channels: 300,
        }
    }
}

/// min / median / max of samples.
#[derive(Clone, Debug, PartialEq)]
pub struct Stat {
    /// Smallest.
    pub min: f64,
    /// Median.
    pub median: f64,
    /// Largest.
    pub max: f64,
}

impl Stat {
    /// From samples (at least one).
    pub fn of(mut v: Vec<f64>) -> Stat {
        v.sort_by(|a, b| a.total_cmp(b));
        if v.is_empty() {
            return Stat {
                min: f64::NAN,
                median: f64::NAN,
                max: f64::NAN,
            };
        }
        Stat {
            min: v[0],
            median: v[v.len() / 2],
            max: v[v.len() - 1],
        }
    }
}

/// A percentile of samples.
pub fn pct(v: &[f64], p: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

/// One row of the report.
#[derive(Clone, Debug)]
pub struct Row {
    /// Section.
    pub group: &'static str,
    /// What.
    pub name: String,
    /// Unit.
    pub unit: &'static str,
    /// Value over runs.
    pub stat: Stat,
    /// Target, as text (empty for raw limits).
    pub target: String,
    /// Ratio to a raw limit, as text.
    pub ratio: String,
}

impl Row {
    /// The row with its target.
    fn with_target(mut self, target: impl Into<String>) -> Row {
        self.target = target.into();
        self
    }

    /// The row with its ratio to a raw limit.
    fn with_ratio(mut self, ratio: impl Into<String>) -> Row {
        self.ratio = ratio.into();
        self
    }
}

fn row(group: &'static str, name: impl Into<String>, unit: &'static str, v: Vec<f64>) -> Row {
    Row {
        group,
        name: name.into(),
        unit,
        stat: Stat::of(v),
        target: String::new(),
        ratio: String::new(),
    }
}

fn fmt(v: f64) -> String {
    if v.is_nan() {
        "n/a".into()
    } else if v >= 1000.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// Run everything; returns the rows and the JSON report.
pub async fn run_all(
    sizes: &Sizes,
    tmp: &Path,
    bin: Option<&Path>,
    progress: impl FnMut(&str),
) -> (Vec<Row>, Value) {
    run_some(sizes, tmp, bin, None, progress).await
}

/// The raw limits every ratio is taken against (medians of the runs).
struct Raw {
    verify_batched: f64,
    insert: f64,
    rtt: f64,
    durable: f64,
}

/// The raw limits, then only the stage named `only` (`engines`, `migration`, `pairing`, `live`, `wan`,
/// `catchup`, `reconnect`, `fanout`, `memory`, `render`, `flood`), or every stage: for
/// profiling one stage.
pub async fn run_some(
    sizes: &Sizes,
    tmp: &Path,
    bin: Option<&Path>,
    only: Option<&str>,
    mut progress: impl FnMut(&str),
) -> (Vec<Row>, Value) {
    let on = |stage: &str| only.is_none_or(|o| o == stage);
    progress("raw limits");
    let (mut rows, raw) = raw_rows(sizes, tmp).await;
    if on("engines") {
        progress("storage engines: redb and fjall");
        rows.extend(engine_rows(sizes, tmp));
    }
    if on("migration") {
        progress("upgrade of a sled store");
        rows.extend(migration_rows(sizes, tmp));
    }
    if on("pairing") {
        progress("pairing");
        rows.extend(pairing_rows(sizes, tmp, &raw).await);
    }
    if on("live") {
        progress("live latency");
        rows.extend(live_rows(sizes, tmp, &raw).await);
    }
    if on("wan") {
        progress("two machines across 20 ms links");
        rows.extend(wan::rows(sizes, tmp).await);
    }
    if on("catchup") {
        progress("catch-up");
        rows.extend(catchup_rows(sizes, tmp, &raw).await);
    }
    if on("reconnect") {
        progress("reconnect cost");
        for &held in &sizes.reconnect_sizes {
            rows.extend(reconnect_rows(tmp, held, &raw).await);
        }
    }
    if on("fanout") {
        progress("fan-out");
        rows.extend(fanout_rows(sizes, tmp, &raw).await);
    }
    if let (Some(bin), true) = (bin, on("memory")) {
        progress("memory and start-up");
        rows.extend(memory_rows(sizes, tmp, bin).await);
    }
    if on("render") {
        progress("rendering");
        rows.extend(render_rows(sizes));
    }
    if on("flood") {
        progress("flood by one contact");
        rows.extend(flood_rows(sizes, tmp, &raw).await);
    }
    let json = json!({
        "rows": rows.iter().map(|r| json!({
            "group": r.group, "name": r.name, "unit": r.unit,
            "min": r.stat.min, "median": r.stat.median, "max": r.stat.max,
            "target": r.target, "ratio": r.ratio,
        })).collect::<Vec<_>>(),
    });
    (rows, json)
}

async fn raw_rows(sizes: &Sizes, tmp: &Path) -> (Vec<Row>, Raw) {
    let (mut vs, mut vb, mut ins, mut rtt50, mut rtt99, mut ows) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    let mut dw = vec![];
    for i in 0..sizes.runs {
        let (a, b) = raw::raw_verify(sizes.verify_n);
        vs.push(a);
        vb.push(b);
        let dir = tmp.join(format!("raw{i}"));
        ins.push(raw::raw_insert(sizes.insert_n, &dir));
        dw.push(raw::raw_durable_write((sizes.rtt_n / 4).max(20), &dir));
        let (p50, p99, rate) = raw::raw_ws(sizes.rtt_n).await;
        rtt50.push(p50);
        rtt99.push(p99);
        ows.push(rate);
    }
    let raw = Raw {
        verify_batched: Stat::of(vb.clone()).median,
        insert: Stat::of(ins.clone()).median,
        rtt: Stat::of(rtt50.clone()).median,
        durable: Stat::of(dw.clone()).median,
    };
    let rows = vec![
        row("raw", "ed25519 verify, single", "1/s", vs),
        row("raw", "ed25519 verify, batched (128)", "1/s", vb),
        row("raw", "redb insert, durable commit every 128", "1/s", ins),
        row("raw", "durable small write (insert + flush) p50", "ms", dw),
        row("raw", "WebSocket round trip p50 (200 B)", "ms", rtt50),
        row("raw", "WebSocket round trip p99 (200 B)", "ms", rtt99),
        row("raw", "WebSocket one-way 200 B messages", "1/s", ows),
    ];
    (rows, raw)
}

/// redb and fjall doing the same work, as the store would use them (the choice of engine
/// in README rests on these figures).
fn engine_rows(sizes: &Sizes, tmp: &Path) -> Vec<Row> {
    let (n, single, open) = (sizes.insert_n, (sizes.rtt_n / 4).max(20), sizes.memory_n);
    let mut out = Vec::new();
    for name in ["redb", "fjall"] {
        let (mut b, mut s, mut o, mut bytes) = (vec![], vec![], vec![], vec![]);
        for i in 0..sizes.runs {
            let dir = tmp.join(format!("engine-{name}-{i}"));
            let f = match name {
                "redb" => engines::figures::<engines::Redb>(n, single, open, &dir),
                _ => engines::figures::<engines::Fjall>(n, single, open, &dir),
            };
            let _ = std::fs::remove_dir_all(&dir);
            b.push(f.batched);
            s.push(f.single_ms);
            o.push(f.open_ms);
            bytes.push(f.bytes_per_entry);
        }
        out.push(row(
            "engines",
            format!("{name}: durable inserts, 128 per commit"),
            "1/s",
            b,
        ));
        out.push(row(
            "engines",
            format!("{name}: durable single write p50"),
            "ms",
            s,
        ));
        out.push(row(
            "engines",
            format!("{name}: open with {open} entries"),
            "ms",
            o,
        ));
        out.push(row(
            "engines",
            format!("{name}: disk per 400-byte entry"),
            "B",
            bytes,
        ));
    }
    out
}

/// The one-time upgrade from sled, and what the new store holds per entry.
fn migration_rows(sizes: &Sizes, tmp: &Path) -> Vec<Row> {
    let n = sizes.catchup_n;
    let (mut rate, mut bytes) = (vec![], vec![]);
    for _ in 0..sizes.runs {
        let Some((r, b)) = engines::migration(tmp, n) else {
            eprintln!(
                "lama-bench: upgrade not measured: {} is not installed (cargo install --locked --path tools/sled-export)",
                crate::store::migrate::HELPER
            );
            return vec![];
        };
        rate.push(r);
        bytes.push(b);
    }
    vec![
        row(
            "app",
            format!("upgrade of a {n}-entry sled store"),
            "1/s",
            rate,
        )
        .with_target("> 20,000/s"),
        row("app", "store size per 100-byte text entry", "B", bytes).with_target("< 300 B"),
    ]
}

async fn pairing_rows(sizes: &Sizes, tmp: &Path, raw: &Raw) -> Vec<Row> {
    let mut p = vec![];
    for i in 0..sizes.runs {
        p.push(stages::bench_pairing(tmp, i).await);
    }
    let x = row("app", "pairing: accept to both connected", "ms", p);
    let ratio = format!("{:.1}x RTT", x.stat.median / raw.rtt);
    vec![x.with_target("median < 10 ms").with_ratio(ratio)]
}

async fn live_rows(sizes: &Sizes, tmp: &Path, raw: &Raw) -> Vec<Row> {
    let live = stages::bench_live(tmp, sizes.live_n).await;
    let (l50, l99) = (pct(&live, 0.5), pct(&live, 0.99));
    let floor = 2.0 * raw.durable + 2.0 * raw.rtt;
    let ratio50 = format!(
        "{:.1}x RTT; {:.2}x the floor 2 durable writes + 2 RTT",
        l50 / raw.rtt,
        l50 / floor
    );
    vec![
        row(
            "app",
            "live latency client→node→client p50",
            "ms",
            vec![l50],
        )
        .with_target("< 1 ms")
        .with_ratio(ratio50),
        row(
            "app",
            "live latency client→node→client p99",
            "ms",
            vec![l99],
        )
        .with_target("< 3 ms")
        .with_ratio(format!("{:.1}x RTT", l99 / raw.rtt)),
    ]
}

async fn catchup_rows(sizes: &Sizes, tmp: &Path, raw: &Raw) -> Vec<Row> {
    let mut c = vec![];
    for i in 0..sizes.runs {
        c.push(stages::bench_catchup(tmp, sizes.catchup_n, i).await);
    }
    // The limits a receiver cannot beat: checking signatures in batches, and durable
    // batched inserts.
    let limit = raw.verify_batched.min(raw.insert);
    let name = format!("catch-up of {} entries", sizes.catchup_n);
    let x = row("app", name, "1/s", c);
    let ratio = format!(
        "{:.2}x of min(batched verify, durable batched insert)",
        x.stat.median / limit
    );
    let target = format!(">= {:.0}/s (0.6x the lower raw limit)", limit * 0.6);
    vec![x.with_target(target).with_ratio(ratio)]
}

async fn reconnect_rows(tmp: &Path, held: usize, raw: &Raw) -> Vec<Row> {
    let res = stages::bench_reconnect(tmp, held, 10).await;
    let (quiet, catchup) = (res[0], res[1]);
    vec![
        row(
            "app",
            format!("reconnect, nothing new, {held} held"),
            "bytes",
            vec![quiet.0 as f64],
        )
        .with_target("< 1 KiB, flat"),
        row(
            "app",
            format!("reconnect to synced, nothing new, {held} held"),
            "ms",
            vec![quiet.1],
        )
        .with_target("< 5 ms")
        .with_ratio(format!("{:.1}x RTT", quiet.1 / raw.rtt)),
        row(
            "app",
            format!("restart and catch up 10 new, {held} held"),
            "bytes",
            vec![catchup.0 as f64],
        )
        .with_ratio(format!(
            "+{} B over nothing new",
            catchup.0 as i64 - quiet.0 as i64
        )),
        row(
            "app",
            format!("client restart to synced, 10 new, {held} held"),
            "ms",
            vec![catchup.1],
        ),
    ]
}

async fn fanout_rows(sizes: &Sizes, tmp: &Path, raw: &Raw) -> Vec<Row> {
    let k = sizes.fanout_clients;
    let fan = stages::bench_fanout(tmp, k, sizes.fanout_msgs).await;
    let p99 = pct(&fan, 0.99);
    vec![
        row(
            "app",
            format!("fan-out to {k} clients p99"),
            "ms",
            vec![p99],
        )
        .with_target("p99 < 20 ms")
        .with_ratio(format!("{:.1}x RTT", p99 / raw.rtt)),
        row(
            "app",
            format!("fan-out to {k} clients p50"),
            "ms",
            vec![pct(&fan, 0.5)],
        ),
    ]
}

async fn flood_rows(sizes: &Sizes, tmp: &Path, raw: &Raw) -> Vec<Row> {
    let n = sizes.flood_channels;
    let f = flood::bench_flood(tmp, n).await;
    let quota = crate::net::sync::QUOTA_CHANNELS as usize;
    let p99 = pct(&f.command_ms, 0.99);
    let refill_rate = f.refilled as f64 / (f.refill_ms / 1e3);
    vec![
        row(
            "flood",
            format!(
                "{n} channels pushed by one contact ({} entries): channels held",
                f.pushed
            ),
            "channels",
            vec![f.channels_held as f64],
        )
        .with_target(format!("<= {} (quota + the 1:1)", quota + 1))
        .with_ratio(format!("{} refused as quota", f.over_quota)),
        row(
            "flood",
            "command round trip during the flood p99",
            "ms",
            vec![p99],
        )
        .with_target("p99 < 50 ms")
        .with_ratio(format!("{:.1}x RTT", p99 / raw.rtt)),
        row(
            "flood",
            "command round trip during the flood p50",
            "ms",
            vec![pct(&f.command_ms, 0.5)],
        ),
        row(
            "flood",
            format!("refill after an empty have ({} entries)", f.refilled),
            "ms",
            vec![f.refill_ms],
        )
        .with_target("bounded by the quota")
        .with_ratio(format!("{:.2}x raw insert", refill_rate / raw.insert)),
    ]
}

async fn memory_rows(sizes: &Sizes, tmp: &Path, bin: &Path) -> Vec<Row> {
    let n = sizes.memory_n;
    let (ready, rss0, rss1) = stages::bench_memory(tmp, bin, n).await;
    vec![
        row(
            "app",
            format!("start to ready, {n} entries"),
            "ms",
            vec![ready],
        )
        .with_target("< 100 ms"),
        row(
            "app",
            format!("node RSS after start, {n} entries"),
            "MiB",
            vec![rss0],
        )
        .with_target("< 100 MB"),
        row(
            "app",
            format!("node RSS after a catch-up, {n} entries"),
            "MiB",
            vec![rss1],
        )
        .with_target("< 100 MB"),
    ]
}

fn render_rows(sizes: &Sizes) -> Vec<Row> {
    let (mut fr, mut bu) = (vec![], vec![]);
    for _ in 0..sizes.runs {
        let (f, b) = stages::bench_render(sizes.render_n);
        fr.push(f);
        bu.push(b);
    }
    let n = sizes.render_n;
    vec![
        row(
            "app",
            format!("render one frame, channel of {n} messages"),
            "ms",
            fr,
        )
        .with_target("< 1 ms"),
        row(
            "app",
            format!("apply and draw a burst of {n} messages"),
            "ms",
            bu,
        ),
    ]
}

/// The report as a Markdown table.
pub fn markdown(rows: &[Row], header: &str) -> String {
    let mut s = format!("{header}\n\n| group | measure | unit | min | median | max | target | ratio |\n|---|---|---|---:|---:|---:|---|---|\n");
    for r in rows {
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.group,
            r.name,
            r.unit,
            fmt(r.stat.min),
            fmt(r.stat.median),
            fmt(r.stat.max),
            r.target,
            r.ratio
        ));
    }
    s
}

/// The machine, for the report header.
pub fn machine() -> String {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .next()
                .map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_string())
        })
        .and_then(|k| k.parse::<u64>().ok())
        .map(|k| format!("{:.1} GiB", k as f64 / 1024.0 / 1024.0))
        .unwrap_or_else(|| "unknown".into());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown cpu".into());
    format!("{cores} cores ({cpu}), {mem} memory")
}

/// Default output directory.
pub fn results_dir() -> PathBuf {
    PathBuf::from("bench/results")
}
