//! `switchyard-bench`: Switchyard's benchmark harness.
//!
//! Runs the engine in this process against a store (`--store postgres://ADMIN_URL` or
//! `--store sqlite://[DIR]`), one fresh database or file per workload run, removed
//! afterwards, and prints a Markdown table per workload and a summary against the
//! targets. Workloads: `floor`, `ingest`, `drain` (with `--peer graphile`), `latency`,
//! `fanout`, `steady`, or `all`; and `retention` on its own. See `docs/benchmarks.md` for what each measures.
//!
//! ```sh
//! cargo run --release -p switchyard-bench -- all --store postgres://postgres@127.0.0.1:5432/postgres
//! ```
//!
//! Every figure includes the load generator: it shares this machine's cores with the
//! engine, in this process or, with `--load wrk` and `--floor pgbench`, in a process
//! of its own. The "CPU s/1k" column is this process and such a child (engine and
//! client together, from getrusage); "PG CPU" is every `postgres` process on the
//! machine; transactions are the bench database's `xact_commit + xact_rollback`, less
//! the harness's own queries; WAL is the server's WAL position delta.

mod backend;
mod compare;
mod drain;
mod fanout;
mod floor;
mod harness;
mod http;
mod ingest;
mod latency;
mod pgbench;
mod report;
mod retention;
mod stats;
mod steady;
mod tools;
mod wrk;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;
use clap::{Parser, ValueEnum};
use serde::{Deserialize, Serialize};
use switchyard_core::HumanDuration;

use crate::backend::{Backend, redact};
use crate::report::Summary;

/// The allocator of the `switchyard` binary, so that the engine runs here as it runs there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Workload {
    Floor,
    Ingest,
    Drain,
    Latency,
    Fanout,
    Steady,
    /// floor, ingest, drain (with the graphile peer on Postgres), latency, fanout, steady.
    All,
    /// A claim's latency while retention deletes `--retained-rows` old events, against
    /// claims alone (Postgres; not part of `all`).
    Retention,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Peer {
    /// graphile-worker 0.17.3, through its `drain.sh` (needs node, npm and psql).
    Graphile,
    None,
}

/// Who posts the `ingest` workload's requests (`--load`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LoadGen {
    /// The harness's own HTTP/1.1 client, in this process.
    #[default]
    Builtin,
    /// `wrk -t2 -c<connections>` in its own process, POSTing a fixed 256-byte body.
    Wrk,
}

impl LoadGen {
    /// What tables and the summary call it.
    pub fn label(self) -> &'static str {
        match self {
            Self::Builtin => "in-process client",
            Self::Wrk => "wrk",
        }
    }
}

/// Who runs the `floor` workload's single-row inserts (`--floor`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FloorClient {
    /// The harness's own sqlx pool, in this process.
    #[default]
    Builtin,
    /// `pgbench -c<floor-connections> -j2 -M prepared` in its own process (Postgres).
    Pgbench,
}

impl FloorClient {
    /// What tables and the summary call it.
    pub fn label(self) -> &'static str {
        match self {
            Self::Builtin => "sqlx",
            Self::Pgbench => "pgbench -M prepared",
        }
    }
}

#[derive(Parser, Debug)]
#[command(
    name = "switchyard-bench",
    version,
    about = "Benchmarks Switchyard in-process against SQLite or Postgres"
)]
struct Cli {
    /// Workloads to run, in order.
    #[arg(required = true, value_enum)]
    workloads: Vec<Workload>,
    /// A Postgres URL whose user may CREATE DATABASE (a fresh `sy_bench_*` database is
    /// made per run and dropped after), or `sqlite://` / `sqlite://DIR` (fresh files in
    /// DIR or the temporary directory).
    #[arg(long, env = "SWITCHYARD_BENCH_STORE")]
    store: String,
    #[command(flatten)]
    args: Args,
    /// Sample pg_stat_activity every 20 ms during each measured phase and print which
    /// statements the bench database's sessions were running (Postgres; adds a little load).
    #[arg(long)]
    pg_activity: bool,
    /// Log the engine's own messages at this level (e.g. `warn`); off by default.
    #[arg(long)]
    log: Option<String>,
    /// Run the workloads this many times over, in order, and end with each figure's
    /// value in every round and their median. On a noisy machine one round can be off
    /// by a third; the median of three is steadier.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    repeat: u32,
    /// Compare this build (A) with another `switchyard-bench` binary (B), built from
    /// another commit, say: each of the `--repeat` rounds runs both as child processes
    /// with these arguments, alternating which goes first, and the end is a table of
    /// every figure of both, with B / A per round. Both must support `--summary-json`.
    #[arg(long, value_name = "OTHER_BENCH")]
    against: Option<PathBuf>,
    /// Write each round's summary figures here as JSON (what `--against` reads).
    #[arg(long, value_name = "FILE")]
    summary_json: Option<PathBuf>,
}

