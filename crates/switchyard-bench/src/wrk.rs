//! `--load wrk`: the `ingest` load posted by `wrk`, as a separate process.
//!
//! wrk runs with 2 threads and `--connections` keep-alive connections (64 unless
//! given) for `--duration` in whole seconds, POSTing one fixed 256-byte JSON body with
//! `content-type: application/json`. Its Lua script sets the request and, once wrk is
//! done, prints one line of figures from wrk's own summary: responses, how long the
//! load ran, errors by kind and latency percentiles. The script has no per-response
//! hook, which would cost wrk a Lua call per response.

use std::collections::HashMap;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context as _, Result};

use crate::stats::{Percentiles, payload};
use crate::tools::{ScratchFile, WRK, whole_seconds};

/// wrk's threads, as in `wrk -t2`.
const THREADS: usize = 2;

/// How the script's closing line starts.
const MARKER: &str = "switchyard-bench:";

/// What a wrk run reported.
#[derive(Debug, PartialEq)]
pub struct Report {
    /// Responses received, whatever their status.
    pub requests: u64,
    /// How long wrk's threads sent, on wrk's own clock.
    pub duration: Duration,
    /// Responses with an error status, as wrk counts its "Non-2xx or 3xx responses":
    /// 400 and above. Any other status that is not 2xx shows in the event log's count
    /// instead, as a request that made no event.
    pub non_2xx: u64,
    /// Connect, read and write errors and timeouts.
    pub socket_errors: u64,
    /// Request latency, microseconds.
    pub latency: Percentiles,
    /// wrk's own report, as it printed it.
    pub text: String,
}

impl Report {
    /// Responses per second, as wrk's "Requests/sec".
    pub fn requests_per_second(&self) -> f64 {
        self.requests as f64 / self.duration.as_secs_f64()
    }
}

/// Posts to `http://ADDR/bench` for `duration` from `connections` connections.
pub async fn run(addr: SocketAddr, connections: usize, duration: Duration) -> Result<Report> {
    let script = ScratchFile::write("wrk.lua", &script(&payload(0)))?;
    let args: Vec<OsString> = vec![
        format!("-t{}", THREADS.min(connections)).into(),
        format!("-c{connections}").into(),
        format!("-d{}s", whole_seconds(duration)).into(),
        "--latency".into(),
        "-s".into(),
        script.path().into(),
        format!("http://{addr}/bench").into(),
    ];
    parse(&WRK.run(args).await?)
}

/// The Lua script: the request, and a `done` hook printing wrk's summary on one line.
fn script(body: &str) -> String {
    format!(
        r#"-- Written by switchyard-bench for `--load wrk`.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [[{body}]]

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "{MARKER} requests=%d duration_us=%d connect=%d read=%d write=%d status=%d timeout=%d p50_us=%d p90_us=%d p99_us=%d max_us=%d\n",
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"#
    )
}

/// Reads wrk's output: its own report, then the script's line.
fn parse(stdout: &str) -> Result<Report> {
    let (text, line) = stdout
        .rsplit_once(MARKER)
        .with_context(|| format!("wrk printed no `{MARKER}` line:\n{stdout}"))?;
    let fields: HashMap<&str, u64> = line
        .split_whitespace()
        .filter_map(|field| {
            let (key, value) = field.split_once('=')?;
            Some((key, value.parse().ok()?))
        })
        .collect();
    let field = |key: &str| {
        fields
            .get(key)
            .copied()
            .with_context(|| format!("wrk's summary has no `{key}`: {line}"))
    };
    let requests = field("requests")?;
    Ok(Report {
        requests,
        duration: Duration::from_micros(field("duration_us")?),
        non_2xx: field("status")?,
        socket_errors: field("connect")? + field("read")? + field("write")? + field("timeout")?,
        latency: Percentiles {
            count: usize::try_from(requests)?,
            p50: field("p50_us")?,
            p90: field("p90_us")?,
            p99: field("p99_us")?,
            max: field("max_us")?,
        },
        text: text.trim_end().to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_posts_the_256_byte_body_as_json() {
        let body = payload(0);
        let script = script(&body);
        assert!(script.contains(&format!("wrk.body = [[{body}]]")));
        assert!(script.contains(r#"wrk.headers["Content-Type"] = "application/json""#));
        assert!(script.contains(r#"wrk.method = "POST""#));
        assert!(!script.contains("function response"));
    }

    #[test]
    fn reads_wrk_s_report_and_the_summary_line() {
        let stdout = "Running 5s test @ http://127.0.0.1:4000/bench\n  \
            2 threads and 64 connections\n\
            Requests/sec:  20000.00\n\
            switchyard-bench: requests=100000 duration_us=5000000 connect=0 read=1 \
            write=0 status=3 timeout=2 p50_us=2900 p90_us=4100 p99_us=9800 max_us=41000\n";
        let report = parse(stdout).unwrap();
        assert_eq!(report.requests, 100_000);
        assert_eq!(report.duration, Duration::from_secs(5));
        assert_eq!(report.requests_per_second(), 20_000.0);
        assert_eq!((report.non_2xx, report.socket_errors), (3, 3));
        assert_eq!(
            report.latency,
            Percentiles {
                count: 100_000,
                p50: 2900,
                p90: 4100,
                p99: 9800,
                max: 41_000
            }
        );
        assert!(report.text.ends_with("Requests/sec:  20000.00"));
    }

    #[test]
    fn output_without_the_summary_line_is_an_error() {
        let error = parse("Requests/sec: 1.00\n").unwrap_err().to_string();
        assert!(error.contains(MARKER), "{error}");
        let partial = parse("switchyard-bench: requests=1\n").unwrap_err();
        assert!(partial.to_string().contains("duration_us"), "{partial}");
    }
}
