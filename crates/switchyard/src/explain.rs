//! Why an event went where it went: for every trigger of its source, whether it
//! matched, which filter clauses failed and with what value, or that it is disabled.
//! Shared by `switchyard explain`, `send --explain`, `event ID` and the admin API.
//!
//! The explanation judges the event against the configuration given now. When the
//! triggers changed since the event arrived, it can differ from the deliveries the
//! event got then.

use std::fmt::{self, Write as _};

use serde::Serialize;
use switchyard_core::{Event, Failure};
use uuid::Uuid;

use crate::router::{Router, TriggerVerdict};

/// The routing of one event, trigger by trigger.
#[derive(Clone, Debug, Serialize)]
pub struct Explanation {
    pub event_id: Uuid,
    /// The configured source the event came from.
    pub source_name: String,
    /// Every trigger of that source, by name; empty when the
    /// configuration has none.
    pub triggers: Vec<TriggerExplanation>,
}

/// Whether one trigger takes the event.
#[derive(Clone, Debug, Serialize)]
pub struct TriggerExplanation {
    pub trigger: String,
    /// `matched`, `filtered_out` or `disabled`.
    pub result: &'static str,
    /// For `filtered_out`: every filter clause the event failed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<Failure>,
}

impl Explanation {
    /// Explains `event` with the triggers `router` was built from.
    pub fn new(router: &Router, event: &Event) -> Self {
        let triggers = router
            .explain(&event.source_name, event)
            .into_iter()
            .map(|(trigger, verdict)| {
                let (result, failures) = match verdict {
                    TriggerVerdict::Matched => ("matched", Vec::new()),
                    TriggerVerdict::FilteredOut(failures) => ("filtered_out", failures),
                    TriggerVerdict::Disabled => ("disabled", Vec::new()),
                };
                TriggerExplanation {
                    trigger,
                    result,
                    failures,
                }
            })
            .collect();
        Self {
            event_id: event.switchyard_id,
            source_name: event.source_name.clone(),
            triggers,
        }
    }

    /// The triggers that take the event.
    pub fn matched(&self) -> impl Iterator<Item = &str> {
        self.triggers
            .iter()
            .filter(|t| t.result == "matched")
            .map(|t| t.trigger.as_str())
    }
}

/// The text form: a summary line, then one line per trigger with its failed clauses
/// indented below it.
impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.triggers.is_empty() {
            return writeln!(
                f,
                "source {} has no triggers in this configuration",
                self.source_name
            );
        }
        writeln!(
            f,
            "{} of {} trigger(s) of source {} match event {}",
            self.matched().count(),
            self.triggers.len(),
            self.source_name,
            self.event_id
        )?;
        let width = self.triggers.iter().map(|t| t.trigger.len()).max();
        let width = width.unwrap_or_default();
        for t in &self.triggers {
            let result = match t.result {
                "filtered_out" => "filtered out",
                other => other,
            };
            writeln!(f, "  {:width$}  {result}", t.trigger)?;
            for failure in &t.failures {
                let mut line = format!("      {}: expected {}", failure.place, failure.expected);
                match &failure.seen {
                    Some(seen) => write!(line, ", saw {seen}")?,
                    None if failure.path.is_empty() => {}
                    None => write!(line, ", but the event has no {}", failure.path)?,
                }
                writeln!(f, "{line}")?;
            }
        }
        Ok(())
    }
}
