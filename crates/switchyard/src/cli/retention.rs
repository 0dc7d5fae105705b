//! `switchyard retention`: delete what has expired now, or with `--dry-run` say what
//! would go, per table.

use std::io::IsTerminal;

use chrono::Utc;
use clap::Args;
use serde::Serialize;
use switchyard_core::config::{RetainedTable, RetentionConfig};
use switchyard_store::{RETENTION_BATCH, RetentionDeleted, RetentionDue, Store};

use super::output::{self, Table, column, key, time};
use super::{CliResult, ConfigArg};

#[derive(Args, Debug)]
pub struct RetentionArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Only count what would be deleted now, per table; delete nothing.
    #[arg(long)]
    dry_run: bool,
    #[arg(long)]
    json: bool,
}

/// A line of the dry run.
#[derive(Serialize)]
struct Due {
    #[serde(flatten)]
    due: RetentionDue,
    /// The period, with the sources that override it.
    period: String,
}

pub async fn retention(
    policy: &RetentionConfig,
    store: &dyn Store,
    args: RetentionArgs,
) -> CliResult {
    let now = Utc::now();
    if args.dry_run {
        let due: Vec<Due> = store
            .retention_due(policy, now)
            .await?
            .into_iter()
            .map(|due| Due {
                period: period(policy, due.table),
                due,
            })
            .collect();
        if args.json {
            output::print_json(&due);
            return Ok(());
        }
        let mut table = Table::new(&[
            key("table"),
            column("kept for", 6, 8),
            column("would delete", 7, 12),
            column("oldest of those", 5, 23),
            column("oldest row", 4, 23),
        ]);
        for line in &due {
            table.add_row([
                line.due.table.name().to_owned(),
                line.period.clone(),
                line.due.due.to_string(),
                line.due.oldest_due.map_or("-".into(), time),
                line.due.oldest.map_or("-".into(), time),
            ]);
        }
        println!("{table}");
        println!(
            "dry run: nothing was deleted; the times are when rows were received (dead letters: when they died)"
        );
        return Ok(());
    }

    let progress = !args.json && std::io::stderr().is_terminal();
    let mut total = RetentionDeleted::default();
    loop {
        let batch = store.delete_expired(policy, now, RETENTION_BATCH).await?;
        if batch.is_empty() {
            break;
        }
        total += batch;
        if progress {
            let rows: u64 = total.by_table().iter().map(|(_, n)| n).sum();
            eprint!("\rdeleting… {rows} rows so far");
        }
    }
    if progress {
        eprintln!();
    }
    if args.json {
        output::print_json(&total);
        return Ok(());
    }
    let mut table = Table::new(&[key("table"), key("deleted")]);
    for (name, count) in total.by_table() {
        table.add_row([name.to_owned(), count.to_string()]);
    }
    println!("{table}");
    println!("attempts were counted into the usage table before they were deleted");
    Ok(())
}

/// `30d`, `off`, or `30d (github: 7d, audit: off)`.
fn period(policy: &RetentionConfig, table: RetainedTable) -> String {
    let overrides: Vec<String> = policy
        .overrides(table)
        .map(|(source, period)| format!("{source}: {period}"))
        .collect();
    let default = policy.period(table);
    if overrides.is_empty() {
        default.to_string()
    } else {
        format!("{default} ({})", overrides.join(", "))
    }
}
