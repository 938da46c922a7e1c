//! `lama-bench`: measure lama-tui against the raw limits of this machine, print a table and
//! write it as Markdown and JSON under `bench/results/`. `--quick` runs small sizes.
#![forbid(unsafe_code)]

use std::path::PathBuf;

use clap::Parser;
use lama_tui::bench;

/// Benchmarks with ratios to the raw limits measured in the same run.
#[derive(Debug, Parser)]
#[command(name = "lama-bench", version)]
struct Args {
    /// Small sizes, one run each: a few seconds (the test suite's smoke test).
    #[arg(long)]
    quick: bool,
    /// Where to write `latest.md` and `latest.json`.
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
    /// Scratch directory for stores (default: a temporary directory).
    #[arg(long)]
    scratch: Option<PathBuf>,
    /// Run the raw limits and only this stage (for profiling): engines, migration, pairing,
    /// live, wan, catchup, reconnect, fanout, memory, render, flood.
    #[arg(long)]
    only: Option<String>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let sizes = if args.quick {
        bench::Sizes::quick()
    } else {
        bench::Sizes::full()
    };
    let tmp = tempdir(args.scratch.as_deref())?;
    // The node binary sits beside this one (target/<profile>/lama-tui).
    let bin = std::env::current_exe()?.with_file_name("lama-tui");
    let bin = bin.exists().then_some(bin);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let started = std::time::Instant::now();
    let (rows, mut json) = rt.block_on(bench::run_some(
        &sizes,
        &tmp,
        bin.as_deref(),
        args.only.as_deref(),
        |s| eprintln!("[{:>6.1}s] {s}", started.elapsed().as_secs_f64()),
    ));
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let header = format!(
        "# lama-bench {}\n\nMachine: {}. Commit: {}. Mode: {}. Wall time: {:.0} s. \
         Each figure: min / median / max over {} run(s); raw limits measured in the same run.",
        if args.quick { "(quick)" } else { "(full)" },
        bench::machine(),
        if commit.is_empty() {
            "unknown"
        } else {
            &commit
        },
        if args.quick { "quick" } else { "full" },
        started.elapsed().as_secs_f64(),
        sizes.runs
    );
    json["machine"] = bench::machine().into();
    json["commit"] = commit.into();
    json["quick"] = args.quick.into();
    let md = bench::markdown(&rows, &header);
    println!("{md}");
    std::fs::create_dir_all(&args.out)?;
    std::fs::write(args.out.join("latest.md"), &md)?;
    std::fs::write(
        args.out.join("latest.json"),
        serde_json::to_string_pretty(&json)?,
    )?;
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(())
}

fn tempdir(base: Option<&std::path::Path>) -> anyhow::Result<PathBuf> {
    let base = base.map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    let d = base.join(format!("lama-bench-{}", std::process::id()));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}
