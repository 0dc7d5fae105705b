//! `--against OTHER`: this build against another `switchyard-bench` binary (built
//! from another commit, say), in alternating rounds.
//!
//! Both builds run as child processes with this invocation's arguments, one round at
//! a time, the first build first in odd rounds and second in even ones, so that a
//! machine that speeds up or slows down over the run favours neither. Each child
//! prints its own tables and writes its summary as JSON (`--summary-json`); the end is
//! one table with every figure of both builds.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};

use crate::report::{Summary, print_comparison};

/// The arguments each child gets: this invocation's, less the options that make it
/// the parent (`--against`, `--repeat`, `--summary-json`), plus one round and where
/// to write its summary.
pub fn child_args(own: &[OsString], summary: &Path) -> Vec<OsString> {
    const PARENT_ONLY: [&str; 3] = ["--against", "--repeat", "--summary-json"];
    let mut args = Vec::with_capacity(own.len() + 4);
    let mut own = own.iter();
    while let Some(arg) = own.next() {
        let text = arg.to_string_lossy();
        if PARENT_ONLY.contains(&text.as_ref()) {
            own.next();
        } else if !PARENT_ONLY
            .iter()
            .any(|option| text.starts_with(&format!("{option}=")))
        {
            args.push(arg.clone());
        }
    }
    args.extend(["--repeat", "1", "--summary-json"].map(OsString::from));
    args.push(summary.as_os_str().to_owned());
    args
}

/// One build: its binary and what the tables call it.
struct Build {
    label: &'static str,
    binary: PathBuf,
    rounds: Vec<Summary>,
}

impl Build {
    /// Runs one round of this build, its tables going to this process's stdout, and
    /// keeps its summary: the figures it measured, even if a workload failed, or none
    /// if it wrote none, so that each build's rounds stay in step with the other's.
    fn run_round(&mut self, own: &[OsString], round: u32, of: u32) -> Result<()> {
        println!(
            "\n# Round {round} of {of}: {} ({})",
            self.label,
            self.binary.display()
        );
        let path = std::env::temp_dir().join(format!(
            "switchyard-bench-{}-{round}-{}.json",
            std::process::id(),
            self.label
        ));
        let status = Command::new(&self.binary)
            .args(child_args(own, &path))
            .status();
        let summary = read_summary(&path);
        let _ = std::fs::remove_file(&path);
        let (summary, read) = match summary {
            Ok(summary) => (summary, Ok(())),
            Err(error) => (Summary::default(), Err(error)),
        };
        self.rounds.push(summary);
        let status = status.with_context(|| format!("cannot run {}", self.binary.display()))?;
        read.with_context(|| format!("no summary from {}", self.binary.display()))?;
        if !status.success() {
            bail!("{} ({}) {status}", self.label, self.binary.display());
        }
        Ok(())
    }
}

/// The one round a child wrote to `path` (it ran with `--repeat 1`).
fn read_summary(path: &Path) -> Result<Summary> {
    let written =
        std::fs::read(path).context("it wrote no summary (does it support --summary-json?)")?;
    let mut rounds: Vec<Summary> =
        serde_json::from_slice(&written).context("its summary is not valid JSON")?;
    rounds.pop().context("its summary holds no round")
}

/// Runs `rounds` rounds of this build (A) and `other` (B), then prints the comparison.
pub fn run(other: &OsStr, rounds: u32) -> ExitCode {
    let this = match std::env::current_exe() {
        Ok(path) => path,
        Err(error) => {
            eprintln!("error: cannot find this binary: {error}");
            return ExitCode::FAILURE;
        }
    };
    let own: Vec<OsString> = std::env::args_os().skip(1).collect();
    let mut a = Build {
        label: "A",
        binary: this,
        rounds: Vec::new(),
    };
    let mut b = Build {
        label: "B",
        binary: PathBuf::from(other),
        rounds: Vec::new(),
    };
    println!(
        "# switchyard-bench: A = {}, B = {}, {rounds} rounds, alternating which runs first",
        a.binary.display(),
        b.binary.display()
    );
    let mut failed = false;
    for round in 1..=rounds {
        let order = if round % 2 == 1 {
            [&mut a, &mut b]
        } else {
            [&mut b, &mut a]
        };
        for build in order {
            if let Err(error) = build.run_round(&own, round, rounds) {
                eprintln!("error: round {round}: {error:#}");
                failed = true;
            }
        }
    }
    print_comparison(&a.rounds, &b.rounds);
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;
    use std::path::Path;

    use super::child_args;

    fn strings(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn a_child_runs_one_round_with_the_parent_s_other_arguments() {
        let own = strings(&[
            "fanout",
            "--against",
            "/tmp/old-bench",
            "--store",
            "sqlite://",
            "--repeat=4",
            "--fanouts",
            "1,16",
            "--against=/tmp/x",
            "--repeat",
            "2",
        ]);
        let args = child_args(&own, Path::new("/tmp/summary.json"));
        assert_eq!(
            args,
            strings(&[
                "fanout",
                "--store",
                "sqlite://",
                "--fanouts",
                "1,16",
                "--repeat",
                "1",
                "--summary-json",
                "/tmp/summary.json",
            ])
        );
    }
}
