//! Tables: one per workload, and the final summary against the targets.

use comfy_table::presets::ASCII_MARKDOWN;
use comfy_table::{CellAlignment, Table};
use serde::{Deserialize, Serialize};

use crate::backend::Usage;
use crate::stats::{Percentiles, fmt_int, fmt_us};
use crate::{FloorClient, LoadGen};

/// One measured run of a workload: a line of its table.
#[derive(Clone, Debug)]
pub struct Row {
    pub name: String,
    /// How many units (events, rows, deliveries) the run completed.
    pub count: u64,
    /// What a unit is; the per-unit columns divide by `count`.
    pub unit: &'static str,
    /// Units per second.
    pub rate: f64,
    pub latency: Option<Percentiles>,
    /// Resources of the run; `None` for lines that share another line's run.
    pub usage: Option<Usage>,
    pub note: String,
}

impl Row {
    pub fn new(name: impl Into<String>, count: u64, unit: &'static str, rate: f64) -> Self {
        Self {
            name: name.into(),
            count,
            unit,
            rate,
            latency: None,
            usage: None,
            note: String::new(),
        }
    }

    pub fn latency(mut self, latency: Option<Percentiles>) -> Self {
        self.latency = latency;
        self
    }

    pub fn usage(mut self, usage: Usage) -> Self {
        self.usage = Some(usage);
        self
    }

    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.note = note.into();
        self
    }
}

fn per_thousand(value: f64, count: u64) -> String {
    if count == 0 {
        return "n/a".to_owned();
    }
    format!("{:.3}", value * 1000.0 / count as f64)
}

fn per_unit(value: Option<i64>, count: u64) -> String {
    match value {
        Some(value) if count > 0 => {
            let per = value as f64 / count as f64;
            if per >= 100.0 {
                fmt_int(per)
            } else {
                format!("{per:.3}")
            }
        }
        _ => "n/a".to_owned(),
    }
}

/// CPU used by everything but this process and Postgres, as a share of the machine.
fn other_load(usage: &Usage) -> String {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    match usage.cpu_other {
        Some(other) if usage.elapsed.as_secs_f64() > 0.0 => {
            format!(
                "{:.0}%",
                100.0 * other / (usage.elapsed.as_secs_f64() * cores)
            )
        }
        _ => "n/a".to_owned(),
    }
}

