//! Logging: `tracing` to a file in the data dir, and to stderr in headless mode; never to
//! stdout (the control protocol) or the terminal UI.

use std::path::Path;
use std::sync::Mutex;

use tracing_subscriber::fmt::writer::MakeWriterExt;
use tracing_subscriber::EnvFilter;

/// Log file name inside the data dir.
pub const LOG_FILE: &str = "lama-tui.log";

/// Install the global subscriber. `RUST_LOG` overrides the default `info` level.
pub fn init(data_dir: &Path, also_stderr: bool) -> std::io::Result<()> {
    std::fs::create_dir_all(data_dir)?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(data_dir.join(LOG_FILE))?;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let file = Mutex::new(file);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_target(false);
    // A second init (tests) is harmless: the first subscriber stays.
    if also_stderr {
        let _ = builder.with_writer(file.and(std::io::stderr)).try_init();
    } else {
        let _ = builder.with_writer(file).try_init();
    }
    Ok(())
}
