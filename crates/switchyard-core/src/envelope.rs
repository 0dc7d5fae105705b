//! The CloudEvents 1.0 envelope every event is normalized to.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::cloudevents::{self, CloudEventError};

/// An event as Switchyard stores and delivers it.
///
/// The CloudEvents attributes serialize under their spec names, so `serde_json::to_vec`
/// of an `Event` is a valid structured-mode CloudEvent, with Switchyard's own id as the
/// extension `switchyardid`. The Switchyard bookkeeping fields (`source_name`,
/// `dedupe_key`, `received_at`) are not part of that form.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Always `1.0`.
    pub specversion: String,
    /// The CloudEvents `id`: the producer's, for an event that arrived as a CloudEvent;
    /// otherwise the text of [`Event::switchyard_id`].
    pub id: String,
    /// Switchyard's own id, assigned at ingress (a UUIDv7, so ids sort by time): the
    /// key of the event log. Serialized as the extension `switchyardid`.
    #[serde(rename = "switchyardid")]
    pub switchyard_id: Uuid,
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
    /// The CloudEvents `dataschema`: a URI naming the schema `data` adheres to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataschema: Option<String>,
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
    /// Every other extension attribute the producer sent, by name. Names follow
    /// [`cloudevents::check_extension_name`]; values are strings, integers or booleans.
    /// Serialized flat, beside the other attributes.
    #[serde(flatten)]
    pub extensions: BTreeMap<String, Value>,
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
    /// Switchyard's id of the event.
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
            ("id", Some(self.id.as_str())),
            ("source", Some(self.source.as_str())),
            ("type", Some(self.ty.as_str())),
            ("subject", self.subject.as_deref()),
            ("datacontenttype", self.datacontenttype.as_deref()),
            ("dataschema", self.dataschema.as_deref()),
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
        for (name, value) in &self.extensions {
            if json_has_nul(value) {
                return Err(Unstorable {
                    place: name.clone(),
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

    /// A new event from `source_name` with a fresh id, received now. Its CloudEvents
    /// `id` is the text of its Switchyard id.
    pub fn new(
        source_name: impl Into<String>,
        source: impl Into<String>,
        ty: impl Into<String>,
    ) -> Self {
        let now = Utc::now();
        let switchyard_id = Uuid::now_v7();
        Self {
            specversion: cloudevents::SPECVERSION.to_owned(),
            id: switchyard_id.to_string(),
            switchyard_id,
            source: source.into(),
            ty: ty.into(),
            subject: None,
            time: now,
            datacontenttype: None,
            dataschema: None,
            data: None,
            data_base64: None,
            partitionkey: None,
            traceparent: None,
            extensions: BTreeMap::new(),
            source_name: source_name.into(),
            dedupe_key: None,
            received_at: now,
        }
    }

    /// An event from a CloudEvent's attributes, as the JSON object of structured mode
    /// holds them (`data` or `data_base64` included, when present). Every attribute is
    /// kept: the producer's `id`, `dataschema`, and every extension. A `switchyardid`
    /// the producer sent is replaced by the fresh Switchyard id. The dedupe key is
    /// `source` + `id`, so a redelivered CloudEvent is not stored twice.
    pub fn from_cloudevent(
        source_name: impl Into<String>,
        mut attributes: Map<String, Value>,
    ) -> Result<Self, CloudEventError> {
        let mut take = |name: &str| -> Result<Option<String>, CloudEventError> {
            match attributes.remove(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s)),
                Some(_) => Err(CloudEventError::NotAString(name.to_owned())),
            }
        };
        let specversion = take("specversion")?.ok_or(CloudEventError::Missing("specversion"))?;
        if specversion != cloudevents::SPECVERSION {
            return Err(CloudEventError::SpecVersion(specversion));
        }
        let required = |value: Option<String>, name: &'static str| {
            value
                .filter(|s| !s.is_empty())
                .ok_or(CloudEventError::Missing(name))
        };
        let id = required(take("id")?, "id")?;
        let source = required(take("source")?, "source")?;
        let ty = required(take("type")?, "type")?;
        let subject = take("subject")?;
        let time = take("time")?
            .map(|t| {
                DateTime::parse_from_rfc3339(&t)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|_| CloudEventError::Time(t))
            })
            .transpose()?;
        let datacontenttype = take("datacontenttype")?;
        let dataschema = take("dataschema")?;
        let partitionkey = take("partitionkey")?;
        let traceparent = take("traceparent")?;
        let data_base64 = take("data_base64")?;
        let data = attributes.remove("data").filter(|data| !data.is_null());
        attributes.remove(cloudevents::SWITCHYARD_ID);
        if data.is_some() && data_base64.is_some() {
            return Err(CloudEventError::DataTwice);
        }
        if let Some(encoded) = &data_base64 {
            BASE64
                .decode(encoded)
                .map_err(|error| CloudEventError::Base64(error.to_string()))?;
        }
        let mut extensions = BTreeMap::new();
        for (name, value) in attributes {
            if value.is_null() {
                continue;
            }
            cloudevents::check_extension_name(&name)?;
            cloudevents::check_extension_value(&name, &value)?;
            extensions.insert(name, value);
        }
        let dedupe_key = format!("cloudevent:{source}:{id}");
        let mut event = Self::new(source_name, source, ty).with_dedupe_key(dedupe_key);
        event.id = id;
        event.subject = subject;
        event.time = time.unwrap_or(event.time);
        event.datacontenttype = datacontenttype;
        event.dataschema = dataschema;
        event.partitionkey = partitionkey;
        event.traceparent = traceparent;
        event.data = data;
        event.data_base64 = data_base64;
        event.extensions = extensions;
        Ok(event)
    }

    /// The event's context attributes as structured mode writes them: every attribute
    /// but `data` and `data_base64`, `switchyardid` and the extensions included.
    pub fn context_attributes(&self) -> Map<String, Value> {
        let Ok(Value::Object(mut attributes)) = serde_json::to_value(self) else {
            unreachable!("an event serializes as a JSON object");
        };
        attributes.remove("data");
        attributes.remove("data_base64");
        attributes
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
            id: self.switchyard_id,
            target: std::any::type_name::<T>(),
            reason,
        };
        match &self.data {
            Some(value) => T::deserialize(value).map_err(|e| err(e.to_string())),
            None => Err(err("the event has no JSON data".to_owned())),
        }
    }

    /// Looks up an attribute by CloudEvents name, as filters and ordering keys do:
    /// a spec attribute, `switchyardid`, or an extension.
    pub fn attribute(&self, name: &str) -> Option<Value> {
        let text = |s: &str| Some(Value::String(s.to_owned()));
        match name {
            "specversion" => text(&self.specversion),
            "id" => text(&self.id),
            cloudevents::SWITCHYARD_ID => Some(Value::String(self.switchyard_id.to_string())),
            "source" => text(&self.source),
            "type" => text(&self.ty),
            "subject" => self.subject.as_deref().and_then(text),
            "time" => Some(Value::String(self.time.to_rfc3339())),
            "datacontenttype" => self.datacontenttype.as_deref().and_then(text),
            "dataschema" => self.dataschema.as_deref().and_then(text),
            "partitionkey" => self.partitionkey.as_deref().and_then(text),
            "traceparent" => self.traceparent.as_deref().and_then(text),
            "data" | "data_base64" => None,
            extension => self.extensions.get(extension).cloned(),
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
        assert_eq!(value["id"], event.switchyard_id.to_string());
        assert_eq!(value["switchyardid"], event.switchyard_id.to_string());
        let back: Event = serde_json::from_value(value).unwrap();
        assert_eq!(back.switchyard_id, event.switchyard_id);
        assert!(back.extensions.is_empty(), "{:?}", back.extensions);
    }

    fn cloudevent(attributes: Value) -> Result<Event, CloudEventError> {
        let Value::Object(map) = attributes else {
            panic!("not an object")
        };
        Event::from_cloudevent("in", map)
    }

    #[test]
    fn a_cloudevent_keeps_every_attribute_and_gets_its_own_switchyard_id() {
        let sent = json!({
            "specversion": "1.0", "id": "order-7", "source": "/orders", "type": "order.created",
            "subject": "o-7", "time": "2026-01-02T03:04:05Z", "datacontenttype": "application/json",
            "dataschema": "https://schemas.example/order.json", "partitionkey": "acct-1",
            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "tenant": "acme", "priority": 3, "urgent": true, "switchyardid": "forged",
            "data": {"total": 5},
        });
        let event = cloudevent(sent.clone()).unwrap();
        assert_eq!(event.id, "order-7");
        assert_eq!(
            event.dedupe_key.as_deref(),
            Some("cloudevent:/orders:order-7")
        );
        assert_eq!(
            event.dataschema.as_deref(),
            Some("https://schemas.example/order.json")
        );
        assert_eq!(event.attribute("tenant"), Some(json!("acme")));
        assert_eq!(event.attribute("priority"), Some(json!(3)));
        assert_eq!(event.attribute("missing"), None);
        let mut delivered = serde_json::to_value(&event).unwrap();
        assert_eq!(
            delivered["switchyardid"],
            event.switchyard_id.to_string(),
            "the producer's switchyardid is replaced"
        );
        delivered["switchyardid"] = json!("forged");
        assert_eq!(delivered, sent, "every attribute leaves as it came");
        assert_eq!(
            event.context_attributes().len(),
            sent.as_object().unwrap().len() - 1,
            "all but data"
        );
    }

    #[test]
    fn a_bad_cloudevent_is_refused_with_the_reason() {
        let base = |extra: Value| {
            let mut value = json!({"specversion": "1.0", "id": "1", "source": "/s", "type": "t"});
            value
                .as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            cloudevent(value).unwrap_err()
        };
        assert_eq!(base(json!({"id": ""})), CloudEventError::Missing("id"));
        assert_eq!(
            base(json!({"specversion": "0.3"})),
            CloudEventError::SpecVersion("0.3".into())
        );
        assert_eq!(
            base(json!({"Tenant": "x"})),
            CloudEventError::Name("Tenant".into())
        );
        assert_eq!(
            base(json!({"tenant": {"a": 1}})),
            CloudEventError::ExtensionValue("tenant".into())
        );
        assert_eq!(
            base(json!({"dataschema": 5})),
            CloudEventError::NotAString("dataschema".into())
        );
        assert_eq!(
            base(json!({"data": 1, "data_base64": "AA=="})),
            CloudEventError::DataTwice
        );
        assert_eq!(
            base(json!({"time": "yesterday"})),
            CloudEventError::Time("yesterday".into())
        );
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
        let mut extended = Event::new("s", "/s", "t");
        extended.extensions.insert("tenant".into(), json!("a\0"));
        assert_eq!(place(extended), "tenant");
        let mut schema = Event::new("s", "/s", "t");
        schema.dataschema = Some("\0".into());
        assert_eq!(place(schema), "dataschema");
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
