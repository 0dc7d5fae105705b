//! `webhook:` — POST each event to a URL as a CloudEvent, in structured or binary mode,
//! optionally signed with Standard Webhooks headers, and classify the answer for the
//! retry policy.

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use serde_json::Value;
use sha2::Sha256;
use switchyard_core::config::{self, Secret, WebhookMode};
use switchyard_core::redact::redact_url;
use switchyard_core::{HumanDuration, cloudevents};

use super::BuildError;
use crate::{Context, Event, Handler, HandlerError, HandlerFuture};

/// The media type of a structured-mode CloudEvent in JSON.
const CLOUDEVENTS_JSON: &str = "application/cloudevents+json";
const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
const WEBHOOK_ID: HeaderName = HeaderName::from_static("webhook-id");
const WEBHOOK_TIMESTAMP: HeaderName = HeaderName::from_static("webhook-timestamp");
const WEBHOOK_SIGNATURE: HeaderName = HeaderName::from_static("webhook-signature");

/// Headers Switchyard sets on every request; `headers:` in the config may not override
/// them, or the body, the signature and the receiver's dedupe would disagree.
const RESERVED_HEADERS: [&str; 7] = [
    "content-type",
    "content-length",
    "transfer-encoding",
    "idempotency-key",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
];

/// How much of an error response's body goes into the error message.
const BODY_EXCERPT_BYTES: usize = 200;
/// How much of a response body the attempt's output keeps: with the status line, it
/// fits [`OUTPUT_LIMIT`](crate::OUTPUT_LIMIT).
const BODY_OUTPUT_BYTES: usize = 4000;

/// POSTs each event to a URL as a CloudEvent with every attribute it has, Switchyard's
/// own id as `switchyardid` among them. In structured mode (the default) the body is
/// the event's JSON (`content-type: application/cloudevents+json`); in binary mode the
/// body is the payload, `content-type` is `datacontenttype`, and every other
/// attribute is a `ce-*` header, percent-encoded as the HTTP binding says.
///
/// Every request carries `Idempotency-Key: EVENT_ID:TRIGGER`, the same on every attempt.
/// With a `signing_secret` it also carries the Standard Webhooks headers `webhook-id`
/// (the same key), `webhook-timestamp` and `webhook-signature`.
///
/// Outcomes: 2xx succeeds. 408, 409, 429 and 5xx are retried, after the response's
/// `Retry-After` when it has one. Network errors and timeouts are retried. Any other
/// status, redirects included (they are not followed), is fatal.
pub struct WebhookHandler {
    client: reqwest::Client,
    url: Url,
    /// `url` with its user info hidden: what error messages and logs show.
    display_url: String,
    headers: HeaderMap,
    signer: Option<Signer>,
    timeout: HumanDuration,
    mode: WebhookMode,
}

impl WebhookHandler {
    /// Checks the URL, headers and signing secret, and builds the HTTP client once.
    ///
    /// Fails on a URL that does not parse or is not http(s), an invalid or reserved
    /// header, or a signing secret that is not a base64 key after `whsec_`.
    pub fn new(config: &config::WebhookHandler) -> Result<Self, BuildError> {
        let url = Url::parse(&config.url).map_err(|e| BuildError::InvalidUrl {
            url: redact_url(&config.url),
            reason: e.to_string(),
        })?;
        let display_url = redact_url(url.as_str());
        if !matches!(url.scheme(), "http" | "https") {
            return Err(BuildError::UnsupportedScheme { url: display_url });
        }

        let mut headers = HeaderMap::new();
        for (name, value) in &config.headers {
            let invalid = |reason| BuildError::InvalidHeader {
                name: name.clone(),
                reason,
            };
            let header = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| invalid("not a valid header name"))?;
            if RESERVED_HEADERS.contains(&header.as_str()) {
                return Err(invalid("Switchyard sets this header itself"));
            }
            if config.mode == WebhookMode::Binary && header.as_str().starts_with("ce-") {
                return Err(invalid(
                    "in binary mode Switchyard sends the event's attributes as ce-* headers itself",
                ));
            }
            let mut value = HeaderValue::from_str(value).map_err(|_| {
                invalid("the value has characters a header cannot carry, such as a newline")
            })?;
            // Header values often hold tokens; keep them out of Debug output.
            value.set_sensitive(true);
            headers.append(header, value);
        }

