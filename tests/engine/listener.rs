//! The listener against slow, idle and hostile clients, over raw sockets: header and
//! body timeouts, body errors, the connection cap, shutdown with a partial request,
//! and the admin API's origin, host and token rules.

use std::net::SocketAddr;
use std::time::Duration;

use switchyard::config::{Config, ProcessEnv};
use switchyard::{Engine, EventQuery, RunningEngine};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{Backend, TestStore, client, fresh_store};

/// The bound on every wait for the server; a test fails when it runs out.
const WAIT: Duration = Duration::from_secs(10);

const ADMIN_TOKEN: &str = "admin-t0ken";

const SOURCES: &str = "
sources:
  open: { http: { path: /open } }
  small: { http: { path: /small, body_limit: 16 } }
triggers:
  log-open: { source: open, handler: log }
";

/// Starts an engine whose `http:` section is `listen: 127.0.0.1:0` and `http`. The
/// store comes first, so that a caller's binding of it outlives the engine.
async fn engine(http: &str) -> (TestStore, RunningEngine) {
    let store = fresh_store(Backend::Sqlite).await;
    let text = format!(
        "store: {}\nhttp: {{ listen: 127.0.0.1:0, {http} }}\n{SOURCES}",
        &*store
    );
    let config = Config::parse(&text, &ProcessEnv).unwrap();
    let engine = Engine::from_cli().start(config).await.unwrap();
    (store, engine)
}

async fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).await.expect("connects")
}

async fn send(stream: &mut TcpStream, bytes: &str) {
    stream.write_all(bytes.as_bytes()).await.expect("sends");
}

/// One HTTP response as read off the wire.
#[derive(Debug)]
struct Answer {
    status: u16,
    body: String,
}

/// Reads one response with a `Content-Length` body, failing the test when the
/// connection closes first or nothing comes within [`WAIT`].
async fn read_answer(stream: &mut TcpStream) -> Answer {
    tokio::time::timeout(WAIT, read_answer_unbounded(stream))
        .await
        .expect("an answer in time")
}

async fn read_answer_unbounded(stream: &mut TcpStream) -> Answer {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        read_more(stream, &mut buf).await;
    };
    let head = String::from_utf8(buf[..head_end].to_vec()).expect("a text head");
    let status = head[9..12].parse().expect("a status code");
    let length = head
        .lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .map_or(0, |(_, value)| value.trim().parse().expect("a length"));
    while buf.len() < head_end + length {
        read_more(stream, &mut buf).await;
    }
    Answer {
        status,
        body: String::from_utf8_lossy(&buf[head_end..head_end + length]).into_owned(),
    }
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) {
    let read = stream.read_buf(buf).await.expect("reads");
    assert!(
        read > 0,
        "the server closed the connection before answering; got {:?}",
        String::from_utf8_lossy(buf)
    );
}

/// Waits for the server to close the connection (end of stream or reset), failing
/// the test when it is still open after [`WAIT`]. Returns what arrived before.
async fn closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    tokio::time::timeout(WAIT, async {
        while let Ok(read) = stream.read_buf(&mut buf).await {
            if read == 0 {
                break;
            }
        }
    })
    .await
    .expect("the server to close the connection in time");
    buf
}