/// Settings shared by the workloads.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// How long the fixed-duration workloads (floor, ingest, fanout, each steady rate) load.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Events seeded for `drain` (and for the graphile peer).
    #[arg(long, default_value_t = 100_000)]
    pub events: u64,
    /// Samples for `latency`.
    #[arg(long, default_value_t = 1000)]
    pub samples: u32,
    /// Rates (events/s) `steady` tries, ascending; it stops at the first that fails.
    #[arg(long, value_delimiter = ',', default_value = "1000,2000,5000,10000")]
    pub rates: Vec<u32>,
    /// Trigger counts for `fanout`.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
    pub fanouts: Vec<u32>,
    /// Deliveries each `fanout` run makes (events = this / fan-out).
    #[arg(long, default_value_t = 20_000)]
    pub fanout_deliveries: u64,
    /// Concurrent keep-alive HTTP connections for `ingest` and `fanout`.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Who posts `ingest`'s requests: `wrk` (in its own process) or `builtin` (the
    /// harness's client, in this process). Default: wrk when it is on PATH.
    #[arg(long, value_enum)]
    pub load: Option<LoadGen>,
    /// Who runs `floor`'s single-row inserts: `pgbench` (in its own process) or
    /// `builtin` (the harness's sqlx pool). Default: pgbench on Postgres when it is on
    /// PATH. Given, it also runs `floor` first when the run does not list it, so that
    /// `ingest` has its denominator from the same run.
    #[arg(long, value_enum)]
    pub floor: Option<FloorClient>,
    /// `dispatcher.concurrency` and each no-op trigger's `concurrency` in the bench
    /// engine. A claim holds its slots until its rows come back, so a handler that takes
    /// microseconds leaves the slots in claims: 512 lets two full claims of 256 be in
    /// flight at once.
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..))]
    pub concurrency: u32,
    /// Each no-op trigger's `concurrency`, when it should differ from `--concurrency`.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub trigger_concurrency: Option<u32>,
    /// `dispatcher.prefetch` in the bench engine (the engine's default unless given).
    #[arg(long)]
    pub prefetch: Option<u32>,
    /// Concurrent database connections for `floor`.
    #[arg(long, default_value_t = 8)]
    pub floor_connections: u32,
    /// A peer to run `drain` against (`all` picks graphile on Postgres unless `none`).
    #[arg(long, value_enum)]
    pub peer: Option<Peer>,
    /// Old events seeded for `retention` to delete.
    #[arg(long, default_value_t = 1_000_000)]
    pub retained_rows: u64,
    /// Where the peer's scripts are.
    #[arg(long, default_value_os_t = default_peer_dir())]
    pub peer_dir: PathBuf,
}

async fn run_workload(ctx: &Ctx, workload: Workload, summary: &mut Summary) -> anyhow::Result<()> {
    match workload {
        Workload::Floor => floor::run(ctx, summary).await,
        Workload::Ingest => ingest::run(ctx, summary).await,
        Workload::Drain => drain::run(ctx, summary).await,
        Workload::Latency => latency::run(ctx, summary).await,
        Workload::Fanout => fanout::run(ctx, summary).await,
        Workload::Steady => steady::run(ctx, summary).await,
        Workload::Retention => retention::run(ctx).await,
        Workload::All => Ok(()),
    }
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    text.parse::<HumanDuration>()
        .map(HumanDuration::get)
        .map_err(|e| e.to_string())
}

/// `../shared/peers/graphile`, relative to the workspace root.
fn default_peer_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/peers/graphile")
}

/// What every workload gets.
pub struct Ctx {
    pub backend: Backend,
    pub args: Args,
    /// `--load`, resolved.
    pub load: LoadGen,
    /// `--floor`, resolved.
    pub floor: FloorClient,
}

/// `--load` as given (its tool must be installed), else wrk if it is on PATH.
fn resolve_load(given: Option<LoadGen>) -> anyhow::Result<LoadGen> {
    match given {
        Some(LoadGen::Wrk) => tools::WRK.require().map(|()| LoadGen::Wrk),
        Some(load) => Ok(load),
        None if tools::WRK.installed() => Ok(LoadGen::Wrk),
        None => Ok(LoadGen::Builtin),
    }
}

