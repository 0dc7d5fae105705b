//! `switchyard schedules`: each cron source with its next fires, its last fires and
//! their lateness, and the fires it skipped.

use chrono::{DateTime, Utc};
use clap::Args;
use serde::Serialize;
use switchyard_core::config::{Config, SourceConfig};
use switchyard_core::schedule::Schedule;
use switchyard_store::{EventQuery, Store};

use super::output::{self, Table, column, key, time};
use super::{CliResult, ConfigArg};

#[derive(Args, Debug)]
pub struct SchedulesArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// How many recent fires and skips to show per schedule.
    #[arg(long, default_value_t = 5)]
    last: u32,
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Report {
    source: String,
    schedule: String,
    timezone: String,
    enabled: bool,
    next: Vec<NextFire>,
    last: Vec<LastFire>,
    skipped: Vec<DateTime<Utc>>,
}

#[derive(Serialize)]
struct NextFire {
    local: String,
    utc: DateTime<Utc>,
}

#[derive(Serialize)]
struct LastFire {
    scheduled_time: String,
    fired_at: Option<String>,
    lateness_ms: Option<i64>,
}

pub async fn schedules(config: &Config, store: &dyn Store, args: SchedulesArgs) -> CliResult {
    let now = Utc::now();
    let mut reports = Vec::new();
    for (name, source) in &config.sources {
        let SourceConfig::Cron(cron) = source else {
            continue;
        };
        let schedule = Schedule::parse(&cron.schedule, &cron.timezone)?;
        let next = schedule
            .upcoming(now, 5)
            .into_iter()
            .map(|t| NextFire {
                local: t.to_rfc3339(),
                utc: t.with_timezone(&Utc),
            })
            .collect();
        let query = EventQuery {
            source: Some(name.clone()),
            limit: args.last,
            ..EventQuery::default()
        };
        let mut last = Vec::new();
        for summary in store.list_events(&query).await? {
            let Some(detail) = store.get_event(summary.id).await? else {
                continue;
            };
            let data = detail.event.data.unwrap_or_default();
            let fired_at = data["fired_at"].as_str().map(str::to_owned);
            let lateness_ms = fired_at
                .as_deref()
                .and_then(|f| DateTime::parse_from_rfc3339(f).ok())
                .map(|f| (f.with_timezone(&Utc) - detail.event.time).num_milliseconds());
            last.push(LastFire {
                scheduled_time: data["scheduled_time"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                fired_at,
                lateness_ms,
            });
        }
        let skipped = store.list_skipped(name, args.last).await?;
        reports.push(Report {
            source: name.clone(),
            schedule: cron.schedule.clone(),
            timezone: cron.timezone.clone(),
            enabled: cron.enabled,
            next,
            last,
            skipped,
        });
    }
    if args.json {
        output::print_json(&reports);
        return Ok(());
    }
    if reports.is_empty() {
        println!("no cron sources in {}", args.config.config.display());
    }
    for r in &reports {
        let state = if r.enabled { "" } else { " (disabled)" };
        println!("{}: {:?} in {}{state}", r.source, r.schedule, r.timezone);
        let mut table = Table::new(&[key("next fire (local)"), column("UTC", 5, 23)]);
        for n in &r.next {
            table.add_row([n.local.clone(), time(n.utc)]);
        }
        println!("{table}");
        if !r.last.is_empty() {
            let mut table = Table::new(&[
                key("last fires (scheduled)"),
                column("fired at", 5, 23),
                column("late", 6, 8),
            ]);
            for l in &r.last {
                let late = l
                    .lateness_ms
                    .map_or_else(|| "-".to_owned(), |ms| format!("{ms} ms"));
                table.add_row([
                    l.scheduled_time.clone(),
                    l.fired_at.clone().unwrap_or_default(),
                    late,
                ]);
            }
            println!("{table}");
        }
        if !r.skipped.is_empty() {
            let skipped: Vec<String> = r.skipped.iter().map(|t| time(*t)).collect();
            println!("skipped (UTC): {}", skipped.join(", "));
        }
        println!();
    }
    Ok(())
}
