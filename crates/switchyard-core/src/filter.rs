//! Trigger filters: exact, prefix and suffix matches on attributes and `data` paths,
//! combined with `all`, `any` and `not`.
//!
//! In YAML a filter is a map. Every key must hold, so a map is an implicit `all`:
//!
//! ```yaml
//! filter:
//!   type: s3.object.created          # exact
//!   subject: { suffix: .jpg }
//!   data.size: 42                    # exact, on a number
//!   any:
//!     - data.region: eu-west-1
//!     - not: { data.key: { prefix: tmp/ } }
//! ```

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::{Event, FieldPath};

/// A predicate over an event.
#[derive(Clone, Debug, PartialEq)]
pub enum Filter {
    /// Every filter of an explicit `all` list holds.
    All(Vec<Filter>),
    /// Every clause of one map holds (a map of several keys is an implicit `all`).
    Clauses(Vec<Filter>),
    Any(Vec<Filter>),
    Not(Box<Filter>),
    Field {
        path: FieldPath,
        matcher: Matcher,
    },
}

/// Whether an event passes a filter, and if not, why: see [`Filter::explain`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", content = "failures", rename_all = "snake_case")]
pub enum Verdict {
    Matched,
    /// The clauses that failed; never empty.
    Failed(Vec<Failure>),
}

/// One filter clause an event failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// Where the clause is in the filter, as written in YAML: `subject`,
    /// `any[1].data.size`, `not.type`.
    pub place: String,
    /// The attribute or data path the clause looks at.
    pub path: String,
    /// What the clause wanted: `"s3.object.created"`, `prefix "tmp/"`, `not suffix ".jpg"`.
    pub expected: String,
    /// The value the event has there, as JSON, cut to [`SEEN_CHARS`] characters;
    /// `None` when the event has no value there.
    pub seen: Option<String>,
}

/// The longest [`Failure::seen`] excerpt, in characters.
pub const SEEN_CHARS: usize = 120;

/// How a field's value is compared.
#[derive(Clone, Debug, PartialEq)]
pub enum Matcher {
    /// Equal as JSON values: `42` matches the number 42, `"42"` the string.
    Exact(Value),
    /// The value is a string starting with this text.
    Prefix(String),
    /// The value is a string ending with this text.
    Suffix(String),
}

impl Filter {
    /// Whether `event` passes the filter. A missing field matches nothing, so
    /// `not: { data.x: 1 }` passes events without `data.x`.
    pub fn matches(&self, event: &Event) -> bool {
        self.evaluate(event, false, None)
    }

    /// Whether `event` passes the filter, and if not, every clause that failed with
    /// the value the event has there. Agrees with [`matches`](Self::matches): both run
    /// the same evaluation, this one without stopping at the first failure.
    pub fn explain(&self, event: &Event) -> Verdict {
        let mut failures = Vec::new();
        if self.evaluate(event, false, Some(("", &mut failures))) {
            return Verdict::Matched;
        }
        if failures.is_empty() {
            // Only an empty list fails without a failed leaf: `any: []`, or
            // `not: { all: [] }`.
            failures.push(Failure {
                place: "filter".to_owned(),
                path: String::new(),
                expected: "a clause in an empty list, which no event passes".to_owned(),
                seen: None,
            });
        }
        Verdict::Failed(failures)
    }

