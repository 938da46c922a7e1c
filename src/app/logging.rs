//! Logging: `tracing` to a daily file (`lama-tui.YYYY-MM-DD.log`, the newest
//! [`KEEP_LOG_FILES`] kept) in the platform state directory, or in the data dir when one was
//! chosen; also to stderr in headless mode; never to stdout (the control protocol) or the
//! terminal UI.

use std::path::{Path, PathBuf};

use tracing_appender::rolling::{Builder, Rotation};
use tracing_subscriber::fmt::writer::MakeWriterExt;
use tracing_subscriber::EnvFilter;

/// Log file name prefix; files are `lama-tui.YYYY-MM-DD.log`.
pub const LOG_FILE: &str = "lama-tui";
/// Log file name suffix.
pub const LOG_SUFFIX: &str = "log";
/// How many daily files are kept (a week).
pub const KEEP_LOG_FILES: usize = 7;

/// Install the global subscriber. `RUST_LOG` overrides the default `info` level.
pub fn init(log_dir: &Path, also_stderr: bool) -> std::io::Result<()> {
    std::fs::create_dir_all(log_dir)?;
    let file = Builder::new()
        .rotation(Rotation::DAILY)
        .filename_prefix(LOG_FILE)
        .filename_suffix(LOG_SUFFIX)
        .max_log_files(KEEP_LOG_FILES)
        .build(log_dir)
        .map_err(std::io::Error::other)?;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
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

/// The newest log file in `dir` (file names sort by date), if any.
pub fn latest_log(dir: &Path) -> Option<PathBuf> {
    let prefix = format!("{LOG_FILE}.");
    let suffix = format!(".{LOG_SUFFIX}");
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(&suffix))
        })
        .max()
}

/// The text of every log file in `dir`, oldest first (tests and bug reports).
pub fn read_logs(dir: &Path) -> String {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|p| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(LOG_FILE) && n.ends_with(LOG_SUFFIX))
    });
    files.sort();
    files
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .collect()
}
