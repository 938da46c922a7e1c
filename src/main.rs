//! The `lama-tui` binary: parse flags, set up logging, start the runtime, hand it to the
//! headless shell or the TUI. Errors end here as one line on stderr and a non-zero exit.
#![forbid(unsafe_code)]

use clap::Parser;

use lama_tui::app::{cli::Args, headless, logging, runtime};

/// Exit code for a start-up failure (bad flags exit 2 through clap).
const EXIT_START_FAILED: i32 = 1;

fn main() {
    let args = Args::parse();
    let code = match run(args) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e:#}");
            EXIT_START_FAILED
        }
    };
    std::process::exit(code);
}

fn run(args: Args) -> anyhow::Result<()> {
    let mut cfg = args.config().map_err(anyhow::Error::msg)?;
    if args.trust_secret && cfg.trust_secret.is_none() {
        if args.headless {
            anyhow::bail!(
                "--trust-secret in headless mode reads the secret from {}; set it",
                lama_tui::app::cli::TRUST_SECRET_ENV
            );
        }
        let s = lama_tui::app::cli::prompt_trust_secret().map_err(anyhow::Error::msg)?;
        cfg.trust_secret = Some(runtime::TrustSecret(zeroize::Zeroizing::new(s)));
    }
    logging::init(&cfg.data_dir, args.headless).map_err(|e| {
        anyhow::anyhow!(
            "cannot write the log file in {}: {e}; pick another --data-dir",
            cfg.data_dir.display()
        )
    })?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let data_dir = cfg.data_dir.clone();
    let result = rt.block_on(async move {
        let running = runtime::start(cfg).await?;
        let provision = args.provision_node.then(|| headless::ProvisionCfg {
            client_dir: data_dir.clone(),
            keep: args.keep_node,
        });
        if args.headless {
            headless::run(running, args.detach, provision).await?;
        } else {
            // ratatui::init (inside ui::run) installs the panic hook that restores the terminal.
            lama_tui::ui::run(running, provision).await?;
        }
        Ok(())
    });
    // The blocking stdin reader never finishes on its own; do not wait for it.
    rt.shutdown_background();
    result
}