/// Prints a workload's table (Markdown, so it can be pasted into the docs).
pub fn print_table(title: &str, latency_label: &str, rows: &[Row]) {
    let mut table = Table::new();
    table.load_preset(ASCII_MARKDOWN).set_header(vec![
        "run",
        "count",
        "rate/s",
        &format!("p50 {latency_label}"),
        "p90",
        "p99",
        "max",
        "CPU s/1k (bench proc)",
        "PG CPU s/1k",
        "xacts/unit",
        "WAL B/unit",
        "other load",
        "notes",
    ]);
    let dash = || "-".to_owned();
    for row in rows {
        let usage = row.usage.as_ref();
        let lat = |f: fn(&Percentiles) -> u64| {
            row.latency
                .as_ref()
                .map_or("-".to_owned(), |p| fmt_us(f(p)))
        };
        table.add_row(vec![
            row.name.clone(),
            format!("{} {}", fmt_int(row.count as f64), row.unit),
            fmt_int(row.rate),
            lat(|p| p.p50),
            lat(|p| p.p90),
            lat(|p| p.p99),
            lat(|p| p.max),
            usage.map_or(dash(), |u| per_thousand(u.cpu_own, row.count)),
            usage.map_or(dash(), |u| {
                u.cpu_postgres
                    .map_or("n/a".to_owned(), |s| per_thousand(s, row.count))
            }),
            usage.map_or(dash(), |u| per_unit(u.xacts, row.count)),
            usage.map_or(dash(), |u| per_unit(u.wal_bytes, row.count)),
            usage.map_or(dash(), other_load),
            row.note.clone(),
        ]);
    }
    for column in 1..=11 {
        if let Some(column) = table.column_mut(column) {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
    println!("\n### {title}\n\n{table}");
}

/// The headline figures, filled in by the workloads that ran. A run with `--against`
/// reads each build's from the JSON its child process writes; a build that predates
/// `--load` and `--floor` writes neither, and used the built-in clients.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Summary {
    pub backend: String,
    pub floor_single: Option<f64>,
    /// Who ran the single-row inserts of `floor_single`.
    #[serde(default)]
    pub floor_client: FloorClient,
    pub floor_batch: Option<f64>,
    pub ingest: Option<(f64, u64)>,
    pub ingest_pure: Option<(f64, u64)>,
    /// Who posted the requests of `ingest` and `ingest_pure`.
    #[serde(default)]
    pub ingest_load: LoadGen,
    pub drain: Option<f64>,
    pub graphile: Option<f64>,
    pub latency: Option<Percentiles>,
    pub fanout: Vec<(u32, f64)>,
    pub steady_best: Option<u32>,
    pub steady_tried: Vec<(u32, bool, u64)>,
}

fn verdict(ok: bool) -> String {
    if ok { "met" } else { "MISSED" }.to_owned()
}

/// A figure's value, how to show it, and its target if it has one.
#[derive(Clone, Copy, Debug)]
struct Score {
    value: f64,
    show: fn(f64) -> String,
    bound: Option<Bound>,
}

#[derive(Clone, Copy, Debug)]
enum Bound {
    AtLeast(f64),
    AtMost(f64),
}

impl Score {
    /// A figure without a target.
    fn plain(value: f64, show: fn(f64) -> String) -> Self {
        Self {
            value,
            show,
            bound: None,
        }
    }

    fn at_least(value: f64, bound: f64, show: fn(f64) -> String) -> Self {
        Self {
            value,
            show,
            bound: Some(Bound::AtLeast(bound)),
        }
    }

    fn at_most(value: f64, bound: f64, show: fn(f64) -> String) -> Self {
        Self {
            value,
            show,
            bound: Some(Bound::AtMost(bound)),
        }
    }

    /// Whether `value` (this figure's, or another of the same kind) meets the target;
    /// `None` without one.
    fn met(&self, value: f64) -> Option<bool> {
        self.bound.map(|bound| match bound {
            Bound::AtLeast(bound) => value >= bound,
            Bound::AtMost(bound) => value <= bound,
        })
    }

    fn target(&self) -> String {
        match self.bound {
            Some(Bound::AtLeast(bound)) => format!(">= {}", (self.show)(bound)),
            Some(Bound::AtMost(bound)) => format!("<= {}", (self.show)(bound)),
            None => String::new(),
        }
    }

    /// The verdict on `value`: met, missed, or nothing for a figure without a target.
    fn verdict(&self, value: f64) -> String {
        self.met(value).map_or_else(String::new, verdict)
    }
}

/// One line of the summary.
#[derive(Debug)]
struct Line {
    figure: String,
    measured: String,
    target: String,
    /// The value that rounds and comparisons take, and the target it is judged on.
    score: Score,
    /// Said in the verdict column of a figure without a target.
    remark: String,
}

impl Line {
    /// A figure shown as `measured`, compared across runs by `score`.
    fn info(figure: impl Into<String>, measured: String, score: Score) -> Self {
        Self {
            figure: figure.into(),
            measured,
            target: score.target(),
            score,
            remark: String::new(),
        }
    }

    fn scored(figure: impl Into<String>, score: Score) -> Self {
        Self::info(figure, (score.show)(score.value), score)
    }

    /// Says what a figure without a target is for, in the target column.
    fn target(mut self, text: &str) -> Self {
        self.target = text.to_owned();
        self
    }

    fn verdict(&self) -> String {
        self.score
            .met(self.score.value)
            .map_or_else(|| self.remark.clone(), verdict)
    }
}

fn ratio(value: f64) -> String {
    format!("{value:.2}x")
}

fn micros(value: f64) -> String {
    fmt_us(value.round() as u64)
}

fn per_second(value: f64) -> String {
    format!("{}/s", fmt_int(value))
}

/// The middle value (the mean of the two middle ones for an even count).
fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.len() % 2 == 0 {
        (values[middle - 1] + values[middle]) / 2.0
    } else {
        values[middle]
    }
}

