//! The commands that look into the store: `events`, `event`, `dlq`, `replay` and
//! `rejected`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use switchyard_core::config::Config;
use switchyard_core::{HumanDuration, cloudevents};
use switchyard_store::{DeadQuery, DeliveryStatus, EventQuery, Store};
use uuid::Uuid;

use super::names;
use super::output::{self, Table, clip, column, key, opt, time};
use super::{CliError, CliResult, ConfigArg};
use crate::explain::Explanation;
use crate::replay;
use crate::router::Router;

/// A point in time: RFC 3339, or a duration ago such as `15m` or `2d`.
#[derive(Clone, Debug)]
pub struct Since(DateTime<Utc>);

impl std::str::FromStr for Since {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if let Ok(t) = DateTime::parse_from_rfc3339(text) {
            return Ok(Self(t.with_timezone(&Utc)));
        }
        let ago: HumanDuration = text.parse().map_err(|_| {
            format!("{text:?} is neither an RFC 3339 time nor a duration such as 15m")
        })?;
        let ago = chrono::Duration::from_std(ago.get()).map_err(|e| e.to_string())?;
        Ok(Self(Utc::now() - ago))
    }
}

fn parse_status(text: &str) -> Result<DeliveryStatus, String> {
    DeliveryStatus::parse(text).ok_or_else(|| {
        format!("{text:?} is not a status (pending, running, succeeded, dead, replayed)")
    })
}

#[derive(Args, Debug)]
pub struct EventsArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    #[arg(long)]
    source: Option<String>,
    #[arg(long = "type")]
    ty: Option<String>,
    /// Only events delivered to this trigger.
    #[arg(long)]
    trigger: Option<String>,
    /// Only events with a delivery in this status.
    #[arg(long, value_parser = parse_status)]
    status: Option<DeliveryStatus>,
    /// RFC 3339 time, or a duration ago (`15m`).
    #[arg(long)]
    since: Option<Since>,
    #[arg(long, default_value_t = 50)]
    limit: u32,
    /// Keep printing new events as they arrive.
    #[arg(long, short)]
    follow: bool,
    #[arg(long)]
    json: bool,
}

pub async fn events(store: &dyn Store, config: &Config, args: EventsArgs) -> CliResult {
    if let Some(source) = &args.source {
        names::source(config, source)?;
    }
    if let Some(trigger) = &args.trigger {
        names::trigger(config, trigger)?;
    }
    if let Some(ty) = &args.ty {
        names::event_type(config, args.source.as_deref(), ty)?;
    }
    let mut query = EventQuery {
        source: args.source,
        ty: args.ty,
        trigger: args.trigger,
        status: args.status,
        since: args.since.map(|s| s.0),
        after: None,
        limit: args.limit,
    };
    let mut events = store.list_events(&query).await?;
    events.reverse();
    print_events(&events, args.json, true);
    if !args.follow {
        return Ok(());
    }
    let mut last = events.last().map(|e| e.id).or_else(|| Some(Uuid::nil()));
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        query.after = last;
        query.limit = 500;
        let new = store.list_events(&query).await?;
        if let Some(newest) = new.last() {
            last = Some(newest.id);
            print_events(&new, args.json, false);
        }
    }
}

fn print_events(events: &[switchyard_store::EventSummary], json: bool, header: bool) {
    if json {
        for event in events {
            match serde_json::to_string(event) {
                Ok(line) => println!("{line}"),
                Err(error) => eprintln!("error: {error}"),
            }
        }
        return;
    }
    if events.is_empty() {
        if header {
            println!("no events");
        }
        return;
    }
    let mut table = Table::new(&[
        key("id"),
        column("received", 5, 23),
        column("source", 8, 8),
        column("type", 6, 12),
        column("subject", 3, 8),
        column("deliveries", 7, 30),
    ]);
    for e in events {
        let deliveries = format!(
            "{} ok / {} pending / {} dead of {}",
            e.succeeded, e.pending, e.dead, e.deliveries
        );
        table.add_row([
            e.id.to_string(),
            time(e.received_at),
            e.source_name.clone(),
            e.ty.clone(),
            opt(e.subject.as_deref()),
            deliveries,
        ]);
    }
    println!("{table}");
}

