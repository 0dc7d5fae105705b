//! The command line: `run`, `validate`, `migrate`, `events`, `event`, `explain`, `dlq`,
//! `replay`, `send`, `schedules`, `sources`, `rejected` and `retention`. Every command prints
//! tables by default and JSON with `--json`; errors are one line on stderr and a
//! non-zero exit.

mod inspect;
mod names;
mod output;
mod retention;
mod schedules;
mod sources;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use switchyard_core::config::{Config, Environment, HandlerSpec, PlaceholderEnv, ProcessEnv};
use switchyard_store::{Appended, NewEvent, Store};

use crate::explain::Explanation;
use crate::router::Router;
use crate::running::{self, Plugins};

/// Switchyard: durable event triggers.
#[derive(Parser, Debug)]
#[command(name = "switchyard", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Debug, Clone)]
struct ConfigArg {
    /// The configuration file.
    #[arg(
        long,
        short,
        global = true,
        default_value = "triggers.yaml",
        env = "SWITCHYARD_CONFIG"
    )]
    config: PathBuf,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the sources, the dispatcher and the HTTP server until SIGTERM or Ctrl-C.
    Run(ConfigArg),
    /// Check the configuration; list every problem with its path.
    Validate {
        #[command(flatten)]
        config: ConfigArg,
        /// Do not require environment variables to be set (they get placeholders).
        #[arg(long)]
        no_environment: bool,
    },
    /// Create or upgrade the store schema.
    Migrate(ConfigArg),
    /// List or follow the event log.
    Events(inspect::EventsArgs),
    /// One event with all its deliveries and attempts.
    Event(inspect::EventArgs),
    /// For every trigger of a stored event's source: whether it matches the event, and
    /// if not, which filter clause failed on which value.
    Explain(inspect::ExplainArgs),
    /// Dead letters: list, show, replay, purge.
    Dlq(inspect::DlqArgs),
    /// Dispatch stored events again: one event, or a time window.
    Replay(inspect::ReplayArgs),
    /// Inject a test event as the named source would produce it.
    Send(SendArgs),
    /// Cron sources: next fires, last fires with their lateness, skipped fires.
    Schedules(schedules::SchedulesArgs),
    /// Every source with its kind and state: an HTTP source's path, a schedule's next
    /// and last fire, an S3 source's queue or saved listing.
    Sources(sources::SourcesArgs),
    /// Inputs sources received but could not turn into events (quarantined S3
    /// notifications), newest first.
    Rejected(inspect::RejectedArgs),
    /// Delete the events, dead letters and rejected inputs whose retention period has
    /// passed, now; with --dry-run, only say how many rows of each would go.
    Retention(retention::RetentionArgs),
}

#[derive(Args, Debug)]
struct SendArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// The source the event comes from.
    source: String,
    /// The event type (defaults to the source kind's usual type).
    #[arg(long = "type")]
    ty: Option<String>,
    #[arg(long)]
    subject: Option<String>,
    /// The event data, as JSON.
    #[arg(long, default_value = "{}")]
    data: String,
    /// A dedupe key; a second send with the same key makes no new event.
    #[arg(long)]
    dedupe_key: Option<String>,
    /// After sending, say for every trigger of the source whether it matched.
    #[arg(long)]
    explain: bool,
    #[arg(long)]
    json: bool,
}

/// A command's failure: one line for stderr.
#[derive(Debug)]
pub struct CliError(String);

impl<E: std::fmt::Display> From<E> for CliError {
    fn from(error: E) -> Self {
        Self(error.to_string())
    }
}

pub type CliResult = Result<(), CliError>;