        let signer = config
            .signing_secret
            .as_ref()
            .map(Signer::from_secret)
            .transpose()?;

        let client = reqwest::Client::builder()
            .timeout(config.timeout.get())
            // A POST answered with a redirect is not delivered: following 301/302 would
            // turn it into a body-less GET whose 200 means nothing.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("switchyard/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(BuildError::HttpClient)?;

        Ok(Self {
            client,
            url,
            display_url,
            headers,
            signer,
            timeout: config.timeout,
            mode: config.mode,
        })
    }

    async fn post(&self, ctx: &Context, event: &Event) -> Result<(), HandlerError> {
        let mut headers = self.headers.clone();
        let body = match self.mode {
            WebhookMode::Structured => {
                headers.insert(CONTENT_TYPE, HeaderValue::from_static(CLOUDEVENTS_JSON));
                serde_json::to_vec(event).map_err(WebhookError::Encode)
            }
            WebhookMode::Binary => binary(event, &mut headers),
        }
        .map_err(HandlerError::fatal)?;
        let key = ctx.idempotency_key(event);
        let key_value = HeaderValue::from_str(&key).map_err(|_| {
            HandlerError::fatal(WebhookError::UnsendableKey {
                url: self.display_url.clone(),
            })
        })?;

        headers.insert(IDEMPOTENCY_KEY, key_value.clone());
        if let Some(signer) = &self.signer {
            let timestamp = Utc::now().timestamp();
            headers.insert(WEBHOOK_ID, key_value);
            headers.insert(WEBHOOK_TIMESTAMP, HeaderValue::from(timestamp));
            headers.insert(WEBHOOK_SIGNATURE, signer.sign(&key, timestamp, &body));
        }

        let response = self
            .client
            .post(self.url.clone())
            .headers(headers)
            .body(body)
            .send()
            .await
            .map_err(|e| self.request_error(e))?;

        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| parse_retry_after(value, Utc::now()));
        let body = read_head(response).await;
        ctx.set_output(body.output(status));
        if status.is_success() {
            tracing::debug!(url = %self.display_url, status = status.as_u16(), "webhook delivered");
            return Ok(());
        }
        let error = WebhookError::Status {
            url: self.display_url.clone(),
            status,
            body: body.excerpt(),
        };
        Err(if is_retryable(status) {
            match retry_after {
                Some(delay) => HandlerError::retry_after(delay, error),
                None => HandlerError::retryable(error),
            }
        } else {
            HandlerError::fatal(error)
        })
    }

    fn request_error(&self, error: reqwest::Error) -> HandlerError {
        // reqwest's message quotes the URL with its password; ours has it redacted.
        let error = error.without_url();
        let url = self.display_url.clone();
        if error.is_timeout() {
            HandlerError::retryable(WebhookError::Timeout {
                url,
                timeout: self.timeout,
            })
        } else if error.is_builder() {
            HandlerError::fatal(WebhookError::Request { url, source: error })
        } else {
            HandlerError::retryable(WebhookError::Request { url, source: error })
        }
    }
}

impl Handler for WebhookHandler {
    fn handle<'a>(&'a self, ctx: Context, event: Event) -> HandlerFuture<'a> {
        Box::pin(async move {
            tokio::select! {
                biased;
                () = ctx.cancellation().cancelled() => {
                    Err(HandlerError::retryable(WebhookError::Cancelled { url: self.display_url.clone() }))
                }
                result = self.post(&ctx, &event) => result,
            }
        })
    }
}

impl fmt::Debug for WebhookHandler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookHandler")
            .field("url", &self.display_url)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("signed", &self.signer.is_some())
            .field("timeout", &self.timeout)
            .field("mode", &self.mode)
            .finish()
    }
}