impl Summary {
    fn lines(&self) -> Vec<Line> {
        let mut lines = Vec::new();
        let (load, floor) = (self.ingest_load.label(), self.floor_client.label());
        if let Some(rate) = self.floor_single {
            lines.push(
                Line::info(
                    format!("floor: single-row INSERT, 8 conns ({floor})"),
                    format!("{} rows/s", fmt_int(rate)),
                    Score::plain(rate, per_second),
                )
                .target("(denominator)"),
            );
        }
        if let Some(rate) = self.floor_batch {
            lines.push(
                Line::info(
                    "floor: 500-row INSERT, 8 conns",
                    format!("{} rows/s", fmt_int(rate)),
                    Score::plain(rate, per_second),
                )
                .target("(ceiling)"),
            );
        }
        for (kind, ingest) in [
            ("no triggers", self.ingest_pure),
            ("1 trigger, dispatcher running", self.ingest),
        ] {
            let Some((rate, p99)) = ingest else { continue };
            lines.push(Line::info(
                format!("ingest, {kind} ({load})"),
                format!("{} ev/s, p99 {}", fmt_int(rate), fmt_us(p99)),
                Score::plain(rate, per_second),
            ));
            if let Some(floor_rate) = self.floor_single {
                lines.push(Line::scored(
                    format!("ingest ({kind}, {load}) / floor single-row ({floor})"),
                    Score::at_least(rate / floor_rate, 2.0, ratio),
                ));
            }
        }
        if let Some(rate) = self.drain {
            if self.backend == "sqlite" {
                lines.push(Line::scored(
                    "drain",
                    Score::at_least(rate, 20_000.0, per_second),
                ));
            } else {
                lines.push(Line::info(
                    "drain",
                    format!("{} deliveries/s", fmt_int(rate)),
                    Score::plain(rate, per_second),
                ));
            }
            if let Some(peer) = self.graphile {
                lines.push(Line::info(
                    "graphile-worker drain (batched)",
                    format!("{} jobs/s", fmt_int(peer)),
                    Score::plain(peer, per_second),
                ));
                lines.push(Line::scored(
                    "drain / graphile",
                    Score::at_least(rate / peer, 2.0, ratio),
                ));
            }
        }
        if let Some(p) = self.latency {
            lines.push(Line::scored(
                "latency POST -> handler start, p50",
                Score::at_most(p.p50 as f64, 2_000.0, micros),
            ));
            lines.push(Line::scored(
                "latency POST -> handler start, p99",
                Score::at_most(p.p99 as f64, 10_000.0, micros),
            ));
        }
        for (k, rate) in &self.fanout {
            lines.push(Line::info(
                format!("fanout {k}"),
                format!("{} deliveries/s", fmt_int(*rate)),
                Score::plain(*rate, per_second),
            ));
        }
        let fan = |k: u32| self.fanout.iter().find(|(n, _)| *n == k).map(|(_, r)| *r);
        if let (Some(one), Some(sixteen)) = (fan(1), fan(16)) {
            lines.push(Line::scored(
                "fanout16 / fanout1 deliveries/s",
                Score::at_least(sixteen / one, 8.0, ratio),
            ));
        }
        if !self.steady_tried.is_empty() {
            let tried: Vec<String> = self
                .steady_tried
                .iter()
                .map(|(rate, ok, p99)| {
                    format!(
                        "{rate}/s: p99 {} {}",
                        fmt_us(*p99),
                        if *ok { "ok" } else { "over" }
                    )
                })
                .collect();
            let mut line = Line::info(
                "steady: highest rate with p99 <= 100 ms",
                self.steady_best
                    .map_or("none".to_owned(), |r| format!("{r}/s")),
                Score::plain(self.steady_best.map_or(0.0, f64::from), per_second),
            );
            line.remark = tried.join("; ");
            lines.push(line);
        }
        lines
    }

    pub fn print(&self) {
        let mut table = Table::new();
        table
            .load_preset(ASCII_MARKDOWN)
            .set_header(vec!["figure", "measured", "target", "verdict"]);
        for line in self.lines() {
            table.add_row(vec![
                line.figure.clone(),
                line.measured.clone(),
                line.target.clone(),
                line.verdict(),
            ]);
        }
        println!("\n## Summary ({})\n\n{table}", self.backend);
    }
}

