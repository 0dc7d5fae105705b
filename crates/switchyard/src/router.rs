//! Routing: which triggers an event goes to, and with which ordering key.

use std::collections::HashMap;

use switchyard_core::config::Config;
use switchyard_core::{Event, Failure, FieldPath, Filter, Verdict};
use switchyard_store::NewDelivery;

/// The triggers of each source, ready to match events against. Disabled triggers are
/// kept, marked, so that an explanation can name them; they get no deliveries.
#[derive(Clone, Debug, Default)]
pub struct Router {
    by_source: HashMap<String, Vec<Route>>,
}

#[derive(Clone, Debug)]
struct Route {
    trigger: String,
    enabled: bool,
    filter: Option<Filter>,
    ordering: Option<FieldPath>,
}

/// Whether one trigger takes an event, as [`Router::explain`] finds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TriggerVerdict {
    /// The trigger has no filter, or the event passes it.
    Matched,
    /// The event fails the trigger's filter, at these clauses (never empty).
    FilteredOut(Vec<Failure>),
    /// The trigger is disabled; its filter was not evaluated.
    Disabled,
}

impl Router {
    /// Routes for every trigger of `config`.
    pub fn new(config: &Config) -> Self {
        let mut by_source: HashMap<String, Vec<Route>> = HashMap::new();
        for (name, trigger) in &config.triggers {
            by_source
                .entry(trigger.source.clone())
                .or_default()
                .push(Route {
                    trigger: name.clone(),
                    enabled: trigger.enabled,
                    filter: trigger.filter.clone(),
                    ordering: trigger.ordering.as_ref().map(|o| o.key.clone()),
                });
        }
        Self { by_source }
    }

    /// For every trigger of `source_name`, by name, whether it takes
    /// `event`, and why not. Uses the same filters as [`route`](Self::route).
    pub fn explain(&self, source_name: &str, event: &Event) -> Vec<(String, TriggerVerdict)> {
        let Some(routes) = self.by_source.get(source_name) else {
            return Vec::new();
        };
        routes
            .iter()
            .map(|r| {
                let verdict = if !r.enabled {
                    TriggerVerdict::Disabled
                } else {
                    match r.filter.as_ref().map(|f| f.explain(event)) {
                        None | Some(Verdict::Matched) => TriggerVerdict::Matched,
                        Some(Verdict::Failed(failures)) => TriggerVerdict::FilteredOut(failures),
                    }
                };
                (r.trigger.clone(), verdict)
            })
            .collect()
    }

    /// The deliveries `event` gets: one per matching trigger of its source.
    pub fn route(&self, event: &Event) -> Vec<NewDelivery> {
        self.routes(event, None)
    }

    /// Deliveries for a replay: to every matching trigger, or to the one named
    /// trigger of the event's source, whose filter is then not applied (the operator
    /// asked for it explicitly).
    pub fn routes(&self, event: &Event, only: Option<&str>) -> Vec<NewDelivery> {
        let Some(routes) = self.by_source.get(&event.source_name) else {
            return Vec::new();
        };
        routes
            .iter()
            .filter(|r| r.enabled && only.is_none_or(|t| t == r.trigger))
            .filter(|r| only.is_some() || r.filter.as_ref().is_none_or(|f| f.matches(event)))
            .map(|r| NewDelivery {
                trigger: r.trigger.clone(),
                ordering_key: r.ordering.as_ref().and_then(|path| path.lookup_text(event)),
                claim: false,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use switchyard_core::config::PlaceholderEnv;

    #[test]
    fn fans_out_to_matching_triggers_with_ordering_keys() {
        let config = Config::parse(
            r#"
sources: { orders: { http: { path: /orders } }, other: { http: { path: /other } } }
triggers:
  all: { source: orders, handler: log }
  big: { source: orders, handler: log, filter: { data.total: { prefix: "9" } } }
  ordered: { source: orders, handler: log, ordering: { key: data.customer } }
  elsewhere: { source: other, handler: log }
  off: { source: orders, handler: log, enabled: false }
"#,
            &PlaceholderEnv,
        )
        .unwrap();
        let router = Router::new(&config);
        let event = Event::new("orders", "/orders", "http.request")
            .with_json(json!({"total": "99", "customer": 7}));
        let deliveries = router.route(&event);
        let triggers: Vec<_> = deliveries.iter().map(|d| d.trigger.as_str()).collect();
        assert_eq!(triggers, ["all", "big", "ordered"]);
        assert_eq!(deliveries[2].ordering_key.as_deref(), Some("7"));
        assert_eq!(deliveries[0].ordering_key, None);
        assert_eq!(router.routes(&event, Some("big")).len(), 1);
        let small =
            Event::new("orders", "/orders", "http.request").with_json(json!({"total": "5"}));
        assert!(!router.route(&small).iter().any(|d| d.trigger == "big"));
        assert_eq!(
            router.routes(&small, Some("big"))[0].trigger,
            "big",
            "an explicit replay skips the filter"
        );
        assert!(
            router.routes(&small, Some("elsewhere")).is_empty(),
            "only triggers of the event's source"
        );
        let unknown = Event::new("nope", "/nope", "x");
        assert!(router.route(&unknown).is_empty());
        assert!(
            router.routes(&event, Some("off")).is_empty(),
            "a disabled trigger gets no delivery, even named"
        );
    }

    #[test]
    fn explains_every_trigger_of_the_source() {
        let config = Config::parse(
            r#"
sources: { orders: { http: { path: /orders } }, other: { http: { path: /other } } }
triggers:
  all: { source: orders, handler: log }
  big: { source: orders, handler: log, filter: { data.total: { prefix: "9" } } }
  elsewhere: { source: other, handler: log }
  off: { source: orders, handler: log, enabled: false }
"#,
            &PlaceholderEnv,
        )
        .unwrap();
        let router = Router::new(&config);
        let small =
            Event::new("orders", "/orders", "http.request").with_json(json!({"total": "5"}));
        let verdicts = router.explain("orders", &small);
        let names: Vec<_> = verdicts.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(names, ["all", "big", "off"], "by name");
        assert_eq!(verdicts[0].1, TriggerVerdict::Matched);
        let TriggerVerdict::FilteredOut(failures) = &verdicts[1].1 else {
            panic!("{:?}", verdicts[1]);
        };
        assert_eq!(failures[0].place, "data.total");
        assert_eq!(failures[0].seen.as_deref(), Some("\"5\""));
        assert_eq!(verdicts[2].1, TriggerVerdict::Disabled);
        assert!(router.explain("nope", &small).is_empty());
    }
}
