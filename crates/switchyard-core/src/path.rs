//! Paths into an event: an attribute name (`type`, `subject`) or a `data.` path.

use std::fmt;

use serde_json::Value;

use crate::Event;
use crate::cloudevents;

/// Where a filter or an ordering key looks in an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FieldPath {
    /// A CloudEvents attribute such as `type`, `subject` or `partitionkey`, or an
    /// extension attribute such as `tenant`.
    Attribute(String),
    /// A path into `data`, split on dots; numeric segments also index arrays.
    Data(Vec<String>),
}

/// The attributes every event may carry. A path may also name any other extension
/// attribute (see [`cloudevents::check_extension_name`]).
pub const ATTRIBUTES: &[&str] = &[
    "specversion",
    "id",
    "source",
    "type",
    "subject",
    "time",
    "datacontenttype",
    "dataschema",
    "partitionkey",
    "traceparent",
    cloudevents::SWITCHYARD_ID,
];

impl FieldPath {
    /// Parses `type`, `subject`, an extension name such as `tenant`, `data` or
    /// `data.order.id`. Any valid extension name is accepted, as events differ in the
    /// extensions they carry: a misspelt attribute is an extension no event has, so a
    /// filter on it matches nothing.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text == "data" {
            return Ok(Self::Data(Vec::new()));
        }
        if let Some(rest) = text.strip_prefix("data.") {
            let segments: Vec<String> = rest.split('.').map(str::to_owned).collect();
            if segments.iter().any(String::is_empty) {
                return Err(format!("{text:?} has an empty path segment"));
            }
            return Ok(Self::Data(segments));
        }
        if ATTRIBUTES.contains(&text) || cloudevents::check_extension_name(text).is_ok() {
            return Ok(Self::Attribute(text.to_owned()));
        }
        Err(format!(
            "{text:?} is not an event attribute, extension name (lowercase a-z and 0-9) or data path (use one of {}, an extension such as tenant, or data.FIELD)",
            ATTRIBUTES.join(", ")
        ))
    }

    /// The value at this path, if the event has one.
    pub fn lookup(&self, event: &Event) -> Option<Value> {
        match self {
            Self::Attribute(name) => event.attribute(name),
            Self::Data(segments) => {
                let mut current = event.data.as_ref()?;
                for segment in segments {
                    current = match current {
                        Value::Object(map) => map.get(segment)?,
                        Value::Array(items) => items.get(segment.parse::<usize>().ok()?)?,
                        _ => return None,
                    };
                }
                Some(current.clone())
            }
        }
    }

    /// The value at this path as text: strings as they are, other scalars in JSON form.
    /// Objects, arrays, null and a missing value give `None`.
    pub fn lookup_text(&self, event: &Event) -> Option<String> {
        match self.lookup(event)? {
            Value::String(s) => Some(s),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Attribute(name) => f.write_str(name),
            Self::Data(segments) if segments.is_empty() => f.write_str("data"),
            Self::Data(segments) => write!(f, "data.{}", segments.join(".")),
        }
    }
}

impl<'de> serde::Deserialize<'de> for FieldPath {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for FieldPath {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn looks_up_attributes_and_data() {
        let event = Event::new("s", "/s", "order.created")
            .with_json(json!({"order": {"id": 7, "lines": [{"sku": "a"}]}}));
        let path = |t| FieldPath::parse(t).unwrap();
        assert_eq!(
            path("type").lookup_text(&event).as_deref(),
            Some("order.created")
        );
        assert_eq!(
            path("data.order.id").lookup_text(&event).as_deref(),
            Some("7")
        );
        assert_eq!(
            path("data.order.lines.0.sku")
                .lookup_text(&event)
                .as_deref(),
            Some("a")
        );
        assert_eq!(path("data.missing").lookup(&event), None);
        assert_eq!(path("subject").lookup(&event), None);
    }

    #[test]
    fn extension_names_are_attributes_and_other_names_are_refused() {
        let mut event = Event::new("s", "/s", "t");
        event.extensions.insert("tenant".into(), json!("acme"));
        let tenant = FieldPath::parse("tenant").unwrap();
        assert_eq!(tenant, FieldPath::Attribute("tenant".into()));
        assert_eq!(tenant.lookup_text(&event).as_deref(), Some("acme"));
        assert_eq!(
            FieldPath::parse("switchyardid")
                .unwrap()
                .lookup_text(&event),
            Some(event.switchyard_id.to_string())
        );
        for bad in ["Tenant", "ten_ant", "data_base64", ""] {
            let err = FieldPath::parse(bad).unwrap_err();
            assert!(err.contains("not an event attribute"), "{bad}: {err}");
        }
        assert!(FieldPath::parse("data..x").is_err());
    }
}