/// Sends one request on a new connection that asks to be closed after it.
async fn exchange(addr: SocketAddr, head: &str, body: &str) -> Answer {
    let mut stream = connect(addr).await;
    send(
        &mut stream,
        &format!(
            "{head}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
    .await;
    read_answer(&mut stream).await
}

async fn healthz_is_served(addr: SocketAddr) {
    let response = client()
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .expect("a new client is served");
    assert_eq!(response.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_sent_request_head_is_closed_after_header_timeout() {
    let (_store, engine) = engine("header_timeout: 500ms").await;
    let addr = engine.local_addr();
    let mut slow = connect(addr).await;
    send(
        &mut slow,
        "POST /open HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le",
    )
    .await;
    let received = closed(&mut slow).await;
    assert!(
        !received.starts_with(b"HTTP/1.1 2"),
        "{:?}",
        String::from_utf8_lossy(&received)
    );
    healthz_is_served(addr).await;
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_after_header_timeout() {
    let (_store, engine) = engine("header_timeout: 500ms").await;
    let mut idle = connect(engine.local_addr()).await;
    send(
        &mut idle,
        "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    )
    .await;
    let answer = read_answer(&mut idle).await;
    assert_eq!((answer.status, answer.body.as_str()), (200, "ok"));
    assert!(closed(&mut idle).await.is_empty());
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_body_gets_408_and_records_nothing() {
    let (_store, engine) = engine("body_timeout: 500ms").await;
    let mut stalled = connect(engine.local_addr()).await;
    send(
        &mut stalled,
        "POST /open HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: 100\r\n\r\n{\"partial\": ",
    )
    .await;
    let answer = read_answer(&mut stalled).await;
    assert_eq!(answer.status, 408, "{answer:?}");
    assert!(answer.body.contains("body_timeout"), "{answer:?}");
    let events = engine
        .store()
        .list_events(&EventQuery::default())
        .await
        .unwrap();
    assert!(events.is_empty(), "{events:?}");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_chunked_body_is_400_and_only_the_limit_is_413() {
    let (_store, engine) = engine("body_timeout: 5s").await;
    let addr = engine.local_addr();
    let chunked = |path: &str, chunks: &str| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\
             Connection: close\r\n\r\n{chunks}"
        )
    };

    let mut malformed = connect(addr).await;
    send(
        &mut malformed,
        &chunked("/open", "zz\r\nhello\r\n0\r\n\r\n"),
    )
    .await;
    let answer = read_answer(&mut malformed).await;
    assert_eq!(answer.status, 400, "{answer:?}");
    assert!(
        answer.body.contains("the body could not be read"),
        "{answer:?}"
    );

    let mut over = connect(addr).await;
    send(
        &mut over,
        &chunked(
            "/small",
            "20\r\n0123456789abcdef0123456789abcdef\r\n0\r\n\r\n",
        ),
    )
    .await;
    let answer = read_answer(&mut over).await;
    assert_eq!(answer.status, 413, "{answer:?}");

    let answer = exchange(
        addr,
        "POST /small HTTP/1.1\r\nHost: 127.0.0.1",
        &"x".repeat(17),
    )
    .await;
    assert_eq!(answer.status, 413, "{answer:?}");
    assert!(answer.body.contains("limit of 16 bytes"), "{answer:?}");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_max_connections_the_next_client_waits_for_one_to_close() {
    let (_store, engine) = engine("max_connections: 4, header_timeout: 60s").await;
    let addr = engine.local_addr();
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(connect(addr).await);
    }
    let mut fifth = connect(addr).await;
    send(
        &mut fifth,
        "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    )
    .await;
    // While four connections are open, the listener must not take the fifth, so this
    // wait can only end by running out.
    let early = tokio::time::timeout(
        Duration::from_millis(300),
        read_answer_unbounded(&mut fifth),
    );
    assert!(
        early.await.is_err(),
        "the fifth client was served at the cap"
    );

    drop(idle.pop());
    let answer = read_answer(&mut fifth).await;
    assert_eq!((answer.status, answer.body.as_str()), (200, "ok"));

    drop(idle);
    drop(fifth);
    healthz_is_served(addr).await;
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drops_partial_requests_after_the_grace() {
    let (_store, engine) =
        engine("header_timeout: 60s, body_timeout: 60s, shutdown_grace: 200ms").await;
    let addr = engine.local_addr();
    // `100 Continue` comes once the source is reading the body, so the server is
    // surely in the middle of this request when the shutdown begins.
    let mut partial_body = connect(addr).await;
    send(
        &mut partial_body,
        "POST /open HTTP/1.1\r\nHost: 127.0.0.1\r\nExpect: 100-continue\r\n\
         Content-Length: 100\r\n\r\n",
    )
    .await;
    assert_eq!(read_answer(&mut partial_body).await.status, 100);
    send(&mut partial_body, "{\"partial\": ").await;
    let mut partial_head = connect(addr).await;
    send(
        &mut partial_head,
        "POST /open HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-",
    )
    .await;

    tokio::time::timeout(WAIT, engine.shutdown())
        .await
        .expect("shutdown does not wait for partial requests");
    assert!(closed(&mut partial_body).await.is_empty());
    assert!(closed(&mut partial_head).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_the_admin_api_wants_a_loopback_host_and_no_foreign_origin() {
    let (_store, engine) = engine("header_timeout: 5s").await;
    let addr = engine.local_addr();
    let port = addr.port();
    let replay = format!("/api/events/{}/replay", uuid::Uuid::new_v4());

    let cross_site = exchange(
        addr,
        &format!(
            "POST {replay} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: http://evil.example\r\n\
             Content-Type: text/plain"
        ),
        "x",
    )
    .await;
    assert_eq!(cross_site.status, 403, "{cross_site:?}");
    assert!(cross_site.body.contains("another origin"), "{cross_site:?}");

    let rebound = exchange(addr, "GET /api/events HTTP/1.1\r\nHost: evil.example", "").await;
    assert_eq!(rebound.status, 403, "{rebound:?}");
    assert!(rebound.body.contains("loopback Host"), "{rebound:?}");

    let local = exchange(
        addr,
        &format!("GET /api/events HTTP/1.1\r\nHost: 127.0.0.1:{port}"),
        "",
    )
    .await;
    assert_eq!((local.status, local.body.as_str()), (200, "[]"));

    let same_origin = exchange(
        addr,
        &format!(
            "POST {replay} HTTP/1.1\r\nHost: localhost:{port}\r\nOrigin: http://localhost:{port}"
        ),
        "",
    )
    .await;
    assert_eq!(same_origin.status, 404, "{same_origin:?}");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_the_bearer_scheme_is_case_insensitive() {
    let (_store, engine) = engine(&format!("admin_token: {ADMIN_TOKEN}")).await;
    let addr = engine.local_addr();
    let events = |authorization: String| {
        let head = format!(
            "GET /api/events HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAuthorization: {authorization}",
            addr.port()
        );
        async move { exchange(addr, &head, "").await }
    };
    assert_eq!(events(format!("bearer {ADMIN_TOKEN}")).await.status, 200);
    assert_eq!(events(format!("BEARER {ADMIN_TOKEN}")).await.status, 200);
    let wrong = events(format!("Bearer {ADMIN_TOKEN}x")).await;
    assert_eq!(wrong.status, 401, "{wrong:?}");
    let basic = events(format!("Basic {ADMIN_TOKEN}")).await;
    assert_eq!(basic.status, 401, "{basic:?}");
    engine.shutdown().await;
}
