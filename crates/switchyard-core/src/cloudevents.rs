//! The CloudEvents 1.0 vocabulary Switchyard relies on: the attribute names, the
//! rules for extension names and values, Switchyard's own extension, and the
//! percent-encoding the HTTP binding uses for `ce-*` header values.
//!
//! An event that arrives as a CloudEvent keeps every attribute it came with: the
//! producer's `id`, `dataschema` and every extension. Switchyard's own event id, the
//! key of the event log, travels beside them as the extension [`SWITCHYARD_ID`].

use std::fmt::Write as _;

use serde_json::Value;

/// The only CloudEvents version Switchyard accepts and sends.
pub const SPECVERSION: &str = "1.0";

/// The attributes every CloudEvent carries.
pub const REQUIRED: [&str; 4] = ["specversion", "id", "source", "type"];

/// The optional attributes the spec defines, other than the payload (`data`).
pub const OPTIONAL: [&str; 4] = ["datacontenttype", "dataschema", "subject", "time"];

/// The extension attribute that carries Switchyard's own event id (the key of the
/// event log, the id `switchyard event`, the admin API and replay use) to handlers and
/// receivers. A producer's value for it is replaced at ingress.
pub const SWITCHYARD_ID: &str = "switchyardid";

/// Names a producer may not use for an extension: the payload members of the JSON
/// format, and [`SWITCHYARD_ID`], which Switchyard sets itself.
pub const RESERVED: [&str; 3] = ["data", "data_base64", SWITCHYARD_ID];

/// The length the spec recommends an attribute name not to exceed. Longer names are
/// accepted: the spec says SHOULD, and refusing them would drop a producer's event.
pub const RECOMMENDED_NAME_LEN: usize = 20;

/// Why a CloudEvent, or one of its attributes, is not accepted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CloudEventError {
    #[error("the CloudEvent has no {0:?} attribute")]
    Missing(&'static str),
    #[error("CloudEvents specversion {0:?} is not supported (use 1.0)")]
    SpecVersion(String),
    #[error("CloudEvent attribute {0:?} must be a string")]
    NotAString(String),
    #[error("CloudEvent time {0:?} is not an RFC 3339 timestamp")]
    Time(String),
    #[error("a CloudEvent carries either \"data\" or \"data_base64\", not both")]
    DataTwice,
    #[error("\"data_base64\" is not valid base64: {0}")]
    Base64(String),
    #[error(
        "{0:?} is not a valid CloudEvents attribute name: use only lowercase letters a-z and digits 0-9"
    )]
    Name(String),
    #[error("{0:?} is reserved and cannot be an extension attribute")]
    Reserved(String),
    #[error(
        "CloudEvent extension {0:?} must be a string, an integer or a boolean (not an object, array, fraction or null)"
    )]
    ExtensionValue(String),
    #[error("the value of header \"ce-{0}\" is not valid percent-encoded UTF-8")]
    HeaderValue(String),
}

/// Checks that `name` can be an extension attribute: one or more of `a`-`z` and
/// `0`-`9` (the spec's MUST), and not one of the spec's own attribute names or
/// [`RESERVED`]. Names longer than [`RECOMMENDED_NAME_LEN`] are accepted.
pub fn check_extension_name(name: &str) -> Result<(), CloudEventError> {
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        return Err(CloudEventError::Name(name.to_owned()));
    }
    if RESERVED.contains(&name) || REQUIRED.contains(&name) || OPTIONAL.contains(&name) {
        return Err(CloudEventError::Reserved(name.to_owned()));
    }
    Ok(())
}

/// Checks that an extension's value has a CloudEvents type: a JSON string, an integer
/// or a boolean. (Binary, URI and timestamp values travel as strings.)
pub fn check_extension_value(name: &str, value: &Value) -> Result<(), CloudEventError> {
    match value {
        Value::String(_) | Value::Bool(_) => Ok(()),
        Value::Number(n) if n.is_i64() || n.is_u64() => Ok(()),
        _ => Err(CloudEventError::ExtensionValue(name.to_owned())),
    }
}

