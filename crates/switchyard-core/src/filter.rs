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

use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::{Event, FieldPath};

/// A predicate over an event.
#[derive(Clone, Debug, PartialEq)]
pub enum Filter {
    All(Vec<Filter>),
    Any(Vec<Filter>),
    Not(Box<Filter>),
    Field { path: FieldPath, matcher: Matcher },
}

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
        match self {
            Self::All(filters) => filters.iter().all(|f| f.matches(event)),
            Self::Any(filters) => filters.iter().any(|f| f.matches(event)),
            Self::Not(filter) => !filter.matches(event),
            Self::Field { path, matcher } => path
                .lookup(event)
                .is_some_and(|value| matcher.matches(&value)),
        }
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
            Self::All(parts)
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

    #[test]
    fn errors_name_the_key() {
        let err = Filter::from_value(&json!({"any": [{"subjct": "x"}]})).unwrap_err();
        assert!(err.starts_with("any[0].subjct:"), "{err}");
        let err = Filter::from_value(&json!({"type": {"startswith": "x"}})).unwrap_err();
        assert!(err.contains("unknown match \"startswith\""), "{err}");
    }
}
