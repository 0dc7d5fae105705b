//! `--floor pgbench`: the single-row floor measured by `pgbench`, Postgres's own client.
//!
//! In the workload's fresh database, a table `floor (id bigserial primary key, data
//! jsonb, at timestamptz)` and a script inserting one row: the 256-byte JSON payload,
//! bound as a parameter, and `now()`. `pgbench -n -c 8 -j 2 -M prepared -T SECS` runs
//! it from `--floor-connections` clients, each INSERT its own transaction, and its
//! `tps = … (without initial connection time)` is the floor. pgbench is a C client
//! in its own process: it spends less per row than the harness's sqlx pool, so this
//! floor is the higher, stricter denominator.

use std::ffi::OsString;
use std::time::Duration;

use anyhow::{Context as _, Result};
use sqlx::Connection as _;
use sqlx::postgres::PgConnection;

use crate::stats::payload;
use crate::tools::{PGBENCH, ScratchFile, whole_seconds};

/// pgbench's threads, as in `pgbench -j 2`.
const THREADS: u32 = 2;

/// The table the script inserts into.
const TABLE: &str = "CREATE TABLE floor (id bigserial PRIMARY KEY, data jsonb, at timestamptz)";

/// One row per transaction; `:payload` is bound as a parameter (`-D payload=…`), so
/// each insert parses its JSON as a webhook receiver's would.
const SCRIPT: &str = "INSERT INTO floor (data, at) VALUES (:payload, now());\n";

/// What a pgbench run reported.
#[derive(Debug, PartialEq)]
pub struct Report {
    /// "number of transactions actually processed".
    pub transactions: u64,
    /// "number of failed transactions" (0 when pgbench does not print it: before
    /// Postgres 15 a failed transaction aborts the run instead).
    pub failed: u64,
    /// "tps = … (without initial connection time)".
    pub tps: f64,
    /// "latency average = … ms".
    pub latency_ms: f64,
}

/// Creates the floor's table in the database at `url`.
pub async fn create_table(url: &str) -> Result<()> {
    let mut connection = PgConnection::connect(url).await?;
    sqlx::query(TABLE).execute(&mut connection).await?;
    connection.close().await?;
    Ok(())
}

/// Runs the single-row script against `url` from `clients` connections for `duration`.
pub async fn run(url: &str, clients: u32, duration: Duration) -> Result<Report> {
    let script = ScratchFile::write("pgbench.sql", SCRIPT)?;
    let args: Vec<OsString> = vec![
        "-n".into(),
        format!("-c{clients}").into(),
        format!("-j{}", THREADS.min(clients)).into(),
        "-Mprepared".into(),
        format!("-T{}", whole_seconds(duration)).into(),
        "-f".into(),
        script.path().into(),
        "-D".into(),
        format!("payload={}", payload(0)).into(),
        url.into(),
    ];
    parse(&PGBENCH.run(args).await?)
}

/// Reads pgbench's report.
fn parse(stdout: &str) -> Result<Report> {
    Ok(Report {
        transactions: required(stdout, "number of transactions actually processed:", "")? as u64,
        failed: field(stdout, "number of failed transactions:", "")
            .transpose()?
            .unwrap_or(0.0) as u64,
        tps: required(stdout, "tps =", "(without initial connection time)")?,
        latency_ms: required(stdout, "latency average =", "ms")?,
    })
}

/// The first word after `prefix` on the line that starts with it and ends with
/// `suffix`, as a number; `None` if pgbench printed no such line.
fn field(stdout: &str, prefix: &str, suffix: &str) -> Option<Result<f64>> {
    let rest = stdout
        .lines()
        .find_map(|line| line.strip_prefix(prefix).filter(|_| line.ends_with(suffix)))?;
    let word = rest.split_whitespace().next().unwrap_or_default();
    Some(
        word.parse()
            .with_context(|| format!("pgbench's `{prefix}{rest}`: not a number")),
    )
}

/// [`field`], which pgbench must have printed.
fn required(stdout: &str, prefix: &str, suffix: &str) -> Result<f64> {
    field(stdout, prefix, suffix)
        .with_context(|| format!("pgbench printed no `{prefix} … {suffix}` line:\n{stdout}"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    const PG15: &str = "pgbench (15.20 (Debian 15.20-0+deb12u1))
transaction type: /tmp/t.sql
scaling factor: 1
query mode: prepared
number of clients: 8
number of threads: 2
maximum number of tries: 1
duration: 2 s
number of transactions actually processed: 28735
number of failed transactions: 0 (0.000%)
latency average = 0.553 ms
initial connection time = 18.255 ms
tps = 14469.816069 (without initial connection time)
";

    #[test]
    fn reads_pgbench_s_report() {
        assert_eq!(
            parse(PG15).unwrap(),
            Report {
                transactions: 28_735,
                failed: 0,
                tps: 14_469.816069,
                latency_ms: 0.553,
            }
        );
    }

    #[test]
    fn a_report_without_tps_is_an_error() {
        let cut: String = PG15.lines().take(12).collect::<Vec<_>>().join("\n");
        let error = parse(&cut).unwrap_err().to_string();
        assert!(error.contains("without initial connection time"), "{error}");
    }

    #[test]
    fn the_script_binds_the_payload_and_stamps_the_row() {
        assert_eq!(
            SCRIPT.matches(':').count(),
            1,
            "only `:payload` is a variable"
        );
        assert!(SCRIPT.contains("(:payload, now())"));
        assert!(TABLE.contains("id bigserial PRIMARY KEY, data jsonb, at timestamptz"));
    }
}