    /// Whether the filter holds for `event` (its negation, when `negated`). With a
    /// sink (the clause's place prefix and a list), a clause that does not hold adds
    /// its failed leaves to the list, and one that holds adds nothing; without one,
    /// combinators stop at the first clause that decides them.
    fn evaluate(
        &self,
        event: &Event,
        negated: bool,
        sink: Option<(&str, &mut Vec<Failure>)>,
    ) -> bool {
        let filters = match self {
            Self::Field { path, matcher } => {
                let value = path.lookup(event);
                let holds = value.as_ref().is_some_and(|v| matcher.matches(v)) != negated;
                if !holds && let Some((place, failures)) = sink {
                    failures.push(Failure {
                        place: format!("{place}{path}"),
                        path: path.to_string(),
                        expected: matcher.describe(negated),
                        seen: value.map(|v| excerpt(&v)),
                    });
                }
                return holds;
            }
            Self::Not(filter) => {
                return match sink {
                    None => filter.evaluate(event, !negated, None),
                    Some((place, failures)) => {
                        let place = format!("{place}not.");
                        filter.evaluate(event, !negated, Some((&place, failures)))
                    }
                };
            }
            Self::All(filters) | Self::Clauses(filters) | Self::Any(filters) => filters,
        };
        // By De Morgan, a negated `all` is an `any` of negated filters and vice versa.
        let every = matches!(self, Self::All(_) | Self::Clauses(_)) != negated;
        let Some((place, failures)) = sink else {
            return if every {
                filters.iter().all(|f| f.evaluate(event, negated, None))
            } else {
                filters.iter().any(|f| f.evaluate(event, negated, None))
            };
        };
        let mut found = Vec::new();
        let mut holds = every;
        for (i, filter) in filters.iter().enumerate() {
            let place = match self {
                Self::All(_) => format!("{place}all[{i}]."),
                Self::Any(_) => format!("{place}any[{i}]."),
                _ => place.to_owned(),
            };
            let held = filter.evaluate(event, negated, Some((&place, &mut found)));
            holds = if every { holds && held } else { holds || held };
        }
        if !holds {
            failures.append(&mut found);
        }
        holds
    }

    /// Builds a filter from its YAML/JSON form; the error names the offending key.
    pub fn from_value(value: &Value) -> Result<Self, String> {
        let Value::Object(map) = value else {
            return Err("a filter is a map of attribute or data path to a match".to_owned());
        };
        let mut parts = Vec::with_capacity(map.len());
        for (key, value) in map {
            let at = |e: String| format!("{key}: {e}");
            let part = match key.as_str() {
                "all" | "any" => {
                    let Value::Array(items) = value else {
                        return Err(at("expects a list of filters".to_owned()));
                    };
                    let filters = items
                        .iter()
                        .enumerate()
                        .map(|(i, item)| {
                            Self::from_value(item).map_err(|e| format!("{key}[{i}].{e}"))
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    if key == "all" {
                        Self::All(filters)
                    } else {
                        Self::Any(filters)
                    }
                }
                "not" => Self::Not(Box::new(
                    Self::from_value(value).map_err(|e| format!("not.{e}"))?,
                )),
                _ => Self::Field {
                    path: FieldPath::parse(key).map_err(at)?,
                    matcher: Matcher::from_value(value).map_err(at)?,
                },
            };
            parts.push(part);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Self::Clauses(parts)
        })
    }
}

impl Matcher {
    fn matches(&self, value: &Value) -> bool {
        match (self, value) {
            (Self::Exact(expected), value) => expected == value,
            (Self::Prefix(prefix), Value::String(s)) => s.starts_with(prefix.as_str()),
            (Self::Suffix(suffix), Value::String(s)) => s.ends_with(suffix.as_str()),
            _ => false,
        }
    }

    /// What the matcher wants, for an explanation: `"a"`, `prefix "tmp/"`, and with
    /// `not ` in front when `negated`.
    fn describe(&self, negated: bool) -> String {
        let not = if negated { "not " } else { "" };
        match self {
            Self::Exact(value) => format!("{not}{}", excerpt(value)),
            Self::Prefix(prefix) => {
                format!("{not}prefix {}", excerpt(&Value::from(prefix.as_str())))
            }
            Self::Suffix(suffix) => {
                format!("{not}suffix {}", excerpt(&Value::from(suffix.as_str())))
            }
        }
    }

