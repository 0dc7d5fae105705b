//! `switchyard sources`: every configured source with its kind and its state, as the
//! configuration and the store tell it (see [`crate::sources::SourceKind::status`]).

use clap::Args;
use switchyard_core::config::Config;
use switchyard_store::Store;

use super::output::{self, Table, column, key};
use super::{CliResult, ConfigArg};

#[derive(Args, Debug)]
pub struct SourcesArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    #[arg(long)]
    json: bool,
}

pub async fn sources(config: &Config, store: &dyn Store, args: SourcesArgs) -> CliResult {
    let states = crate::sources::states(config, store).await?;
    if args.json {
        output::print_json(&states);
        return Ok(());
    }
    if states.is_empty() {
        println!("no sources in {}", args.config.config.display());
        return Ok(());
    }
    let mut table = Table::new(&[key("source"), key("kind"), column("state", 5, 20)]);
    for source in &states {
        let state: Vec<String> = source
            .state
            .iter()
            .map(|(field, value)| format!("{field}={}", show(value)))
            .collect();
        table.add_row([
            source.source.clone(),
            source.kind.to_owned(),
            state.join("  "),
        ]);
    }
    println!("{table}");
    Ok(())
}

/// A value as a table shows it: `-` for nothing, text as it is unless it has spaces
/// (then quoted, so fields stay apart), anything else as JSON.
fn show(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Null => "-".to_owned(),
        serde_json::Value::String(text)
            if text.contains(char::is_whitespace) || text.is_empty() =>
        {
            format!("{text:?}")
        }
        serde_json::Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}
