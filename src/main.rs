//! Command line: parse the arguments, load the config, hand over to the
//! library. Nothing else lives here.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use ado_auth_proxy::{app, config, logging};

/// Authenticating reverse proxy for Azure DevOps Services.
#[derive(Parser)]
#[command(name = "ado-auth-proxy", version, about)]
struct Cli {
    /// TOML config file; without it, defaults plus ADO_AUTH_PROXY_* variables.
    #[arg(
        long,
        short,
        global = true,
        env = "ADO_AUTH_PROXY_CONFIG",
        value_name = "FILE"
    )]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy (the default).
    Run,
    /// Validate the config and print it with secrets redacted; exit 2 on problems.
    CheckConfig {
        /// Check shapes and values only, not the files keys name (a
        /// Kubernetes config checked where its mounted secrets are not).
        #[arg(long)]
        no_files: bool,
    },
    /// Print a new random session encryption key (base64) for a key file.
    Keygen,
    /// Sign the service identity in with a device code (mode "service",
    /// source "device-code"); works while the proxy runs.
    Login,
}

/// Exit code for configuration problems.
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Keygen) = cli.command {
        // Needs no configuration.
        return match ado_auth_proxy::seal::generate_key() {
            Ok(key) => {
                println!("{key}");
                ExitCode::SUCCESS
            }
            Err(_) => {
                eprintln!("the system random number generator failed");
                ExitCode::FAILURE
            }
        };
    }
    let names: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
    for name in config::ignored_env(names.iter().map(String::as_str)) {
        eprintln!(
            "warning: environment variable {name} is ignored: configuration variables are \
             {}<SECTION>__<KEY> (two underscores between section and key, e.g. \
             ADO_AUTH_PROXY_AUTH__MODE)",
            config::ENV_PREFIX
        );
    }
    let env = std::env::vars().filter(|(k, _)| k != "ADO_AUTH_PROXY_CONFIG");
    let files = !matches!(cli.command, Some(Command::CheckConfig { no_files: true }));
    let loaded = config::load_file_checking(cli.config.as_deref(), env, files);
    let config = match loaded {
        Ok(config) => config,
        Err(problems) => {
            eprint!("{problems}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match cli.command.unwrap_or(Command::Run) {
        Command::CheckConfig { no_files } => {
            print!("{}", config.to_redacted_toml());
            for w in config::warnings(&config, !no_files) {
                eprintln!("warning: {w}");
            }
            if no_files {
                eprintln!(
                    "configuration is valid (the files it names were not checked: --no-files)"
                );
            } else {
                eprintln!("configuration is valid");
            }
            ExitCode::SUCCESS
        }
        Command::Run => run(config),
        Command::Login => login(config),
        Command::Keygen => ExitCode::SUCCESS,
    }
}

fn login(config: config::Config) -> ExitCode {
    use ado_auth_proxy::config::{AuthMode, ServiceSource};
    if config.auth.mode != AuthMode::Service
        || config.auth.source != Some(ServiceSource::DeviceCode)
    {
        eprintln!(
            "auth.mode: `login` signs in the service identity of mode = \"service\" with \
             source = \"device-code\"; this config has another mode or source"
        );
        return ExitCode::from(EXIT_CONFIG);
    }
    let Some(runtime) = runtime(tokio::runtime::Builder::new_current_thread()) else {
        return ExitCode::FAILURE;
    };
    let mut out = std::io::stdout();
    match runtime.block_on(ado_auth_proxy::identity::device::login(&config, &mut out)) {
        Ok(who) => {
            println!(
                "Signed in as {who}. A running proxy picks the identity up within seconds; a \
                 stopped one at its next start."
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("login failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(config: config::Config) -> ExitCode {
    logging::init(&config.log);
    let Some(runtime) = runtime(tokio::runtime::Builder::new_multi_thread()) else {
        return ExitCode::FAILURE;
    };
    match runtime.block_on(app::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            eprintln!("cannot start: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The async runtime, or `None` after saying why it cannot start.
fn runtime(mut builder: tokio::runtime::Builder) -> Option<tokio::runtime::Runtime> {
    match builder.enable_all().build() {
        Ok(rt) => Some(rt),
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            None
        }
    }
}