/// `--floor` as given (pgbench needs Postgres and must be installed), else pgbench on
/// Postgres if it is on PATH.
fn resolve_floor(given: Option<FloorClient>, backend: &Backend) -> anyhow::Result<FloorClient> {
    match given {
        Some(FloorClient::Pgbench) if !backend.is_postgres() => {
            bail!("--floor pgbench needs a Postgres --store")
        }
        Some(FloorClient::Pgbench) => tools::PGBENCH.require().map(|()| FloorClient::Pgbench),
        Some(floor) => Ok(floor),
        None if backend.is_postgres() && tools::PGBENCH.installed() => Ok(FloorClient::Pgbench),
        None => Ok(FloorClient::Builtin),
    }
}

/// The workloads to run, in order: `all` expanded, each once, and `floor` first when
/// `--floor` was given for a run without it.
fn plan(given: &[Workload], floor_given: bool) -> Vec<Workload> {
    let mut workloads = Vec::new();
    if floor_given
        && !given
            .iter()
            .any(|w| matches!(w, Workload::Floor | Workload::All))
    {
        workloads.push(Workload::Floor);
    }
    for &workload in given {
        let expanded: &[Workload] = if workload == Workload::All {
            &ALL
        } else {
            std::slice::from_ref(&workload)
        };
        for &workload in expanded {
            if !workloads.contains(&workload) {
                workloads.push(workload);
            }
        }
    }
    workloads
}

const ALL: [Workload; 6] = [
    Workload::Floor,
    Workload::Ingest,
    Workload::Drain,
    Workload::Latency,
    Workload::Fanout,
    Workload::Steady,
];

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(other) = &cli.against {
        return compare::run(other.as_os_str(), cli.repeat);
    }
    if let Some(level) = &cli.log {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(level))
            .with_writer(std::io::stderr)
            .init();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> ExitCode {
    let mut backend = match Backend::connect(&cli.store).await {
        Ok(backend) => backend,
        Err(error) => {
            eprintln!("error: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    backend.sample_activity = cli.pg_activity;
    let mut args = cli.args;
    let (load, floor) = match (resolve_load(args.load), resolve_floor(args.floor, &backend)) {
        (Ok(load), Ok(floor)) => (load, floor),
        (Err(error), _) | (_, Err(error)) => {
            eprintln!("error: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    if cli.workloads.contains(&Workload::All) && args.peer.is_none() && backend.is_postgres() {
        args.peer = Some(Peer::Graphile);
    }
    let workloads = plan(&cli.workloads, args.floor.is_some());
    let slots = harness::Slots::of(&args);
    println!(
        "# switchyard-bench on {} ({}), {} cores, duration {:?}, drain events {}, \
         concurrency {} (each trigger {}), prefetch {}, ingest load {}, floor {}",
        backend.label(),
        redact(&cli.store),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        args.duration,
        args.events,
        slots.concurrency,
        slots.trigger_concurrency,
        slots
            .prefetch
            .map_or_else(|| "default".to_owned(), |n| n.to_string()),
        load.label(),
        floor.label()
    );
    let ctx = Ctx {
        backend,
        args,
        load,
        floor,
    };
    let mut failed = false;
    let mut rounds = Vec::new();
    for round in 1..=cli.repeat {
        if cli.repeat > 1 {
            println!("\n# Round {round} of {}", cli.repeat);
        }
        let mut summary = Summary {
            backend: ctx.backend.label().to_owned(),
            ..Summary::default()
        };
        for &workload in &workloads {
            if let Err(error) = run_workload(&ctx, workload, &mut summary).await {
                eprintln!("error: {workload:?}: {error:#}");
                println!("\n### {workload:?}: FAILED: {error:#}");
                failed = true;
            }
        }
        summary.print();
        rounds.push(summary);
    }
    if rounds.len() > 1 {
        report::print_rounds(&rounds);
    }
    if let Some(path) = &cli.summary_json {
        let written = serde_json::to_vec(&rounds)
            .map_err(std::io::Error::other)
            .and_then(|json| std::fs::write(path, json));
        if let Err(error) = written {
            eprintln!("error: cannot write {}: {error}", path.display());
            failed = true;
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use super::{ALL, Workload, plan};

    #[test]
    fn a_given_floor_runs_the_floor_workload_first() {
        use Workload::{Floor, Ingest, Latency};
        assert_eq!(plan(&[Ingest], true), [Floor, Ingest]);
        assert_eq!(plan(&[Ingest], false), [Ingest]);
        assert_eq!(plan(&[Ingest, Floor], true), [Ingest, Floor]);
        assert_eq!(plan(&[Latency, Workload::All], true), {
            let mut all = vec![Latency];
            all.extend(ALL.iter().filter(|w| **w != Latency));
            all
        });
    }
}
