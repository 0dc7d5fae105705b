//! The CloudEvents 1.0 envelope every event is normalized to.

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// An event as Switchyard stores and delivers it.
///
/// The CloudEvents attributes serialize under their spec names, so `serde_json::to_vec`
/// of an `Event` is a valid structured-mode CloudEvent. The Switchyard bookkeeping
/// fields (`source_name`, `dedupe_key`, `received_at`) are not part of that form.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Always `1.0`.
    pub specversion: String,
    /// Unique id assigned by Switchyard at ingress (a UUIDv7, so ids sort by time).
    pub id: Uuid,
    /// The CloudEvents `source`, such as `/hooks/github` or `s3://images`.
    pub source: String,
    /// The CloudEvents `type`, such as `http.request` or `s3.object.created`.
    #[serde(rename = "type")]
    pub ty: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// When the occurrence happened, as the producer says; else when it was received.
    pub time: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datacontenttype: Option<String>,
    /// The payload, when it is JSON or text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    /// The payload, base64-encoded, when it is binary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_base64: Option<String>,
    /// Extension: the ordering key the producer asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitionkey: Option<String>,
    /// Extension: W3C trace context carried from ingress to the handler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// The name of the configured source this event came from.
    #[serde(skip)]
    pub source_name: String,
    /// The natural dedupe key; a second event with the same key from the same source is
    /// not created.
    #[serde(skip)]
    pub dedupe_key: Option<String>,
    #[serde(skip, default = "Utc::now")]
    pub received_at: DateTime<Utc>,
}

/// The payload could not be decoded into the type a handler asked for.
#[derive(Debug, thiserror::Error)]
#[error("event {id} data does not decode as {target}: {reason}")]
pub struct DataError {
    pub id: Uuid,
    pub target: &'static str,
    pub reason: String,
}

/// Why an event cannot be stored as it is: a text in it holds a NUL character
/// (U+0000), which Postgres cannot keep in `text` or `jsonb`. SQLite is held to the
/// same rule, so that both stores accept the same events.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{place} holds a NUL character (U+0000), which the event log cannot store")]
pub struct Unstorable {
    /// Where: an attribute name, or a path into `data` such as `data.body.name`,
    /// `data.items[2]`, or `a key of data.body`.
    pub place: String,
}

impl Event {
    /// Checks that every text of the event can be stored: no attribute, and no string
    /// or object key anywhere in `data`, holds a NUL character. Sources refuse (HTTP
    /// answers 400) or quarantine an event that fails, naming the place; nothing is
    /// rewritten. The dedupe key is not checked: the store keeps a key it cannot
    /// index as its digest.
    pub fn check_storable(&self) -> Result<(), Unstorable> {
        let attributes = [
            ("source", Some(self.source.as_str())),
            ("type", Some(self.ty.as_str())),
            ("subject", self.subject.as_deref()),
            ("datacontenttype", self.datacontenttype.as_deref()),
            ("data_base64", self.data_base64.as_deref()),
            ("partitionkey", self.partitionkey.as_deref()),
            ("traceparent", self.traceparent.as_deref()),
        ];
        for (name, value) in attributes {
            if value.is_some_and(has_nul) {
                return Err(Unstorable {
                    place: name.to_owned(),
                });
            }
        }
        match &self.data {
            Some(data) if json_has_nul(data) => Err(Unstorable {
                place: nul_place(data, "data".to_owned()).unwrap_or_else(|| "data".to_owned()),
            }),
            _ => Ok(()),
        }
    }

    /// A new event from `source_name` with a fresh id, received now.
    pub fn new(
        source_name: impl Into<String>,
        source: impl Into<String>,
        ty: impl Into<String>,
    ) -> Self {
        let now = Utc::now();
        Self {
            specversion: "1.0".to_owned(),
            id: Uuid::now_v7(),
            source: source.into(),
            ty: ty.into(),
            subject: None,
            time: now,
            datacontenttype: None,
            data: None,
            data_base64: None,
            partitionkey: None,
            traceparent: None,
            source_name: source_name.into(),
            dedupe_key: None,
            received_at: now,
        }
    }

    pub fn with_subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    pub fn with_json(mut self, data: Value) -> Self {
        self.datacontenttype = Some("application/json".to_owned());
        self.data = Some(data);
        self
    }

    pub fn with_dedupe_key(mut self, key: impl Into<String>) -> Self {
        self.dedupe_key = Some(key.into());
        self
    }