#[derive(Args, Debug)]
pub struct EventArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// The event id.
    id: Uuid,
    #[arg(long)]
    json: bool,
}

/// Prints one event. An event no trigger took gets the routing explanation instead of
/// an empty deliveries table.
pub async fn event(store: &dyn Store, router: &Router, args: EventArgs) -> CliResult {
    let detail = store
        .get_event(args.id)
        .await?
        .ok_or_else(|| CliError(format!("no event {}", args.id)))?;
    if args.json {
        output::print_json(&detail);
        return Ok(());
    }
    let e = &detail.event;
    println!("event    {}", e.switchyard_id);
    if e.id != e.switchyard_id.to_string() {
        println!("ce id    {}", e.id);
    }
    println!("source   {} ({})", detail.source_name, e.source);
    println!("type     {}", e.ty);
    println!("subject  {}", opt(e.subject.as_deref()));
    println!(
        "time     {}   received {}",
        time(e.time),
        time(detail.received_at)
    );
    if let Some(schema) = &e.dataschema {
        println!("schema   {schema}");
    }
    for (name, value) in &e.extensions {
        println!("ext      {name}={}", cloudevents::value_text(value));
    }
    println!("dedupe   {}", opt(detail.dedupe_key.as_deref()));
    if let Some(data) = &e.data {
        println!("data     {}", clip(&data.to_string(), 200));
    }
    if detail.deliveries.is_empty() {
        println!("\nno trigger matched");
        print!("{}", Explanation::new(router, e));
        return Ok(());
    }
    let mut table = Table::new(&[
        key("delivery"),
        column("trigger", 9, 10),
        column("attempt", 6, 7),
        column("started", 4, 23),
        column("ms", 3, 6),
        column("outcome", 8, 9),
        column("error", 7, 24),
    ]);
    for d in &detail.deliveries {
        if d.attempt_log.is_empty() {
            table.add_row([
                d.id.to_string(),
                d.trigger.clone(),
                "-".into(),
                "-".into(),
                "-".into(),
                d.status.as_str().into(),
                opt(d.last_error.as_deref()),
            ]);
        }
        for a in &d.attempt_log {
            table.add_row([
                d.id.to_string(),
                d.trigger.clone(),
                a.attempt.to_string(),
                time(a.started_at),
                a.duration_ms.to_string(),
                a.outcome.as_str().into(),
                a.error.clone().unwrap_or_default(),
            ]);
        }
    }
    println!("{table}");
    for d in &detail.deliveries {
        println!(
            "delivery {} to {}: {} after {} attempt(s)",
            d.id,
            d.trigger,
            d.status.as_str(),
            d.attempts
        );
    }
    for d in &detail.deliveries {
        for a in &d.attempt_log {
            if let Some(output) = &a.output {
                println!(
                    "\noutput of delivery {} to {}, attempt {}:",
                    d.id, d.trigger, a.attempt
                );
                for line in output.lines() {
                    println!("    {line}");
                }
            }
        }
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct ExplainArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// The event id.
    id: Uuid,
    #[arg(long)]
    json: bool,
}

/// Says, for every trigger of a stored event's source, whether it matches the event
/// and which filter clauses fail if not.
pub async fn explain(store: &dyn Store, router: &Router, args: ExplainArgs) -> CliResult {
    let detail = store
        .get_event(args.id)
        .await?
        .ok_or_else(|| CliError(format!("no event {}", args.id)))?;
    let explanation = Explanation::new(router, &detail.event);
    if args.json {
        output::print_json(&explanation);
    } else {
        print!("{explanation}");
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct DlqArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    #[command(subcommand)]
    command: DlqCommand,
}

#[derive(Subcommand, Debug)]
enum DlqCommand {
    /// List dead letters, newest first.
    List {
        #[arg(long)]
        trigger: Option<String>,
        #[arg(long)]
        since: Option<Since>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// One dead letter with its attempts.
    Show {
        id: i64,
        #[arg(long)]
        json: bool,
    },
    /// Replay one dead letter (by delivery id), or all of a trigger.
    Replay {
        id: Option<i64>,
        #[arg(long, conflicts_with = "id", required_unless_present = "id")]
        trigger: Option<String>,
        #[arg(long, requires = "trigger")]
        since: Option<Since>,
        #[arg(long)]
        json: bool,
    },
    /// Delete dead letters: of one trigger, older than a time, or all.
    Purge {
        #[arg(long)]
        trigger: Option<String>,
        /// Only those that died before this time (RFC 3339, or a duration ago: `7d`).
        #[arg(long)]
        before: Option<Since>,
        /// Confirm deleting every dead letter when no filter is given.
        #[arg(long)]
        all: bool,
    },
}

pub async fn dlq(store: &dyn Store, config: &Config, args: DlqArgs) -> CliResult {
    match args.command {
        DlqCommand::List {
            trigger,
            since,
            limit,
            json,
        } => {
            let dead = store
                .list_dead(&DeadQuery {
                    trigger,
                    since: since.map(|s| s.0),
                    limit,
                    ..DeadQuery::default()
                })
                .await?;
            if json {
                output::print_json(&dead);
            } else if dead.is_empty() {
                println!("no dead letters");
            } else {
                let mut table = Table::new(&[
                    key("delivery"),
                    column("event", 2, 36),
                    column("trigger", 9, 10),
                    column("type", 3, 10),
                    column("attempts", 4, 8),
                    column("died", 5, 23),
                    column("last error", 8, 30),
                ]);
                for d in &dead {
                    table.add_row([
                        d.delivery_id.to_string(),
                        d.event_id.to_string(),
                        d.trigger.clone(),
                        d.ty.clone(),
                        d.attempts.to_string(),
                        time(d.died_at),
                        d.last_error.clone().unwrap_or_default(),
                    ]);
                }
                println!("{table}");
            }
        }
        DlqCommand::Show { id, json } => {
            let delivery = store
                .get_delivery(id)
                .await?
                .ok_or_else(|| CliError(format!("no delivery {id}")))?;
            if json {
                output::print_json(&delivery);
            } else {
                println!(
                    "delivery {} of event {} to {}: {}",
                    delivery.id,
                    delivery.event_id,
                    delivery.trigger,
                    delivery.status.as_str()
                );
                println!("last error: {}", opt(delivery.last_error.as_deref()));
                let mut table = Table::new(&[
                    key("attempt"),
                    column("started", 5, 23),
                    column("ms", 3, 6),
                    column("outcome", 8, 9),
                    column("error", 7, 24),
                ]);
                for a in &delivery.attempt_log {
                    table.add_row([
                        a.attempt.to_string(),
                        time(a.started_at),
                        a.duration_ms.to_string(),
                        a.outcome.as_str().into(),
                        opt(a.error.as_deref()),
                    ]);
                }
                println!("{table}");
            }
        }
        DlqCommand::Replay {
            id,
            trigger,
            since,
            json,
        } => {
            if let Some(trigger) = &trigger {
                names::replay_trigger(config, trigger, None)?;
            }
            let ids = match id {
                Some(id) => vec![id],
                None => {
                    let query = DeadQuery {
                        trigger,
                        since: since.map(|s| s.0),
                        ..DeadQuery::default()
                    };
                    store
                        .list_dead(&query)
                        .await?
                        .iter()
                        .map(|d| d.delivery_id)
                        .collect()
                }
            };
            let created = store.replay_dead(&ids).await?;
            if id.is_some() && created.is_empty() {
                return Err(CliError(format!(
                    "delivery {} is not a dead letter",
                    ids[0]
                )));
            }
            if json {
                output::print_json(
                    &serde_json::json!({ "replayed": ids.len(), "deliveries": created }),
                );
            } else {
                println!(
                    "replayed {} dead letter(s) as new deliveries {:?}",
                    created.len(),
                    created
                );
            }
        }
        DlqCommand::Purge {
            trigger,
            before,
            all,
        } => {
            if trigger.is_none() && before.is_none() && !all {
                return Err(CliError(
                    "purge needs --trigger, --before, or --all to delete every dead letter".into(),
                ));
            }
            let query = DeadQuery {
                trigger,
                before: before.map(|b| b.0),
                ..DeadQuery::default()
            };
            let purged = store.purge_dead(&query).await?;
            println!("purged {purged} dead letter(s)");
        }
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// One event to replay.
    #[arg(conflicts_with_all = ["since", "until"], required_unless_present = "since")]
    id: Option<Uuid>,
    /// Replay to this trigger only (its filter is not applied).
    #[arg(long)]
    trigger: Option<String>,
    /// Start of the window (RFC 3339 or a duration ago).
    #[arg(long)]
    since: Option<Since>,
    /// End of the window; defaults to now.
    #[arg(long, requires = "since")]
    until: Option<Since>,
    /// Only events of this source.
    #[arg(long, requires = "since")]
    source: Option<String>,
}

pub async fn replay(
    store: &dyn Store,
    config: &Config,
    router: &Router,
    args: ReplayArgs,
) -> CliResult {
    if let Some(id) = args.id {
        let detail = store
            .get_event(id)
            .await?
            .ok_or_else(|| CliError(format!("no event {id}")))?;
        if let Some(trigger) = &args.trigger {
            names::replay_trigger(config, trigger, Some(&detail.source_name))?;
        }
        let created =
            replay::replay_event(store, router, &detail.event, args.trigger.as_deref()).await?;
        if created.is_empty() {
            return Err(CliError(format!(
                "no trigger of source {:?} matches event {id}",
                detail.source_name
            )));
        }
        println!("event {id} → new deliveries {created:?}");
        return Ok(());
    }
    let since = args
        .since
        .map(|s| s.0)
        .expect("clap requires --since without an id");
    let until = args.until.map_or_else(Utc::now, |u| u.0);
    names::window(since, until)?;
    if let Some(source) = &args.source {
        names::source(config, source)?;
    }
    if let Some(trigger) = &args.trigger {
        names::replay_trigger(config, trigger, args.source.as_deref())?;
    }
    let (events, deliveries) = replay::replay_window(
        store,
        router,
        since,
        until,
        args.source.as_deref(),
        args.trigger.as_deref(),
        |events, deliveries| {
            eprint!("\rreplayed {events} event(s), {deliveries} deliveries");
        },
    )
    .await?;
    eprintln!();
    println!("replayed {events} event(s) as {deliveries} new deliveries");
    Ok(())
}

#[derive(Args, Debug)]
pub struct RejectedArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Only inputs this source rejected.
    #[arg(long)]
    source: Option<String>,
    #[arg(long, default_value_t = 50)]
    limit: u32,
    /// Full bodies, as JSON.
    #[arg(long)]
    json: bool,
}

/// `switchyard rejected`: inputs sources could not turn into events, newest first.
pub async fn rejected(store: &dyn Store, args: RejectedArgs) -> CliResult {
    let rejected = store
        .list_rejected(args.source.as_deref(), args.limit)
        .await?;
    if args.json {
        output::print_json(&rejected);
    } else if rejected.is_empty() {
        println!("no rejected inputs");
    } else {
        let mut table = Table::new(&[
            key("id"),
            column("source", 8, 8),
            column("received", 5, 23),
            column("input", 4, 12),
            column("reason", 7, 24),
            column("body", 2, 12),
        ]);
        for input in &rejected {
            table.add_row([
                input.id.to_string(),
                input.source_name.clone(),
                time(input.received_at),
                input.input_id.clone(),
                input.reason.clone(),
                input.body.clone(),
            ]);
        }
        println!("{table}");
    }
    Ok(())
}