/// Binary mode: adds a `ce-*` header per context attribute (but `datacontenttype`,
/// which is `content-type`) to `headers`, and returns the payload as the body. JSON
/// `data` is sent as JSON, text `data` of a non-JSON type as its text, and
/// `data_base64` as the bytes it encodes.
fn binary(event: &Event, headers: &mut HeaderMap) -> Result<Vec<u8>, WebhookError> {
    for (name, value) in event.context_attributes() {
        if name == "datacontenttype" {
            continue;
        }
        let header = HeaderName::from_bytes(format!("ce-{name}").as_bytes())
            .map_err(|_| WebhookError::AttributeName(name.clone()))?;
        let text = cloudevents::encode_header_value(&cloudevents::value_text(&value));
        let value =
            HeaderValue::try_from(text).expect("percent-encoded text is a valid header value");
        headers.insert(header, value);
    }
    let content_type = match (&event.datacontenttype, &event.data) {
        (Some(content_type), _) => Some(content_type.as_str()),
        (None, Some(_)) => Some("application/json"),
        (None, None) => None,
    };
    if let Some(content_type) = content_type {
        let value = HeaderValue::from_str(content_type)
            .map_err(|_| WebhookError::ContentType(content_type.to_owned()))?;
        headers.insert(CONTENT_TYPE, value);
    }
    match (&event.data, &event.data_base64) {
        (Some(Value::String(text)), _) if !content_type.is_some_and(cloudevents::is_json) => {
            Ok(text.clone().into_bytes())
        }
        (Some(data), _) => serde_json::to_vec(data).map_err(WebhookError::Encode),
        (None, Some(encoded)) => BASE64
            .decode(encoded)
            .map_err(|e| WebhookError::Base64(e.to_string())),
        (None, None) => Ok(Vec::new()),
    }
}

/// 408 Request Timeout, 409 Conflict, 429 Too Many Requests and every 5xx may succeed
/// later; other failures will not.
fn is_retryable(status: StatusCode) -> bool {
    status.is_server_error()
        || matches!(
            status,
            StatusCode::REQUEST_TIMEOUT | StatusCode::CONFLICT | StatusCode::TOO_MANY_REQUESTS
        )
}

/// Reads `Retry-After` as delta-seconds or as an HTTP-date. A date in the past means
/// "now"; anything else unreadable is ignored.
fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = DateTime::parse_from_rfc2822(value)
        .ok()?
        .with_timezone(&Utc);
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

/// The start of a response body: its first [`BODY_OUTPUT_BYTES`].
struct BodyHead {
    bytes: Vec<u8>,
    /// Whether the body went on past them.
    cut: bool,
}

/// Reads the first [`BODY_OUTPUT_BYTES`] of a response body, and no more.
async fn read_head(mut response: reqwest::Response) -> BodyHead {
    let mut bytes = Vec::new();
    while bytes.len() <= BODY_OUTPUT_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            Ok(None) => break,
            // The status already decided the outcome; a body cut short only shortens
            // the excerpt.
            Err(_) => break,
        }
    }
    let cut = bytes.len() > BODY_OUTPUT_BYTES;
    bytes.truncate(BODY_OUTPUT_BYTES);
    BodyHead { bytes, cut }
}

impl BodyHead {
    /// The head as text; a character cut in half at the end is dropped.
    fn text(&self, limit: usize) -> (String, bool) {
        let cut = self.cut || self.bytes.len() > limit;
        let end = self.bytes.len().min(limit);
        let text = String::from_utf8_lossy(&self.bytes[..end]);
        let text = if cut {
            text.trim_end_matches('\u{FFFD}')
        } else {
            &text
        };
        (text.to_owned(), cut)
    }

    /// The first [`BODY_EXCERPT_BYTES`] on one line, for an error message.
    fn excerpt(&self) -> String {
        let (text, cut) = self.text(BODY_EXCERPT_BYTES);
        let mut text: String = text
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        text = text.trim().to_owned();
        if cut {
            text.push('…');
        }
        text
    }

    /// The attempt's output: `status: NNN`, then the body as it came.
    fn output(&self, status: StatusCode) -> String {
        let (text, cut) = self.text(BODY_OUTPUT_BYTES);
        let mut output = format!("status: {}", status.as_u16());
        if !text.is_empty() {
            output.push('\n');
            output.push_str(&text);
            if cut {
                output.push('…');
            }
        }
        output
    }
}

