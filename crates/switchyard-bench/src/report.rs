//! Tables: one per workload, and the final summary against the targets.

use comfy_table::presets::ASCII_MARKDOWN;
use comfy_table::{CellAlignment, Table};

use crate::backend::Usage;
use crate::stats::{Percentiles, fmt_int, fmt_us};

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

/// The headline figures, filled in by the workloads that ran.
#[derive(Debug, Default)]
pub struct Summary {
    pub backend: &'static str,
    pub floor_single: Option<f64>,
    pub floor_batch: Option<f64>,
    pub ingest: Option<(f64, u64)>,
    pub ingest_pure: Option<(f64, u64)>,
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

impl Summary {
    pub fn print(&self) {
        let mut table = Table::new();
        table
            .load_preset(ASCII_MARKDOWN)
            .set_header(vec!["figure", "measured", "target", "verdict"]);
        let mut add = |figure: String, measured: String, target: &str, verdict: String| {
            table.add_row(vec![figure, measured, target.to_owned(), verdict]);
        };
        if let Some(rate) = self.floor_single {
            add(
                "floor: single-row INSERT, 8 conns".into(),
                format!("{} rows/s", fmt_int(rate)),
                "(denominator)",
                String::new(),
            );
        }
        if let Some(rate) = self.floor_batch {
            add(
                "floor: 500-row INSERT, 8 conns".into(),
                format!("{} rows/s", fmt_int(rate)),
                "(ceiling)",
                String::new(),
            );
        }
        for (kind, ingest) in [
            ("no triggers", self.ingest_pure),
            ("1 trigger, dispatcher running", self.ingest),
        ] {
            let Some((rate, p99)) = ingest else { continue };
            add(
                format!("ingest, {kind}"),
                format!("{} ev/s, p99 {}", fmt_int(rate), fmt_us(p99)),
                "",
                String::new(),
            );
            if let Some(floor) = self.floor_single {
                let ratio = rate / floor;
                add(
                    format!("ingest ({kind}) / floor single-row"),
                    format!("{ratio:.2}x"),
                    ">= 2x",
                    verdict(ratio >= 2.0),
                );
            }
        }
        if let Some(rate) = self.drain {
            add(
                "drain".into(),
                format!("{} deliveries/s", fmt_int(rate)),
                if self.backend == "sqlite" {
                    ">= 20,000/s"
                } else {
                    ""
                },
                if self.backend == "sqlite" {
                    verdict(rate >= 20_000.0)
                } else {
                    String::new()
                },
            );
            if let Some(peer) = self.graphile {
                add(
                    "graphile-worker drain (batched)".into(),
                    format!("{} jobs/s", fmt_int(peer)),
                    "",
                    String::new(),
                );
                let ratio = rate / peer;
                add(
                    "drain / graphile".into(),
                    format!("{ratio:.2}x"),
                    ">= 2x",
                    verdict(ratio >= 2.0),
                );
            }
        }
        if let Some(p) = self.latency {
            add(
                "latency POST -> handler start".into(),
                format!("p50 {}, p99 {}", fmt_us(p.p50), fmt_us(p.p99)),
                "p50 <= 2 ms, p99 <= 10 ms",
                verdict(p.p50 <= 2_000 && p.p99 <= 10_000),
            );
        }
        for (k, rate) in &self.fanout {
            add(
                format!("fanout {k}"),
                format!("{} deliveries/s", fmt_int(*rate)),
                "",
                String::new(),
            );
        }
        let fan = |k: u32| self.fanout.iter().find(|(n, _)| *n == k).map(|(_, r)| *r);
        if let (Some(one), Some(sixteen)) = (fan(1), fan(16)) {
            let ratio = sixteen / one;
            add(
                "fanout16 / fanout1 deliveries/s".into(),
                format!("{ratio:.2}x"),
                ">= 8x",
                verdict(ratio >= 8.0),
            );
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
            add(
                "steady: highest rate with p99 <= 100 ms".into(),
                self.steady_best
                    .map_or("none".to_owned(), |r| format!("{r}/s")),
                "",
                tried.join("; "),
            );
        }
        println!("\n## Summary ({})\n\n{table}", self.backend);
    }
}