/// What each summary measured of `figure`, in order: `None` where it was not measured.
fn values_of(summaries: &[Summary], figure: &str) -> Vec<Option<f64>> {
    summaries
        .iter()
        .map(|summary| {
            summary
                .lines()
                .into_iter()
                .find(|line| line.figure == figure)
                .map(|line| line.score.value)
        })
        .collect()
}

/// The median of the values that were measured; `None` if none was.
fn median_of(values: &[Option<f64>]) -> Option<f64> {
    let mut measured: Vec<f64> = values.iter().flatten().copied().collect();
    (!measured.is_empty()).then(|| median(&mut measured))
}

/// Each figure's line, once, in the order the summaries first show it.
fn figures(summaries: &[&Summary]) -> Vec<Line> {
    let mut figures: Vec<Line> = Vec::new();
    for summary in summaries {
        for line in summary.lines() {
            if !figures.iter().any(|known| known.figure == line.figure) {
                figures.push(line);
            }
        }
    }
    figures
}

/// Prints, for each figure with a target, what each round measured and the median
/// of the rounds, judged against the target. Each round's ratios use that round's
/// own baseline.
pub fn print_rounds(rounds: &[Summary]) {
    let Some(first) = rounds.first() else { return };
    let mut header = vec!["figure".to_owned()];
    header.extend((1..=rounds.len()).map(|round| format!("round {round}")));
    header.extend([
        "median".to_owned(),
        "target".to_owned(),
        "verdict".to_owned(),
    ]);
    let mut table = Table::new();
    table.load_preset(ASCII_MARKDOWN).set_header(header);
    for line in first.lines() {
        let score = line.score;
        if score.bound.is_none() {
            continue;
        }
        let values = values_of(rounds, &line.figure);
        let Some(middle) = median_of(&values) else {
            continue;
        };
        let mut row = vec![line.figure.clone()];
        row.extend(
            values
                .iter()
                .map(|value| value.map_or("-".to_owned(), score.show)),
        );
        row.push((score.show)(middle));
        row.push(line.target.clone());
        row.push(score.verdict(middle));
        table.add_row(row);
    }
    println!(
        "\n## Rounds ({}, {} rounds)\n\n{table}",
        first.backend,
        rounds.len()
    );
}

/// Prints every figure of two builds measured in alternating rounds (`--against`):
/// each build's value per round, each build's median, and the median over the rounds
/// of B's value divided by A's in the same round. Runs next to each other in time
/// share the machine's state, so that ratio is steadier than the two medians'.
pub fn print_comparison(a: &[Summary], b: &[Summary]) {
    let backend = a.first().map_or("", |summary| summary.backend.as_str());
    println!(
        "\n## A against B ({backend}, {} rounds)\n\n{}",
        a.len().max(b.len()),
        comparison(a, b)
    );
}