/// Computes Standard Webhooks signatures.
struct Signer {
    key: Vec<u8>,
}

impl Signer {
    /// Accepts `whsec_<base64>` (the prefix is optional, as in the reference
    /// libraries). Errors never quote the secret.
    fn from_secret(secret: &Secret) -> Result<Self, BuildError> {
        let encoded = secret.expose();
        let encoded = encoded.strip_prefix("whsec_").unwrap_or(encoded);
        let key = BASE64
            .decode(encoded)
            .map_err(|_| BuildError::InvalidSigningSecret {
                reason: "the key is not valid base64",
            })?;
        if key.is_empty() {
            return Err(BuildError::InvalidSigningSecret {
                reason: "the key is empty",
            });
        }
        Ok(Self { key })
    }

    /// `v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`.
    fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> HeaderValue {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC accepts keys of any length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        let signature = format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()));
        let mut value = HeaderValue::try_from(signature).expect("base64 is a valid header value");
        value.set_sensitive(true);
        value
    }
}

/// Why a POST failed. URLs in messages have their user info redacted.
#[derive(Debug, thiserror::Error)]
enum WebhookError {
    #[error("POST {url} answered {status}{}", excerpt_suffix(.body))]
    Status {
        url: String,
        status: StatusCode,
        body: String,
    },
    #[error("POST {url} timed out after {timeout}")]
    Timeout { url: String, timeout: HumanDuration },
    #[error("POST {url} failed")]
    Request {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("POST {url} was cancelled by shutdown or the deadline")]
    Cancelled { url: String },
    #[error(
        "POST {url} not sent: the idempotency key cannot be a header value (does the trigger name contain a control character?)"
    )]
    UnsendableKey { url: String },
    #[error("the event does not encode as JSON")]
    Encode(#[source] serde_json::Error),
    #[error("attribute {0:?} cannot be sent as a ce-* header: it is not a valid header name")]
    AttributeName(String),
    #[error("datacontenttype {0:?} cannot be sent as a content-type header")]
    ContentType(String),
    #[error("the event's data_base64 is not valid base64: {0}")]
    Base64(String),
}