    /// Decodes `data` into `T`. Handlers usually treat this error as fatal: retrying
    /// will not change the payload.
    pub fn data_as<T: DeserializeOwned>(&self) -> Result<T, DataError> {
        let err = |reason: String| DataError {
            id: self.id,
            target: std::any::type_name::<T>(),
            reason,
        };
        match &self.data {
            Some(value) => T::deserialize(value).map_err(|e| err(e.to_string())),
            None => Err(err("the event has no JSON data".to_owned())),
        }
    }

    /// Looks up an attribute by CloudEvents name, as filters and ordering keys do.
    pub fn attribute(&self, name: &str) -> Option<Value> {
        let text = |s: &str| Some(Value::String(s.to_owned()));
        match name {
            "specversion" => text(&self.specversion),
            "id" => Some(Value::String(self.id.to_string())),
            "source" => text(&self.source),
            "type" => text(&self.ty),
            "subject" => self.subject.as_deref().and_then(text),
            "time" => Some(Value::String(self.time.to_rfc3339())),
            "datacontenttype" => self.datacontenttype.as_deref().and_then(text),
            "partitionkey" => self.partitionkey.as_deref().and_then(text),
            "traceparent" => self.traceparent.as_deref().and_then(text),
            _ => None,
        }
    }
}

fn has_nul(text: &str) -> bool {
    text.contains('\0')
}

/// Whether any string or key in `value` holds NUL; cheap, builds no path.
fn json_has_nul(value: &Value) -> bool {
    match value {
        Value::String(text) => has_nul(text),
        Value::Array(items) => items.iter().any(json_has_nul),
        Value::Object(map) => map
            .iter()
            .any(|(key, value)| has_nul(key) || json_has_nul(value)),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

/// The path of the first string or key in `value` (found at `at`) that holds NUL.
fn nul_place(value: &Value, at: String) -> Option<String> {
    match value {
        Value::String(text) => has_nul(text).then_some(at),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| nul_place(item, format!("{at}[{i}]"))),
        Value::Object(map) => map.iter().find_map(|(key, value)| {
            if has_nul(key) {
                Some(format!("a key of {at}"))
            } else {
                nul_place(value, format!("{at}.{key}"))
            }
        }),
        Value::Null | Value::Bool(_) | Value::Number(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn serializes_as_a_structured_cloudevent() {
        let event = Event::new("github", "/hooks/github", "push")
            .with_subject("repo")
            .with_json(json!({"a": 1}));
        let value = serde_json::to_value(&event).unwrap();
        assert_eq!(value["specversion"], "1.0");
        assert_eq!(value["type"], "push");
        assert_eq!(value["data"], json!({"a": 1}));
        assert!(value.get("source_name").is_none());
        assert!(value.get("data_base64").is_none());
    }

    #[test]
    fn a_nul_character_anywhere_is_found_and_named() {
        let clean = Event::new("s", "/s", "t").with_json(json!({"a": ["x", {"b": "y"}]}));
        assert_eq!(clean.check_storable(), Ok(()));
        let place = |event: Event| event.check_storable().unwrap_err().place;
        assert_eq!(
            place(Event::new("s", "/s", "t").with_json(json!({"a": ["x", {"b": "y\0"}]}))),
            "data.a[1].b"
        );
        assert_eq!(
            place(Event::new("s", "/s", "t").with_json(json!({"a": {"k\0": 1}}))),
            "a key of data.a"
        );
        assert_eq!(
            place(Event::new("s", "/s", "t").with_json(json!("\0"))),
            "data"
        );
        assert_eq!(
            place(Event::new("s", "/s", "t").with_subject("a\0")),
            "subject"
        );
        let mut typed = Event::new("s", "/s", "t\0");
        assert_eq!(place(typed.clone()), "type");
        typed.ty = "t".to_owned();
        typed.dedupe_key = Some("k\0".to_owned());
        assert_eq!(
            typed.check_storable(),
            Ok(()),
            "the store digests such keys"
        );
    }

    #[test]
    fn data_as_reports_the_target_type() {
        #[derive(Debug, Deserialize)]
        struct Order {
            #[allow(dead_code)]
            id: u64,
        }
        let event = Event::new("s", "/s", "t").with_json(json!({"id": "x"}));
        let err = event.data_as::<Order>().unwrap_err();
        assert!(err.to_string().contains("Order"), "{err}");
    }
}
