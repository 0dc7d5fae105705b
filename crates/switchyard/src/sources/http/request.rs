//! Turning an HTTP request into an event: CloudEvents binary and structured mode, and
//! plain requests.

use axum::http::{HeaderMap, Method, Uri, header};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use serde_json::{Map, Value, json};
use switchyard_core::Event;
use switchyard_core::cloudevents::{self, CloudEventError};

use super::{HttpSourceRuntime, Rejection};

/// Headers whose value is a natural dedupe key, most specific first.
const DEDUPE_HEADERS: &[&str] = &["idempotency-key", "webhook-id", "x-github-delivery"];

pub fn to_event(
    source: &HttpSourceRuntime,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Event, Rejection> {
    let content_type = header_text(headers, header::CONTENT_TYPE.as_str()).unwrap_or_default();
    let media_type = cloudevents::media_type(&content_type);
    let mut event = if media_type == "application/cloudevents-batch+json" {
        return Err(Rejection::bad_request(
            "CloudEvents batch mode is not supported; send one event per request",
        ));
    } else if media_type == "application/cloudevents+json" {
        structured(source, &body)?
    } else if headers.contains_key("ce-specversion") {
        binary(source, headers, &content_type, &media_type, body)?
    } else {
        plain(
            source,
            method,
            uri,
            headers,
            &content_type,
            &media_type,
            body,
        )?
    };
    if event.traceparent.is_none() {
        event.traceparent = header_text(headers, "traceparent");
    }
    if event.dedupe_key.is_none() {
        event.dedupe_key = DEDUPE_HEADERS
            .iter()
            .find_map(|name| header_text(headers, name).map(|v| format!("{name}:{v}")));
    }
    Ok(event)
}

fn structured(source: &HttpSourceRuntime, body: &[u8]) -> Result<Event, Rejection> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| Rejection::bad_request(format!("the body is not a JSON CloudEvent: {e}")))?;
    let Value::Object(attributes) = value else {
        return Err(Rejection::bad_request(
            "a structured CloudEvent must be a JSON object",
        ));
    };
    Event::from_cloudevent(&source.name, attributes).map_err(refused)
}

/// Binary mode: every `ce-*` header is an attribute (its value percent-decoded, per
/// the HTTP binding), `content-type` is `datacontenttype` (over a `ce-datacontenttype`
/// header), and the body is the data.
fn binary(
    source: &HttpSourceRuntime,
    headers: &HeaderMap,
    content_type: &str,
    media_type: &str,
    body: Bytes,
) -> Result<Event, Rejection> {
    let mut attributes = Map::new();
    for (name, value) in headers {
        let Some(attribute) = name.as_str().strip_prefix("ce-") else {
            continue;
        };
        let text = value
            .to_str()
            .map_err(|_| CloudEventError::HeaderValue(attribute.to_owned()))
            .and_then(|text| cloudevents::decode_header_value(attribute, text))
            .map_err(refused)?;
        attributes.insert(attribute.to_owned(), Value::String(text));
    }
    // The payload is the body; a header cannot stand in for it.
    for payload in ["data", "data_base64"] {
        if attributes.contains_key(payload) {
            return Err(Rejection::bad_request(format!(
                "binary mode carries the payload in the body, not in a \"ce-{payload}\" header"
            )));
        }
    }
    if !content_type.is_empty() {
        attributes.insert("datacontenttype".into(), json!(content_type));
    }
    let mut event = Event::from_cloudevent(&source.name, attributes).map_err(refused)?;
    if !body.is_empty() {
        match decode_body(media_type, body)? {
            Body::Value(value) => event.data = Some(value),
            Body::Base64(text) => event.data_base64 = Some(text),
        }
    }
    Ok(event)
}

fn refused(error: CloudEventError) -> Rejection {
    Rejection::bad_request(error.to_string())
}