fn excerpt_suffix(body: &str) -> String {
    if body.is_empty() {
        String::new()
    } else {
        format!(": {body}")
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};
    use std::time::Instant;

    use axum::Router;
    use axum::body::Bytes;
    use axum::http::HeaderMap as AxumHeaders;
    use axum::response::IntoResponse;
    use axum::routing::post;
    use serde_json::json;
    use tokio::net::TcpListener;

    use super::*;
    use crate::ErrorKind;
    use crate::handlers::test_context;

    /// base64 of the 32 bytes 0..=31.
    const SECRET: &str = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    #[derive(Clone)]
    struct Reply {
        status: StatusCode,
        headers: Vec<(&'static str, String)>,
        body: String,
        delay: Duration,
    }

    impl Reply {
        fn status(code: u16) -> Self {
            Self {
                status: StatusCode::from_u16(code).unwrap(),
                headers: Vec::new(),
                body: String::new(),
                delay: Duration::ZERO,
            }
        }
    }

    struct Recorded {
        headers: AxumHeaders,
        body: Bytes,
    }

    /// A real HTTP server on 127.0.0.1 that records every request to `/hook` and
    /// answers each with `reply`.
    struct TestServer {
        url: String,
        requests: Arc<Mutex<Vec<Recorded>>>,
    }

    async fn serve(reply: Reply) -> TestServer {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let recorded = Arc::clone(&requests);
        let app = Router::new().route(
            "/hook",
            post(move |headers: AxumHeaders, body: Bytes| {
                let reply = reply.clone();
                let recorded = Arc::clone(&recorded);
                async move {
                    recorded.lock().unwrap().push(Recorded { headers, body });
                    tokio::time::sleep(reply.delay).await;
                    let mut response = (reply.status, reply.body).into_response();
                    for (name, value) in reply.headers {
                        response.headers_mut().insert(name, value.parse().unwrap());
                    }
                    response
                }
            }),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .await
                .expect("test server failed")
        });
        TestServer {
            url: format!("http://{addr}/hook"),
            requests,
        }
    }

    fn handler(url: &str, secret: Option<&str>, timeout: Duration) -> WebhookHandler {
        let config = config::WebhookHandler {
            url: url.to_owned(),
            signing_secret: secret.map(Secret::new),
            headers: BTreeMap::from([("Authorization".to_owned(), "Bearer t0ken".to_owned())]),
            timeout: HumanDuration(timeout),
            mode: WebhookMode::Structured,
        };
        WebhookHandler::new(&config).unwrap()
    }

    fn event() -> Event {
        Event::new("orders", "/orders", "order.created")
            .with_subject("order/42")
            .with_json(json!({"id": 42, "total": "9.99"}))
    }

    async fn post_once(reply: Reply) -> (Result<(), HandlerError>, TestServer) {
        let server = serve(reply).await;
        let webhook = handler(&server.url, None, Duration::from_secs(5));
        let result = webhook.handle(test_context("audit"), event()).await;
        (result, server)
    }

    #[tokio::test]
    async fn binary_mode_sends_the_payload_as_the_body_and_every_attribute_as_a_header() {
        let server = serve(Reply::status(204)).await;
        let webhook = WebhookHandler::new(&config::WebhookHandler {
            url: server.url.clone(),
            signing_secret: None,
            headers: BTreeMap::new(),
            timeout: HumanDuration::from_secs(5),
            mode: WebhookMode::Binary,
        })
        .unwrap();
        let mut text = event();
        text.id = "order 42".to_owned();
        text.datacontenttype = Some("text/plain; charset=utf-8".to_owned());
        text.data = Some(json!("Grüße"));
        text.dataschema = Some("https://schemas.example/o".to_owned());
        text.extensions = [
            ("tenant".to_owned(), json!("acme \"eu\" 100%")),
            ("priority".to_owned(), json!(3)),
        ]
        .into();
        let mut bytes = event();
        bytes.datacontenttype = Some("application/octet-stream".to_owned());
        bytes.data = None;
        bytes.data_base64 = Some(BASE64.encode([0u8, 255, 7]));
        let mut empty = event();
        empty.datacontenttype = None;
        empty.data = None;
        for event in [&text, &bytes, &empty] {
            webhook
                .handle(test_context("audit"), event.clone())
                .await
                .unwrap();
        }

        let requests = server.requests.lock().unwrap();
        let header = |i: usize, name: &str| {
            requests[i]
                .headers
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        assert_eq!(&requests[0].body[..], "Grüße".as_bytes());
        assert_eq!(
            header(0, "content-type").as_deref(),
            Some("text/plain; charset=utf-8")
        );
        assert_eq!(header(0, "ce-id").as_deref(), Some("order 42"));
        assert_eq!(
            header(0, "ce-switchyardid"),
            Some(text.switchyard_id.to_string())
        );
        assert_eq!(header(0, "ce-specversion").as_deref(), Some("1.0"));
        assert_eq!(header(0, "ce-source").as_deref(), Some("/orders"));
        assert_eq!(header(0, "ce-type").as_deref(), Some("order.created"));
        assert_eq!(header(0, "ce-subject").as_deref(), Some("order/42"));
        assert_eq!(
            header(0, "ce-dataschema").as_deref(),
            Some("https://schemas.example/o")
        );
        assert_eq!(
            header(0, "ce-tenant").as_deref(),
            Some("acme %22eu%22 100%25")
        );
        assert_eq!(header(0, "ce-priority").as_deref(), Some("3"));
        assert!(header(0, "ce-time").is_some());
        assert!(header(0, "ce-datacontenttype").is_none());
        assert!(header(0, "ce-data").is_none());
        assert_eq!(&requests[1].body[..], &[0u8, 255, 7]);
        assert_eq!(
            header(1, "content-type").as_deref(),
            Some("application/octet-stream")
        );
        assert!(requests[2].body.is_empty());
        assert!(header(2, "content-type").is_none());
    }

    #[tokio::test]
    async fn posts_a_signed_structured_cloudevent() {
        let server = serve(Reply::status(204)).await;
        let webhook = handler(&server.url, Some(SECRET), Duration::from_secs(5));
        let event = event();
        let ctx = test_context("audit");
        let key = ctx.idempotency_key(&event);

        webhook.handle(ctx, event.clone()).await.unwrap();

        let requests = server.requests.lock().unwrap();
        assert_eq!(requests.len(), 1);
        let request = &requests[0];
        assert_eq!(request.body, serde_json::to_vec(&event).unwrap());
        let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(body["specversion"], "1.0");
        assert_eq!(body["id"], event.id.to_string());
        assert_eq!(body["data"], json!({"id": 42, "total": "9.99"}));

        let header = |name: &str| {
            request
                .headers
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        assert_eq!(header("content-type").as_deref(), Some(CLOUDEVENTS_JSON));
        assert_eq!(header("authorization").as_deref(), Some("Bearer t0ken"));
        assert_eq!(header("idempotency-key"), Some(key.clone()));
        assert_eq!(header("webhook-id"), Some(key.clone()));

        let timestamp: i64 = header("webhook-timestamp").unwrap().parse().unwrap();
        assert!(
            (Utc::now().timestamp() - timestamp).abs() < 60,
            "timestamp {timestamp}"
        );

        // Verify as a receiver would, from the secret alone.
        let key_bytes = BASE64
            .decode(SECRET.strip_prefix("whsec_").unwrap())
            .unwrap();
        let mut mac = Hmac::<Sha256>::new_from_slice(&key_bytes).unwrap();
        mac.update(format!("{key}.{timestamp}.").as_bytes());
        mac.update(&request.body);
        let expected = format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()));
        assert_eq!(header("webhook-signature"), Some(expected));
    }

    #[tokio::test]
    async fn unsigned_requests_carry_no_signature_headers() {
        let (result, server) = post_once(Reply::status(200)).await;
        result.unwrap();
        let requests = server.requests.lock().unwrap();
        let headers = &requests[0].headers;
        assert!(headers.get("idempotency-key").is_some());
        assert!(headers.get("webhook-signature").is_none());
        assert!(headers.get("webhook-timestamp").is_none());
    }

    #[tokio::test]
    async fn transient_statuses_are_retryable() {
        for code in [500, 502, 503, 429, 409, 408] {
            let (result, _server) = post_once(Reply::status(code)).await;
            let err = result.expect_err("a failure status");
            assert_eq!(err.kind(), ErrorKind::Retryable, "{code}: {err}");
            assert_eq!(err.retry_after_delay(), None, "{code}");
        }
    }

    #[tokio::test]
    async fn retry_after_is_honoured() {
        let mut reply = Reply::status(429);
        reply.headers.push(("retry-after", "7".to_owned()));
        let (result, _server) = post_once(reply).await;
        let err = result.expect_err("429");
        assert_eq!(err.kind(), ErrorKind::Retryable);
        assert_eq!(err.retry_after_delay(), Some(Duration::from_secs(7)));
        assert!(err.to_string().contains("429 Too Many Requests"), "{err}");

        let mut reply = Reply::status(503);
        let at = Utc::now() + chrono::Duration::seconds(120);
        reply.headers.push((
            "retry-after",
            at.format("%a, %d %b %Y %H:%M:%S GMT").to_string(),
        ));
        let (result, _server) = post_once(reply).await;
        let delay = result
            .expect_err("503")
            .retry_after_delay()
            .expect("an HTTP-date");
        assert!(
            (Duration::from_secs(100)..=Duration::from_secs(121)).contains(&delay),
            "{delay:?}"
        );
    }

    #[tokio::test]
    async fn other_client_errors_are_fatal() {
        for code in [404, 400, 401, 422, 301] {
            let (result, server) = post_once(Reply::status(code)).await;
            let err = result.expect_err("a failure status");
            assert!(err.is_fatal(), "{code}: {err}");
            assert_eq!(
                server.requests.lock().unwrap().len(),
                1,
                "{code}: redirects are not followed"
            );
        }
    }

    #[tokio::test]
    async fn the_message_names_the_status_and_a_short_body_excerpt() {
        let mut reply = Reply::status(503);
        reply.body = format!("database down\n{}", "x".repeat(1000));
        let (result, server) = post_once(reply).await;
        let message = result.expect_err("503").to_string();
        let prefix = format!(
            "POST {} answered 503 Service Unavailable: database down x",
            server.url
        );
        assert!(message.starts_with(&prefix), "{message}");
        assert!(
            message.len() < prefix.len() + BODY_EXCERPT_BYTES + 10,
            "{} bytes",
            message.len()
        );
        assert!(message.ends_with('…'), "{message}");
    }

    #[tokio::test]
    async fn connection_refused_is_retryable_and_hides_the_password() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let webhook = handler(
            &format!("http://alice:hunter2@{addr}/hook"),
            Some(SECRET),
            Duration::from_secs(5),
        );
        let err = webhook
            .handle(test_context("audit"), event())
            .await
            .expect_err("nothing listens");
        assert_eq!(err.kind(), ErrorKind::Retryable, "{err}");
        let message = err.to_string();
        assert!(
            message.starts_with(&format!("POST http://alice:***@{addr}/hook failed")),
            "{message}"
        );
        assert!(!message.contains("hunter2"), "{message}");
        assert!(!message.contains("AAECAwQF"), "{message}");
        assert!(!format!("{webhook:?}").contains("hunter2"));
        assert!(!format!("{webhook:?}").contains("t0ken"));
    }

    #[tokio::test]
    async fn a_slow_server_times_out_and_is_retryable() {
        let mut reply = Reply::status(200);
        reply.delay = Duration::from_secs(10);
        let server = serve(reply).await;
        let webhook = handler(&server.url, None, Duration::from_millis(200));
        let started = Instant::now();
        let err = webhook
            .handle(test_context("audit"), event())
            .await
            .expect_err("too slow");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(err.kind(), ErrorKind::Retryable, "{err}");
        assert!(err.to_string().contains("timed out after 200ms"), "{err}");
    }

    #[tokio::test]
    async fn cancellation_stops_the_request() {
        let mut reply = Reply::status(200);
        reply.delay = Duration::from_secs(10);
        let server = serve(reply).await;
        let webhook = handler(&server.url, None, Duration::from_secs(30));
        let ctx = test_context("audit");
        let token = ctx.cancellation().clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            token.cancel();
        });
        let started = Instant::now();
        let err = webhook.handle(ctx, event()).await.expect_err("cancelled");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(err.kind(), ErrorKind::Retryable);
        assert!(err.to_string().contains("cancelled"), "{err}");
    }

    #[test]
    fn reserved_and_invalid_headers_are_rejected_without_their_values() {
        for (name, value) in [
            ("Content-Type", "text/plain"),
            ("webhook-signature", "v1,x"),
            ("bad name", "v"),
            ("ce-id", "forged"),
        ] {
            let config = config::WebhookHandler {
                url: "http://127.0.0.1:1/".to_owned(),
                signing_secret: None,
                headers: BTreeMap::from([(name.to_owned(), value.to_owned())]),
                timeout: HumanDuration::from_secs(1),
                mode: WebhookMode::Binary,
            };
            let err = WebhookHandler::new(&config).expect_err(name);
            assert!(matches!(err, BuildError::InvalidHeader { .. }), "{err}");
        }
        let config = config::WebhookHandler {
            url: "http://127.0.0.1:1/".to_owned(),
            signing_secret: None,
            headers: BTreeMap::from([("X-Token".to_owned(), "s3cret\nInjected: yes".to_owned())]),
            timeout: HumanDuration::from_secs(1),
            mode: WebhookMode::Structured,
        };
        let message = WebhookHandler::new(&config)
            .expect_err("newline")
            .to_string();
        assert!(
            message.contains("X-Token") && !message.contains("s3cret"),
            "{message}"
        );
    }

    #[test]
    fn retry_after_parses_seconds_and_dates() {
        let now = DateTime::parse_from_rfc3339("2024-05-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(parse_retry_after(" 7 ", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Wed, 01 May 2024 12:01:30 GMT", now),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            parse_retry_after("Wed, 01 May 2024 11:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-3", now), None);
    }
}