pub async fn main(plugins: Plugins, args: Vec<OsString>) -> ExitCode {
    let mut command = Cli::command();
    if let Some(program) = &plugins.program {
        command = command.name(program.name.clone()).version(format!(
            "{} (switchyard {})",
            program.version,
            crate::VERSION
        ));
    }
    let parsed = command
        .try_get_matches_from(args)
        .and_then(|matches| Cli::from_arg_matches(&matches));
    let cli = match parsed {
        Ok(cli) => cli,
        Err(error) => {
            // clap prints help and version to stdout and usage errors to stderr.
            let _ = error.print();
            return if error.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    init_tracing(matches!(cli.command, Command::Run(_)));
    match execute(plugins, cli.command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError(message)) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr at the level `SWITCHYARD_LOG` asks for (an `EnvFilter` directive
/// list), `info` for `run` and `warn` for the other commands by default.
///
/// The AWS SDK's crates log at INFO and above only: at TRACE they print their
/// credentials provider and every identity they resolve, and at DEBUG the errors of a
/// request with the identity inside, access key id included.
fn init_tracing(running: bool) {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;

    let default = if running { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("SWITCHYARD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let without_credentials = tracing_subscriber::filter::filter_fn(|metadata| {
        let verbose = matches!(
            *metadata.level(),
            tracing::Level::TRACE | tracing::Level::DEBUG
        );
        !(verbose && metadata.target().starts_with("aws_"))
    });
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_filter(filter)
        .with_filter(without_credentials);
    // A second initialization (an embedding program set its own) is fine to ignore.
    let _ = tracing_subscriber::registry().with(layer).try_init();
}

async fn execute(plugins: Plugins, command: Command) -> CliResult {
    match command {
        Command::Run(args) => run(plugins, &args).await,
        Command::Validate {
            config,
            no_environment,
        } => validate(&plugins, &config, no_environment),
        Command::Migrate(args) => migrate(&plugins, &args).await,
        Command::Events(args) => {
            let config = load(&plugins, &args.config)?;
            inspect::events(&*open_store(&config).await?, &config, args).await
        }
        Command::Event(args) => {
            let config = load(&plugins, &args.config)?;
            let router = Router::new(&config);
            inspect::event(&*open_store(&config).await?, &router, args).await
        }
        Command::Explain(args) => {
            let config = load(&plugins, &args.config)?;
            let router = Router::new(&config);
            inspect::explain(&*open_store(&config).await?, &router, args).await
        }
        Command::Dlq(args) => {
            let config = load(&plugins, &args.config)?;
            inspect::dlq(&*open_store(&config).await?, &config, args).await
        }
        Command::Replay(args) => {
            let config = load(&plugins, &args.config)?;
            let router = Router::new(&config);
            inspect::replay(&*open_store(&config).await?, &config, &router, args).await
        }
        Command::Send(args) => send(&plugins, args).await,
        Command::Schedules(args) => {
            let config = load(&plugins, &args.config)?;
            schedules::schedules(&config, &*open_store(&config).await?, args).await
        }
        Command::Sources(args) => {
            let config = load(&plugins, &args.config)?;
            sources::sources(&config, &*open_store(&config).await?, args).await
        }
        Command::Rejected(args) => {
            let config = load(&plugins, &args.config)?;
            inspect::rejected(&*open_store(&config).await?, args).await
        }
        Command::Retention(args) => {
            let config = load(&plugins, &args.config)?;
            retention::retention(&config.retention, &*open_store(&config).await?, args).await
        }
    }
}

/// Reads, interpolates and validates the configuration file.
fn load_with(
    plugins: &Plugins,
    args: &ConfigArg,
    env: &dyn Environment,
) -> Result<Config, CliError> {
    let path = &args.config;
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError(format!("cannot read {}: {e}", path.display())))?;
    Config::load(&text, env, &|name| plugins.registry.contains(name)).map_err(|errors| {
        CliError(format!(
            "{} has {} problem(s):\n{errors}",
            path.display(),
            errors.0.len()
        ))
    })
}

fn load(plugins: &Plugins, args: &ConfigArg) -> Result<Config, CliError> {
    load_with(plugins, args, &ProcessEnv)
}

/// Opens the store for a command that only reads it or adds events: never creates it
/// nor changes its schema, and refuses a schema this binary does not match.
async fn open_store(config: &Config) -> Result<Arc<dyn Store>, CliError> {
    Ok(switchyard_store::open_existing(&config.store).await?)
}

/// Creates or upgrades the schema and says which migrations it applied.
async fn migrate(plugins: &Plugins, args: &ConfigArg) -> CliResult {
    let config = load(plugins, args)?;
    let store = switchyard_store::open(&config.store).await?;
    let applied = store.migrate().await?;
    for migration in &applied {
        println!(
            "applied migration {} ({})",
            migration.version, migration.description
        );
    }
    println!(
        "schema {} ({})",
        if applied.is_empty() {
            "up to date"
        } else {
            "migrated"
        },
        switchyard_core::config::redact_url(&config.store)
    );
    Ok(())
}

fn validate(plugins: &Plugins, args: &ConfigArg, no_environment: bool) -> CliResult {
    let env: &dyn Environment = if no_environment {
        &PlaceholderEnv
    } else {
        &ProcessEnv
    };
    let config = load_with(plugins, args, env)?;
    // The build phase of built-in handlers catches what only they understand, such as
    // a webhook URL that does not parse. It does no I/O.
    let problems: Vec<String> = config
        .triggers
        .iter()
        .filter_map(|(name, trigger)| match &trigger.handler {
            HandlerSpec::Builtin(builtin) => crate::handlers::build(builtin)
                .err()
                .map(|e| format!("triggers.{name}.handler: {e}")),
            HandlerSpec::Registered(_) => None,
        })
        .collect();
    if !problems.is_empty() {
        return Err(CliError(format!(
            "{} has {} problem(s):\n{}",
            args.config.display(),
            problems.len(),
            problems.join("\n")
        )));
    }
    println!(
        "{} is valid: {} source(s), {} trigger(s)",
        args.config.display(),
        config.sources.len(),
        config.triggers.len()
    );
    Ok(())
}

async fn run(plugins: Plugins, args: &ConfigArg) -> CliResult {
    let config = load(&plugins, args)?;
    let running = running::start(plugins, config).await?;
    shutdown_signal().await;
    tracing::info!("shutdown requested");
    running.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::warn!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

async fn send(plugins: &Plugins, args: SendArgs) -> CliResult {
    let config = load(plugins, &args.config)?;
    let data: serde_json::Value = serde_json::from_str(&args.data)
        .map_err(|e| CliError(format!("--data is not valid JSON: {e}")))?;
    let mut event =
        crate::sources::synthetic_event(&config, &args.source, args.ty, data).map_err(CliError)?;
    if let Some(subject) = args.subject {
        event.subject = Some(subject);
    }
    event.dedupe_key = args.dedupe_key.map(|k| format!("send:{k}"));
    let router = Router::new(&config);
    let deliveries = router.route(&event);
    let triggers: Vec<String> = deliveries.iter().map(|d| d.trigger.clone()).collect();
    let store = open_store(&config).await?;
    let appended = store
        .append(&[NewEvent {
            event: event.clone(),
            deliveries,
        }])
        .await?;
    let appended = appended
        .first()
        .copied()
        .ok_or_else(|| CliError("the store returned no result".into()))?;
    let duplicate = matches!(appended, Appended::Duplicate(_));
    // A duplicate is explained as sent; its stored original was routed when it came.
    event.switchyard_id = appended.id();
    let explanation = args.explain.then(|| Explanation::new(&router, &event));
    if args.json {
        let mut sent = serde_json::json!({ "id": appended.id(), "duplicate": duplicate, "triggers": triggers });
        if let Some(explanation) = &explanation {
            sent["explanation"] = serde_json::to_value(explanation)?;
        }
        output::print_json(&sent);
        return Ok(());
    }
    if duplicate {
        println!("duplicate of event {}", appended.id());
    } else {
        println!(
            "event {} → {}",
            appended.id(),
            if triggers.is_empty() {
                "no matching trigger".to_owned()
            } else {
                triggers.join(", ")
            }
        );
    }
    if let Some(explanation) = explanation {
        print!("{explanation}");
    }
    Ok(())
}