    fn from_value(value: &Value) -> Result<Self, String> {
        let Value::Object(map) = value else {
            return match value {
                Value::Array(_) | Value::Null => {
                    Err("expects a value or one of {exact|prefix|suffix: ...}".to_owned())
                }
                scalar => Ok(Self::Exact(scalar.clone())),
            };
        };
        let mut entries = map.iter();
        let (Some((op, operand)), None) = (entries.next(), entries.next()) else {
            return Err("a match has exactly one of exact, prefix or suffix".to_owned());
        };
        let text = || match operand {
            Value::String(s) => Ok(s.clone()),
            _ => Err(format!("{op} expects a string")),
        };
        match op.as_str() {
            "exact" => Ok(Self::Exact(operand.clone())),
            "prefix" => Ok(Self::Prefix(text()?)),
            "suffix" => Ok(Self::Suffix(text()?)),
            other => Err(format!(
                "unknown match {other:?} (use exact, prefix or suffix)"
            )),
        }
    }
}

/// A value as JSON, cut to [`SEEN_CHARS`] characters with `…` at the cut.
fn excerpt(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() <= SEEN_CHARS {
        return text;
    }
    let mut cut: String = text.chars().take(SEEN_CHARS - 1).collect();
    cut.push('…');
    cut
}

impl<'de> Deserialize<'de> for Filter {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Self::from_value(&value).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn filter(value: Value) -> Filter {
        Filter::from_value(&value).unwrap()
    }

    fn upload(key: &str, size: u64) -> Event {
        Event::new("uploads", "s3://images", "s3.object.created")
            .with_subject(key)
            .with_json(json!({"key": key, "size": size, "region": "eu-west-1"}))
    }

    #[test]
    fn exact_prefix_and_suffix_on_attributes_and_data() {
        let f = filter(
            json!({"type": "s3.object.created", "subject": {"suffix": ".jpg"}, "data.size": 42}),
        );
        assert!(f.matches(&upload("a.jpg", 42)));
        assert!(!f.matches(&upload("a.png", 42)));
        assert!(!f.matches(&upload("a.jpg", 43)));
        let f = filter(json!({"data.key": {"prefix": "in/"}}));
        assert!(f.matches(&upload("in/a.jpg", 1)));
        assert!(!f.matches(&upload("out/a.jpg", 1)));
    }

    #[test]
    fn combinators() {
        let f = filter(json!({"any": [{"subject": {"prefix": "tmp/"}}, {"data.size": 0}]}));
        assert!(f.matches(&upload("tmp/x", 5)));
        assert!(f.matches(&upload("x", 0)));
        assert!(!f.matches(&upload("x", 5)));
        let f = filter(json!({"not": {"subject": {"prefix": "tmp/"}}}));
        assert!(!f.matches(&upload("tmp/x", 5)));
        assert!(f.matches(&upload("x", 5)));
        let f =
            filter(json!({"all": [{"data.region": "eu-west-1"}, {"not": {"data.missing": 1}}]}));
        assert!(f.matches(&upload("x", 5)));
    }

    #[test]
    fn a_number_does_not_match_its_string_form() {
        assert!(!filter(json!({"data.size": "42"})).matches(&upload("a", 42)));
        assert!(!filter(json!({"data.size": {"prefix": "4"}})).matches(&upload("a", 42)));
    }

    fn failures(f: &Filter, event: &Event) -> Vec<(String, String, Option<String>)> {
        match f.explain(event) {
            Verdict::Matched => panic!("{f:?} matched"),
            Verdict::Failed(failures) => failures
                .into_iter()
                .map(|f| (f.place, f.expected, f.seen))
                .collect(),
        }
    }

    fn failure(
        place: &str,
        expected: &str,
        seen: Option<&str>,
    ) -> (String, String, Option<String>) {
        (place.into(), expected.into(), seen.map(Into::into))
    }