fn plain(
    source: &HttpSourceRuntime,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    content_type: &str,
    media_type: &str,
    body: Bytes,
) -> Result<Event, Rejection> {
    let mut data = Map::new();
    data.insert("method".into(), json!(method.as_str()));
    data.insert("path".into(), json!(uri.path()));
    let query: Map<String, Value> = uri
        .query()
        .map(|q| {
            q.split('&')
                .filter(|pair| !pair.is_empty())
                .map(|pair| {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    (percent_decode(k), Value::String(percent_decode(v)))
                })
                .collect()
        })
        .unwrap_or_default();
    data.insert("query".into(), Value::Object(query));
    let kept: Map<String, Value> = source
        .config
        .headers
        .iter()
        .map(|name| name.to_ascii_lowercase())
        .filter(|name| !source.secret_headers.contains(name))
        .filter_map(|name| header_text(headers, &name).map(|v| (name, Value::String(v))))
        .collect();
    data.insert("headers".into(), Value::Object(kept));
    if !body.is_empty() {
        match decode_body(media_type, body)? {
            Body::Value(value) => data.insert("body".into(), value),
            Body::Base64(text) => data.insert("body_base64".into(), Value::String(text)),
        };
    }
    let mut event = Event::new(
        &source.name,
        source.config.path.clone(),
        source.config.ty.clone(),
    )
    .with_json(Value::Object(data));
    if !content_type.is_empty() {
        event
            .data
            .as_mut()
            .and_then(Value::as_object_mut)
            .map(|d| d.insert("content_type".into(), json!(content_type)));
    }
    Ok(event)
}

enum Body {
    Value(Value),
    Base64(String),
}

/// JSON media types must parse; any other body that is UTF-8 text without NUL
/// characters becomes a string, and the rest (binary, or text holding NUL, which the
/// event log cannot keep as text) base64, so that it is stored byte for byte.
fn decode_body(media_type: &str, body: Bytes) -> Result<Body, Rejection> {
    if cloudevents::is_json(media_type) {
        return serde_json::from_slice(&body)
            .map(Body::Value)
            .map_err(|e| Rejection::bad_request(format!("the body is not valid JSON: {e}")));
    }
    match std::str::from_utf8(&body) {
        Ok(text) if !text.contains('\0') => Ok(Body::Value(Value::String(text.to_owned()))),
        _ => Ok(Body::Base64(BASE64.encode(&body))),
    }
}

fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'+', _, _) => out.push(b' '),
            (b'%', Some(high), Some(low)) => {
                out.push(u8::try_from(high * 16 + low).expect("two hex digits fit a byte"));
                i += 2;
            }
            (byte, _, _) => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_core::config::HttpSource;

    fn source() -> HttpSourceRuntime {
        let config: HttpSource = serde_json::from_value(
            json!({"path": "/hooks/demo", "headers": ["X-Event", "Authorization"]}),
        )
        .unwrap();
        HttpSourceRuntime::new("demo".into(), config)
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, v.parse().unwrap());
        }
        map
    }

    fn convert(
        pairs: &[(&'static str, &str)],
        uri: &str,
        body: &'static str,
    ) -> Result<Event, Rejection> {
        to_event(
            &source(),
            &Method::POST,
            &uri.parse().unwrap(),
            &headers(pairs),
            Bytes::from_static(body.as_bytes()),
        )
    }

    #[test]
    fn plain_json_requests_keep_method_path_query_and_chosen_headers() {
        let event = convert(
            &[
                ("content-type", "application/json"),
                ("x-event", "push"),
                ("authorization", "Bearer x"),
                ("idempotency-key", "k1"),
            ],
            "/hooks/demo?a=1&b=x+y%21",
            r#"{"n": 1}"#,
        )
        .unwrap();
        assert_eq!(event.ty, "http.request");
        assert_eq!(event.source, "/hooks/demo");
        let data = event.data.unwrap();
        assert_eq!(data["body"], json!({"n": 1}));
        assert_eq!(data["query"], json!({"a": "1", "b": "x y!"}));
        assert_eq!(
            data["headers"],
            json!({"x-event": "push"}),
            "authorization is never copied"
        );
        assert_eq!(event.dedupe_key.as_deref(), Some("idempotency-key:k1"));
    }

    #[test]
    fn text_and_binary_bodies() {
        let event = convert(&[("content-type", "text/plain")], "/hooks/demo", "hello").unwrap();
        assert_eq!(event.data.unwrap()["body"], "hello");
        let bytes = to_event(
            &source(),
            &Method::POST,
            &"/x".parse().unwrap(),
            &HeaderMap::new(),
            Bytes::from_static(&[0xff, 0x00]),
        )
        .unwrap();
        assert_eq!(bytes.data.unwrap()["body_base64"], "/wA=");
        let nul = convert(&[("content-type", "text/plain")], "/hooks/demo", "a\0b").unwrap();
        assert_eq!(
            nul.data.unwrap()["body_base64"],
            "YQBi",
            "text holding NUL is kept byte for byte"
        );
        assert!(
            convert(&[("content-type", "application/json")], "/", "{nope")
                .unwrap_err()
                .reason
                .contains("not valid JSON")
        );
    }

    #[test]
    fn binary_mode_cloudevents() {
        let event = convert(
            &[
                ("ce-specversion", "1.0"),
                ("ce-id", "42"),
                ("ce-source", "/orders"),
                ("ce-type", "order.created"),
                ("ce-subject", "o-1"),
                ("content-type", "application/json"),
            ],
            "/hooks/demo",
            r#"{"total": 5}"#,
        )
        .unwrap();
        assert_eq!(event.ty, "order.created");
        assert_eq!(event.source, "/orders");
        assert_eq!(event.subject.as_deref(), Some("o-1"));
        assert_eq!(event.data, Some(json!({"total": 5})));
        assert_eq!(event.dedupe_key.as_deref(), Some("cloudevent:/orders:42"));
        assert_eq!(event.id, "42", "the producer's id is kept");
        let err = convert(
            &[
                ("ce-specversion", "1.0"),
                ("ce-source", "/o"),
                ("ce-type", "t"),
            ],
            "/",
            "",
        )
        .unwrap_err();
        assert_eq!(err.reason, "the CloudEvent has no \"id\" attribute");
    }

    #[test]
    fn binary_mode_keeps_every_ce_header_percent_decoded() {
        let event = convert(
            &[
                ("ce-specversion", "1.0"),
                ("ce-id", "a%20b"),
                ("ce-source", "/orders"),
                ("ce-type", "order.created"),
                ("ce-dataschema", "https://schemas.example/order"),
                ("ce-tenant", "Gr%C3%BC%C3%9Fe+co"),
                ("ce-switchyardid", "forged"),
                ("content-type", "text/plain"),
            ],
            "/",
            "hi",
        )
        .unwrap();
        assert_eq!(event.id, "a b");
        assert_eq!(
            event.dataschema.as_deref(),
            Some("https://schemas.example/order")
        );
        assert_eq!(
            event.extensions,
            [("tenant".to_owned(), json!("Grüße+co"))].into(),
            "switchyardid is Switchyard's own"
        );
        assert_eq!(event.datacontenttype.as_deref(), Some("text/plain"));
        assert_eq!(event.data, Some(json!("hi")));
        let refused = |pairs: &[(&'static str, &str)]| {
            let mut all = vec![
                ("ce-specversion", "1.0"),
                ("ce-id", "1"),
                ("ce-source", "/o"),
                ("ce-type", "t"),
            ];
            all.extend_from_slice(pairs);
            convert(&all, "/", "").unwrap_err().reason
        };
        assert!(refused(&[("ce-bad", "%zz")]).contains("\"ce-bad\""));
        assert!(refused(&[("ce-data", "x")]).contains("in the body"));
        assert!(refused(&[("ce-my_ext", "x")]).contains("\"my_ext\""));
    }

    #[test]
    fn structured_mode_cloudevents() {
        let body = r#"{"specversion":"1.0","id":"7","source":"/s","type":"t","time":"2026-01-02T03:04:05Z","data":{"a":1},"partitionkey":"p"}"#;
        let event = convert(
            &[(
                "content-type",
                "application/cloudevents+json; charset=utf-8",
            )],
            "/",
            body,
        )
        .unwrap();
        assert_eq!(event.data, Some(json!({"a": 1})));
        assert_eq!(event.partitionkey.as_deref(), Some("p"));
        assert_eq!(event.time.to_rfc3339(), "2026-01-02T03:04:05+00:00");
        let bad_time =
            r#"{"specversion":"1.0","id":"7","source":"/s","type":"t","time":"yesterday"}"#;
        assert!(
            convert(
                &[("content-type", "application/cloudevents+json")],
                "/",
                bad_time
            )
            .unwrap_err()
            .reason
            .contains("RFC 3339")
        );
        let structured = |body: &'static str| {
            convert(
                &[("content-type", "application/cloudevents+json")],
                "/",
                body,
            )
        };
        assert!(
            structured(
                r#"{"specversion":"1.0","id":"7","source":"/s","type":"t","data_base64":"%%%"}"#
            )
            .unwrap_err()
            .reason
            .contains("not valid base64")
        );
        assert!(
            structured(r#"{"specversion":"1.0","id":"7","source":"/s","type":"t","data":1,"data_base64":"AA=="}"#)
                .unwrap_err()
                .reason
                .contains("not both")
        );
        let wrong_version = r#"{"specversion":"0.3","id":"7","source":"/s","type":"t"}"#;
        assert!(
            convert(
                &[("content-type", "application/cloudevents+json")],
                "/",
                wrong_version
            )
            .unwrap_err()
            .reason
            .contains("0.3")
        );
    }
}