/// An extension's value as the text a `ce-*` header or an environment carries: a
/// string as it is, an integer or boolean in its JSON form.
pub fn value_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// Whether a content type (parameters allowed) is JSON: `application/json` or any
/// `+json` type. An event without `datacontenttype` holds JSON `data`, as the JSON
/// format says.
pub fn is_json(content_type: &str) -> bool {
    let media_type = media_type(content_type);
    media_type == "application/json" || media_type.ends_with("+json")
}

/// A content type's media type: without parameters or surrounding space, in lowercase
/// (`Application/JSON; charset=utf-8` is `application/json`).
pub fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// Decodes a `ce-*` header value per the HTTP binding: `%XX` sequences are bytes of
/// UTF-8, everything else stands for itself (`+` is not a space here).
pub fn decode_header_value(name: &str, value: &str) -> Result<String, CloudEventError> {
    let bytes = value.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let high = bytes.get(i + 1).copied().and_then(hex);
            let low = bytes.get(i + 2).copied().and_then(hex);
            let (Some(high), Some(low)) = (high, low) else {
                return Err(CloudEventError::HeaderValue(name.to_owned()));
            };
            out.push(u8::try_from(high * 16 + low).expect("two hex digits fit a byte"));
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| CloudEventError::HeaderValue(name.to_owned()))
}

/// Encodes text as a `ce-*` header value per the HTTP binding: printable ASCII other
/// than `"` and `%` stands for itself; every other byte of its UTF-8 is `%XX`.
pub fn encode_header_value(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if (b' '..=b'~').contains(&byte) && byte != b'"' && byte != b'%' {
            out.push(char::from(byte));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn extension_names_are_lowercase_alphanumerics_and_not_reserved() {
        assert_eq!(check_extension_name("tenant"), Ok(()));
        assert_eq!(check_extension_name("region2"), Ok(()));
        assert_eq!(
            check_extension_name("averyveryverylongextensionname"),
            Ok(()),
            "over the recommended length is accepted"
        );
        for bad in ["", "Tenant", "ten_ant", "ten-ant", "tenänt"] {
            assert_eq!(
                check_extension_name(bad),
                Err(CloudEventError::Name(bad.to_owned()))
            );
        }
        for reserved in ["data", "data_base64", "switchyardid", "id", "dataschema"] {
            assert!(check_extension_name(reserved).is_err(), "{reserved}");
        }
        assert!(
            CloudEventError::Reserved("switchyardid".into())
                .to_string()
                .contains("reserved")
        );
    }

    #[test]
    fn extension_values_are_strings_integers_or_booleans() {
        assert_eq!(check_extension_value("a", &json!("x")), Ok(()));
        assert_eq!(check_extension_value("a", &json!(-3)), Ok(()));
        assert_eq!(check_extension_value("a", &json!(true)), Ok(()));
        for bad in [json!(1.5), json!({}), json!([1]), Value::Null] {
            assert!(check_extension_value("a", &bad).is_err(), "{bad}");
        }
        assert_eq!(value_text(&json!(7)), "7");
        assert_eq!(value_text(&json!("7")), "7");
    }

    #[test]
    fn json_content_types() {
        assert!(is_json("application/json"));
        assert!(is_json("Application/JSON; charset=utf-8"));
        assert!(is_json("application/cloudevents+json"));
        assert!(!is_json("text/plain"));
        assert!(!is_json("application/jsonl"));
    }

    #[test]
    fn header_values_round_trip_through_percent_encoding() {
        for text in [
            "plain",
            "a b",
            "100%",
            "quote\"d",
            "Grüße",
            "tab\there",
            "a+b",
        ] {
            let encoded = encode_header_value(text);
            assert!(
                encoded.bytes().all(|b| (b' '..=b'~').contains(&b)),
                "{encoded}"
            );
            assert_eq!(decode_header_value("x", &encoded).unwrap(), text);
        }
        assert_eq!(encode_header_value("Grüße"), "Gr%C3%BC%C3%9Fe");
        assert_eq!(decode_header_value("x", "a+b").unwrap(), "a+b");
        assert_eq!(
            decode_header_value("x", "%zz"),
            Err(CloudEventError::HeaderValue("x".into()))
        );
        assert!(decode_header_value("x", "%FF").is_err(), "not UTF-8");
    }
}