    #[test]
    fn explain_names_each_failed_clause_and_the_value_seen() {
        let f = filter(
            json!({"type": "s3.object.created", "subject": {"suffix": ".jpg"}, "data.size": 42}),
        );
        assert_eq!(f.explain(&upload("a.jpg", 42)), Verdict::Matched);
        assert_eq!(
            failures(&f, &upload("a.png", 7)),
            [
                failure("data.size", "42", Some("7")),
                failure("subject", "suffix \".jpg\"", Some("\"a.png\"")),
            ]
        );
        let f = filter(json!({"any": [{"subject": {"prefix": "tmp/"}}, {"data.missing": 0}]}));
        assert_eq!(
            failures(&f, &upload("x", 5)),
            [
                failure("any[0].subject", "prefix \"tmp/\"", Some("\"x\"")),
                failure("any[1].data.missing", "0", None),
            ]
        );
        let f =
            filter(json!({"all": [{"not": {"subject": {"prefix": "tmp/"}}}, {"data.size": 5}]}));
        assert_eq!(
            failures(&f, &upload("tmp/x", 5)),
            [failure(
                "all[0].not.subject",
                "not prefix \"tmp/\"",
                Some("\"tmp/x\"")
            )]
        );
        let f = filter(json!({"not": {"any": [{"data.size": 5}, {"data.size": 6}]}}));
        assert_eq!(
            failures(&f, &upload("x", 5)),
            [failure("not.any[0].data.size", "not 5", Some("5"))],
            "a negated any fails on the clauses that held"
        );
        let f = filter(json!({"any": []}));
        assert_eq!(failures(&f, &upload("x", 5))[0].0, "filter");
    }

    #[test]
    fn explain_cuts_long_values() {
        let long = "k".repeat(500);
        let f = filter(json!({"subject": "short"}));
        let seen = failures(&f, &upload(&long, 1))[0].2.clone().unwrap();
        assert_eq!(seen.chars().count(), SEEN_CHARS);
        assert!(seen.ends_with('…'), "{seen}");
    }

    /// `matches` and `explain` run one evaluation; they must agree on every filter.
    #[test]
    fn explain_agrees_with_matches() {
        let leaves = [
            json!({"subject": {"prefix": "tmp/"}}),
            json!({"subject": {"suffix": ".jpg"}}),
            json!({"data.size": 5}),
            json!({"data.missing": 1}),
            json!({"type": "s3.object.created"}),
        ];
        let mut filters: Vec<Value> = leaves.to_vec();
        for a in &leaves {
            filters.push(json!({"not": a}));
            for b in &leaves {
                filters.push(json!({"any": [a, b]}));
                filters.push(json!({"all": [a, {"not": b}]}));
                filters.push(json!({"not": {"any": [a, {"not": b}]}}));
                filters.push(json!({"not": {"all": [a, b]}}));
                let mut map = a.as_object().unwrap().clone();
                map.extend(b.as_object().unwrap().clone());
                filters.push(json!({"not": map.clone()}));
                filters.push(Value::Object(map));
            }
        }
        filters.push(json!({"any": []}));
        filters.push(json!({"all": []}));
        filters.push(json!({"not": {"all": []}}));
        let events = [
            upload("tmp/a.jpg", 5),
            upload("a.jpg", 6),
            upload("tmp/b.png", 6),
            upload("c.png", 5),
            Event::new("uploads", "s3://images", "s3.object.removed"),
        ];
        let mut cases = 0;
        for f in &filters {
            let f = filter(f.clone());
            for event in &events {
                let verdict = f.explain(event);
                assert_eq!(
                    f.matches(event),
                    verdict == Verdict::Matched,
                    "{f:?} on {event:?}"
                );
                if let Verdict::Failed(failures) = verdict {
                    assert!(!failures.is_empty(), "{f:?}");
                }
                cases += 1;
            }
        }
        assert!(cases > 500, "{cases}");
    }

    #[test]
    fn errors_name_the_key() {
        let err = Filter::from_value(&json!({"any": [{"Subject": "x"}]})).unwrap_err();
        assert!(err.starts_with("any[0].Subject:"), "{err}");
        let err = Filter::from_value(&json!({"type": {"startswith": "x"}})).unwrap_err();
        assert!(err.contains("unknown match \"startswith\""), "{err}");
    }
}
