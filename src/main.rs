//! The `lama-tui` binary: parse flags, merge the config file, run a tool (doctor, paths,
//! completions, man) or set up logging, start the runtime and hand it to the headless shell
//! or the TUI. Errors end here as one line on stderr and a non-zero exit.
#![forbid(unsafe_code)]

use clap::{CommandFactory, Parser};

use lama_tui::app::cli::{self, Args, Command, RoleArg, Settings};
use lama_tui::app::{config, doctor, headless, logging, runtime};

/// Exit code for a start-up failure (bad flags exit 2 through clap).
const EXIT_START_FAILED: i32 = 1;
/// Exit code of `doctor` when a check fails.
const EXIT_CHECK_FAILED: i32 = 1;

fn main() {
    let args = Args::parse();
    let code = match run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            EXIT_START_FAILED
        }
    };
    std::process::exit(code);
}

fn run(args: Args) -> anyhow::Result<i32> {
    let mut stdout = std::io::stdout().lock();
    match &args.command {
        Some(Command::Completions { shell }) => {
            clap_complete::generate(*shell, &mut Args::command(), "lama-tui", &mut stdout);
            return Ok(0);
        }
        Some(Command::Man) => {
            clap_mangen::Man::new(Args::command()).render(&mut stdout)?;
            return Ok(0);
        }
        Some(Command::Paths) => {
            let s = tool_settings(&args)?;
            doctor::print_paths(&s, &log_dir(&args, &s), &mut stdout)?;
            return Ok(0);
        }
        Some(Command::Doctor) => {
            let s = tool_settings(&args)?;
            let checks = doctor::run_checks(&s, &log_dir(&args, &s));
            let ok = doctor::print(&checks, &mut stdout)?;
            return Ok(if ok { 0 } else { EXIT_CHECK_FAILED });
        }
        None => {}
    }
    drop(stdout);
    let Some(settings) = args.settings().map_err(anyhow::Error::msg)? else {
        print!("{}", cli::QUICK_START);
        return Ok(0);
    };
    chat(args, settings)?;
    Ok(0)
}

/// Settings for a tool: the role from the flag or the file, else a client's.
fn tool_settings(args: &Args) -> anyhow::Result<Settings> {
    if let Some(s) = args.settings().map_err(anyhow::Error::msg)? {
        return Ok(s);
    }
    let (file, file_path) = config::load(cli::config_path(args).as_deref())?;
    let config = args
        .config_with(RoleArg::Client, &file)
        .map_err(anyhow::Error::msg)?;
    Ok(Settings {
        config,
        file,
        file_path,
    })
}

fn log_dir(args: &Args, s: &Settings) -> std::path::PathBuf {
    cli::log_dir(
        &s.config,
        args.data_dir.is_some() || s.file.data_dir.is_some(),
    )
}

fn chat(args: Args, settings: Settings) -> anyhow::Result<()> {
    let logs = log_dir(&args, &settings);
    let Settings {
        config: mut cfg,
        file,
        ..
    } = settings;
    if args.trust_secret && cfg.trust_secret.is_none() {
        if args.headless {
            anyhow::bail!(
                "--trust-secret in headless mode reads the secret from {}; set it",
                cli::TRUST_SECRET_ENV
            );
        }
        let s = cli::prompt_trust_secret().map_err(anyhow::Error::msg)?;
        cfg.trust_secret = Some(runtime::TrustSecret(zeroize::Zeroizing::new(s)));
    }
    logging::init(&logs, args.headless).map_err(|e| {
        anyhow::anyhow!(
            "cannot write the log file in {}: {e}; fix its permissions or pick a --data-dir (logs then go there)",
            logs.display()
        )
    })?;
    let prefs = lama_tui::ui::Prefs::from_file(&file).map_err(anyhow::Error::msg)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let data_dir = cfg.data_dir.clone();
    let ca_file = cfg.tls.ca_file.clone();
    let result = rt.block_on(async move {
        let running = runtime::start(cfg).await?;
        let provision = args.provision_node.then(|| headless::ProvisionCfg {
            client_dir: data_dir.clone(),
            keep: args.keep_node,
            listen: args.node_listen,
            public_url: args.node_public_url.clone(),
            ca_file: ca_file.clone(),
        });
        if args.headless {
            headless::run(running, args.detach, provision).await?;
        } else {
            // ratatui::init (inside ui::run) installs the panic hook that restores the terminal.
            lama_tui::ui::run(running, provision, prefs).await?;
        }
        Ok(())
    });
    // The blocking stdin reader never finishes on its own; do not wait for it.
    rt.shutdown_background();
    result
}
