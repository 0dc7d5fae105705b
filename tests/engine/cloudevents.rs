//! CloudEvents fidelity: a CloudEvent that comes in over HTTP (structured or binary
//! mode) leaves as the same CloudEvent, to webhooks in either mode, to a command's
//! stdin and to a Rust handler's `Event`, with Switchyard's own id beside it as
//! `switchyardid`. Filters see extension attributes, `switchyard event` shows them, and
//! events that are not CloudEvents get a generated id.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::Path;
use axum::http::HeaderMap;
use axum::routing::post;
use serde_json::{Map, Value, json};
use switchyard::{Context, Engine, Event, handler_fn};
use switchyard_core::cloudevents;
use switchyard_store::{DeliveryStatus, EventDetail, Store};
use uuid::Uuid;

use crate::crash::{Workdir, cli, free_port};
use crate::support::{Backend, client, eventually, fresh_store, open, start};

const WAIT: Duration = Duration::from_secs(30);

/// What a webhook receiver got on one path.
#[derive(Clone, Debug)]
struct Received {
    headers: HeaderMap,
    body: Bytes,
}

/// Requests received, by the path's last segment (`structured` or `binary`).
type Inbox = Arc<Mutex<Vec<(String, Received)>>>;

async fn receiver() -> (u16, Inbox) {
    let inbox: Inbox = Arc::default();
    let recorded = Arc::clone(&inbox);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = axum::Router::new().route(
        "/hook/{mode}",
        post(
            move |Path(mode): Path<String>, headers: HeaderMap, body: Bytes| {
                let recorded = Arc::clone(&recorded);
                async move {
                    recorded
                        .lock()
                        .unwrap()
                        .push((mode, Received { headers, body }));
                    "ok"
                }
            },
        ),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    (port, inbox)
}

/// The attributes of a structured-mode request: its JSON object.
fn from_structured(received: &Received) -> Map<String, Value> {
    assert_eq!(
        received.headers["content-type"],
        "application/cloudevents+json"
    );
    match serde_json::from_slice(&received.body).expect("a JSON body") {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

/// The attributes of a binary-mode request, read back as a receiver would: every
/// `ce-*` header percent-decoded, `content-type` as `datacontenttype`, and the body as
/// `data` (JSON for a JSON type, else text).
fn from_binary(received: &Received) -> Map<String, Value> {
    let mut attributes = Map::new();
    for (name, value) in &received.headers {
        if let Some(attribute) = name.as_str().strip_prefix("ce-") {
            let text = cloudevents::decode_header_value(attribute, value.to_str().unwrap())
                .expect("a percent-encoded value");
            attributes.insert(attribute.to_owned(), Value::String(text));
        }
    }
    if let Some(content_type) = received.headers.get("content-type") {
        let content_type = content_type.to_str().unwrap().to_owned();
        let data = if cloudevents::is_json(&content_type) {
            serde_json::from_slice(&received.body).expect("a JSON body")
        } else {
            Value::String(String::from_utf8(received.body.to_vec()).expect("a text body"))
        };
        attributes.insert("data".into(), data);
        attributes.insert("datacontenttype".into(), Value::String(content_type));
    }
    attributes
}

/// `attributes` as binary mode carries them: every context attribute as text.
fn as_text(attributes: &Map<String, Value>) -> Map<String, Value> {
    attributes
        .iter()
        .map(|(name, value)| {
            let value = match name.as_str() {
                "data" => value.clone(),
                _ => Value::String(cloudevents::value_text(value)),
            };
            (name.clone(), value)
        })
        .collect()
}

/// `sent` plus the `switchyardid` Switchyard gave it.
fn with_switchyard_id(sent: &Value, id: Uuid) -> Map<String, Value> {
    let mut expected = sent.as_object().unwrap().clone();
    expected.insert("switchyardid".into(), Value::String(id.to_string()));
    expected
}

const TRIGGERS: &str = r#"
sources: { orders: { http: { path: /orders } } }
triggers:
  structured:
    source: orders
    handler: { webhook: { url: "http://127.0.0.1:RECEIVER/hook/structured" } }
  binary:
    source: orders
    handler: { webhook: { url: "http://127.0.0.1:RECEIVER/hook/binary", mode: binary } }
  sdk:
    source: orders
    handler: record
  acme:
    source: orders
    filter: { tenant: acme }
    handler: record
  stdin:
    source: orders
    handler: { command: { program: sh, args: ["-c", "cat > \"$0/$SWITCHYARD_EVENT_ID.json\"", "OUT"] } }
"#;

async fn every_attribute_survives_http_in_and_every_handler_out(backend: Backend) {
    let store = fresh_store(backend).await;
    let (port, inbox) = receiver().await;
    let out = Workdir::new();
    let triggers = TRIGGERS
        .replace("RECEIVER", &port.to_string())
        .replace("OUT", &out.0.display().to_string());
    let seen: Arc<Mutex<Vec<(String, Event)>>> = Arc::default();
    let recorded = Arc::clone(&seen);
    let record = handler_fn(move |ctx: Context, event: Event| {
        let recorded = Arc::clone(&recorded);
        async move {
            recorded
                .lock()
                .unwrap()
                .push((ctx.trigger().to_owned(), event));
            Ok(())
        }
    });
    let engine = start(
        Engine::from_cli().handler("record", record),
        &triggers,
        &store,
    )
    .await;
    let url = format!("http://{}/orders", engine.local_addr());

    let structured = json!({
        "specversion": "1.0", "id": "order-7", "source": "/shop/orders", "type": "order.created",
        "subject": "o/7", "time": "2026-01-02T03:04:05Z", "datacontenttype": "application/json",
        "dataschema": "https://schemas.example/order.json", "partitionkey": "customer-1",
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "tenant": "acme", "priority": 3, "urgent": true,
        "data": {"total": 12, "note": "naïve"},
    });
    let response = client()
        .post(&url)
        .header("content-type", "application/cloudevents+json")
        .body(structured.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let structured_id = id_of(response).await;

    // Binary mode: the same kinds of attribute as headers, one of them percent-encoded.
    let response = client()
        .post(&url)
        .header("ce-specversion", "1.0")
        .header("ce-id", "bin%201")
        .header("ce-source", "/shop/returns")
        .header("ce-type", "return.opened")
        .header("ce-time", "2026-01-02T03:04:06Z")
        .header("ce-dataschema", "https://schemas.example/return.txt")
        .header("ce-tenant", "globex")
        .header("ce-region", "Gr%C3%BC%C3%9Fe")
        .header("ce-switchyardid", "forged")
        .header("content-type", "text/plain; charset=utf-8")
        .body("please refund")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let binary_id = id_of(response).await;
    let binary = json!({
        "specversion": "1.0", "id": "bin 1", "source": "/shop/returns", "type": "return.opened",
        "time": "2026-01-02T03:04:06Z", "datacontenttype": "text/plain; charset=utf-8",
        "dataschema": "https://schemas.example/return.txt", "tenant": "globex", "region": "Grüße",
        "data": "please refund",
    });

    // Not a CloudEvent: a plain request gets a generated CloudEvents id.
    let response = client()
        .post(&url)
        .json(&json!({"plain": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let plain_id = id_of(response).await;

    // A CloudEvent whose extensions the spec or the log cannot take is refused, named.
    let refused = [
        (
            json!({"Tenant": "acme"}),
            "\"Tenant\" is not a valid CloudEvents attribute name",
        ),
        (
            json!({"tenant": {"a": 1}}),
            "extension \"tenant\" must be a string",
        ),
        (json!({"tenant": "a\u{0}b"}), "tenant holds a NUL character"),
    ];
    for (extra, reason) in refused {
        let mut body = json!({"specversion": "1.0", "id": "x", "source": "/s", "type": "t"});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let response = client()
            .post(&url)
            .header("content-type", "application/cloudevents+json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{extra}");
        let answer = response.json::<Value>().await.unwrap();
        let error = answer["error"].as_str().expect("an error message");
        assert!(error.contains(reason), "{reason:?} not in {error}");
    }

    let reader = open(&store).await;
    // Every trigger takes each event, but `acme` only the structured one.
    settled(&*reader, structured_id, 5).await;
    settled(&*reader, binary_id, 4).await;
    settled(&*reader, plain_id, 4).await;
    engine.shutdown().await;

    let received = inbox.lock().unwrap().clone();
    let webhook = |mode: &str, id: Uuid| {
        received
            .iter()
            .filter(|(m, _)| m == mode)
            .map(|(_, r)| r)
            .find(|r| {
                let attributes = if mode == "binary" {
                    from_binary(r)
                } else {
                    from_structured(r)
                };
                attributes["switchyardid"] == id.to_string()
            })
            .unwrap_or_else(|| panic!("no {mode} request for {id}"))
            .clone()
    };
    let seen = seen.lock().unwrap().clone();
    let handed = |trigger: &str, id: Uuid| {
        seen.iter()
            .find(|(t, e)| t == trigger && e.switchyard_id == id)
            .map(|(_, e)| e.clone())
    };
    let stdin = |id: Uuid| -> Map<String, Value> {
        let path: PathBuf = out.0.join(format!("{id}.json"));
        let text = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        serde_json::from_slice(&text).expect("the command got JSON on stdin")
    };

    for (sent, id) in [(&structured, structured_id), (&binary, binary_id)] {
        let expected = with_switchyard_id(sent, id);
        let kind = sent["id"].as_str().unwrap();
        assert_eq!(
            from_structured(&webhook("structured", id)),
            expected,
            "{kind}: structured webhook"
        );
        assert_eq!(
            from_binary(&webhook("binary", id)),
            as_text(&expected),
            "{kind}: binary webhook (binary mode carries every attribute as text)"
        );
        assert_eq!(stdin(id), expected, "{kind}: the command's stdin");
        let event = handed("sdk", id).expect("the Rust handler got the event");
        assert_eq!(
            serde_json::to_value(&event).unwrap(),
            Value::Object(expected.clone()),
            "{kind}: the SDK's Event"
        );
        assert_eq!(event.id, sent["id"].as_str().unwrap());
        assert_eq!(event.switchyard_id, id);
        assert_eq!(
            event.dataschema.as_deref(),
            sent["dataschema"].as_str(),
            "{kind}"
        );
        assert_eq!(event.attribute("tenant"), Some(sent["tenant"].clone()));
    }
    let event = handed("sdk", structured_id).unwrap();
    assert_eq!(
        event.extensions,
        [
            ("priority".to_owned(), json!(3)),
            ("tenant".to_owned(), json!("acme")),
            ("urgent".to_owned(), json!(true)),
        ]
        .into()
    );
    assert_eq!(
        (
            handed("acme", structured_id).is_some(),
            handed("acme", binary_id).is_some(),
            handed("acme", plain_id).is_some()
        ),
        (true, false, false),
        "the extension filter takes only tenant acme"
    );

    let plain = handed("sdk", plain_id).unwrap();
    assert_eq!(plain.id, plain_id.to_string(), "a generated id");
    assert!(plain.extensions.is_empty() && plain.dataschema.is_none());
    let plain_out = from_structured(&webhook("structured", plain_id));
    assert_eq!(plain_out["id"], plain_out["switchyardid"]);
    assert_eq!(
        from_binary(&webhook("binary", plain_id))["id"],
        plain_out["id"]
    );

    // The stored record keeps every attribute, and `switchyard event` shows them.
    let stored = reader
        .get_event(structured_id)
        .await
        .unwrap()
        .unwrap()
        .event;
    assert_eq!(
        serde_json::to_value(&stored).unwrap(),
        Value::Object(with_switchyard_id(&structured, structured_id))
    );
    assert_eq!(
        stored.dedupe_key.as_deref(),
        Some("cloudevent:/shop/orders:order-7")
    );
    // The CLI knows no Rust handlers: its config logs instead.
    let dir = Workdir::new();
    let config = dir.config(
        &store,
        free_port(),
        &triggers.replace("handler: record", "handler: { log: {} }"),
    );
    let validated = cli(&config, &["validate"]);
    assert!(
        validated.status.success(),
        "validate accepts an extension filter: {}",
        String::from_utf8_lossy(&validated.stderr)
    );
    let shown = cli(&config, &["event", &structured_id.to_string()]);
    assert!(
        shown.status.success(),
        "{}",
        String::from_utf8_lossy(&shown.stderr)
    );
    let text = String::from_utf8_lossy(&shown.stdout);
    for line in [
        format!("event    {structured_id}\n"),
        "ce id    order-7\n".to_owned(),
        "schema   https://schemas.example/order.json\n".to_owned(),
        "ext      priority=3\n".to_owned(),
        "ext      tenant=acme\n".to_owned(),
        "ext      urgent=true\n".to_owned(),
    ] {
        assert!(text.contains(&line), "{line:?} not in:\n{text}");
    }
    // Only a leftover temporary directory if it fails; the assertions are done.
    let _ = std::fs::remove_dir_all(&out.0);
}

async fn id_of(response: reqwest::Response) -> Uuid {
    response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .expect("an id in the answer")
        .parse()
        .expect("a UUID")
}

/// Waits until event `id` has `deliveries` deliveries, all succeeded.
async fn settled(store: &dyn Store, id: Uuid, deliveries: usize) -> EventDetail {
    eventually(WAIT, "every delivery to succeed", || async {
        let detail = store.get_event(id).await.ok()??;
        let done = detail.deliveries.len() == deliveries
            && detail
                .deliveries
                .iter()
                .all(|d| d.status == DeliveryStatus::Succeeded);
        done.then_some(detail)
    })
    .await
}

crate::both_backends!(every_attribute_survives_http_in_and_every_handler_out);