fn comparison(a: &[Summary], b: &[Summary]) -> Table {
    let mut table = Table::new();
    table.load_preset(ASCII_MARKDOWN).set_header(vec![
        "figure",
        "A per round",
        "B per round",
        "A median",
        "B median",
        "B / A, median of rounds",
        "target",
        "verdict A / B",
    ]);
    let summaries: Vec<&Summary> = a.iter().chain(b).collect();
    for line in figures(&summaries) {
        let show = line.score.show;
        let (of_a, of_b) = (values_of(a, &line.figure), values_of(b, &line.figure));
        let per_round = |values: &[Option<f64>]| {
            values
                .iter()
                .map(|value| value.map_or("-".to_owned(), show))
                .collect::<Vec<_>>()
                .join(" · ")
        };
        let ratios: Vec<Option<f64>> = of_a
            .iter()
            .zip(&of_b)
            .map(|(a, b)| match (a, b) {
                (Some(a), Some(b)) if *a != 0.0 => Some(b / a),
                _ => None,
            })
            .collect();
        let (median_a, median_b) = (median_of(&of_a), median_of(&of_b));
        let judge = |value: Option<f64>| value.map_or_else(String::new, |v| line.score.verdict(v));
        table.add_row(vec![
            line.figure.clone(),
            per_round(&of_a),
            per_round(&of_b),
            median_a.map_or("-".to_owned(), show),
            median_b.map_or("-".to_owned(), show),
            median_of(&ratios).map_or("-".to_owned(), ratio),
            line.target.clone(),
            if line.score.bound.is_some() {
                format!("{} / {}", judge(median_a), judge(median_b))
            } else {
                String::new()
            },
        ]);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::{Score, Summary, comparison, median, micros, per_second, ratio};
    use crate::{FloorClient, LoadGen};

    #[test]
    fn a_score_states_and_judges_its_target() {
        let drain = Score::at_least(1.81, 2.0, ratio);
        assert_eq!(drain.target(), ">= 2.00x");
        assert_eq!(drain.met(drain.value), Some(false));
        assert_eq!(drain.met(2.0), Some(true));
        let latency = Score::at_most(1_560.0, 2_000.0, micros);
        assert_eq!(latency.target(), "<= 2.00 ms");
        assert_eq!(latency.met(latency.value), Some(true));
        assert_eq!(latency.met(2_001.0), Some(false));
        let rate = Score::plain(9_000.0, per_second);
        assert_eq!((rate.target(), rate.met(rate.value)), (String::new(), None));
    }

    fn fanout(one: f64, sixteen: f64) -> Summary {
        Summary {
            backend: "postgres".to_owned(),
            fanout: vec![(1, one), (16, sixteen)],
            ..Summary::default()
        }
    }

    #[test]
    fn a_comparison_takes_b_over_a_round_by_round() {
        // Round 2 ran on a machine twice as fast: the medians of each build mix the
        // rounds, the ratio of each round's pair does not.
        let a = [fanout(10_000.0, 25_000.0), fanout(20_000.0, 50_000.0)];
        let b = [fanout(11_000.0, 30_000.0), fanout(22_000.0, 60_000.0)];
        let table = comparison(&a, &b).to_string();
        let row = |figure: &str| {
            table
                .lines()
                .find(|line| line.starts_with(&format!("| {figure} ")))
                .unwrap_or_else(|| panic!("no row {figure} in\n{table}"))
                .split('|')
                .map(str::trim)
                .skip(1)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            row("fanout 16")[..6],
            [
                "fanout 16",
                "25,000/s · 50,000/s",
                "30,000/s · 60,000/s",
                "37,500/s",
                "45,000/s",
                "1.20x",
            ]
        );
        let ratio_row = row("fanout16 / fanout1 deliveries/s");
        assert_eq!(ratio_row[5], "1.09x");
        assert_eq!(ratio_row[7], "MISSED / MISSED");
    }

    #[test]
    fn the_ingest_ratio_names_its_load_generator_and_floor() {
        let summary = Summary {
            backend: "postgres".to_owned(),
            floor_single: Some(10_000.0),
            floor_client: FloorClient::Pgbench,
            ingest_pure: Some((20_000.0, 5_000)),
            ingest_load: LoadGen::Wrk,
            ..Summary::default()
        };
        let line = summary
            .lines()
            .into_iter()
            .find(|line| line.figure.contains(" / floor"))
            .expect("a ratio line");
        assert_eq!(
            line.figure,
            "ingest (no triggers, wrk) / floor single-row (pgbench -M prepared)"
        );
        assert_eq!(
            (line.measured.as_str(), line.verdict().as_str()),
            ("2.00x", "met")
        );
    }

    #[test]
    fn a_summary_without_load_or_floor_used_the_built_in_clients() {
        let older = r#"{"backend":"postgres","floor_single":9000.0,"floor_batch":null,
            "ingest":null,"ingest_pure":[18000.0,4000],"drain":null,"graphile":null,
            "latency":null,"fanout":[],"steady_best":null,"steady_tried":[]}"#;
        let summary: Summary = serde_json::from_str(older).unwrap();
        assert_eq!(summary.ingest_load, LoadGen::Builtin);
        assert_eq!(summary.floor_client, FloorClient::Builtin);
        assert!(summary.lines().iter().any(|line| line.figure
            == "ingest (no triggers, in-process client) / floor single-row (sqlx)"));
    }

    #[test]
    fn median_takes_the_middle_or_the_mean_of_the_two_middles() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&mut [7.0]), 7.0);
    }
}
