//! Secrets never leave the process: a canary in every secret-bearing field of the
//! configuration must be absent from the engine's log at TRACE, from HTTP answers
//! (errors, `/metrics`, `/api`), from every CLI command's output, and from every
//! table of the store.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::crash::{Engine, Workdir, free_port, wait_ready};
use crate::s3::Moto;
use crate::support::{Backend, client, eventually, fresh_store, open};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

/// Each secret-bearing field gets a canary of its own, so a leak names its field.
const CANARIES: [(&str, &str); 9] = [
    ("store password", "canary-store-password-1f2e"),
    ("store password parameter", "canary-store-query-3a4b"),
    ("admin_token", "canary-admin-token-5c6d"),
    ("github verify secret", "canary-github-secret-7e8f"),
    ("webhook URL password", "canary-webhook-password-9a0b"),
    ("webhook signing key", "Y2FuYXJ5LXNpZ25pbmcta2V5"),
    ("webhook signing key, decoded", "canary-signing-key"),
    ("s3 access key id", "CANARYACCESSKEYID2C3D"),
    ("s3 secret access key", "canary-s3-secret-key-4e5f"),
];

fn assert_no_canary(place: &str, text: &str) {
    for (field, canary) in CANARIES {
        assert!(
            !text.contains(canary),
            "the {field} leaked into {place}: …{}…",
            context(text, canary)
        );
    }
}

/// The start of the line where `canary` appears (which names a log line's level and
/// target), and the canary with a little after it.
fn context(text: &str, canary: &str) -> String {
    let at = text.find(canary).unwrap_or(0);
    let line = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let head: String = text[line..at].chars().take(160).collect();
    let tail: String = text[at..].chars().take(canary.len() + 40).collect();
    format!("{head}…{tail}")
}

/// A receiver that answers every request with a 500, so that the webhook handler
/// takes its error paths too.
async fn failing_receiver() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buffer = vec![0u8; 64 * 1024];
                // One read takes the small test requests whole; a short read is fine.
                let _ = socket.read(&mut buffer).await;
                let _ = socket
                    .write_all(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 4\r\nconnection: close\r\n\r\nnope")
                    .await;
            });
        }
    });
    port
}

fn github_signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn cli(config: &Path, args: &[&str]) -> String {
    let output = Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(config)
        .env("SWITCHYARD_LOG", "trace")
        .output()
        .expect("switchyard runs");
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_a_log_an_answer_an_output_or_a_table() {
    let secret = |field: &str| CANARIES.iter().find(|(f, _)| *f == field).unwrap().1;
    let dir = Workdir::new();
    let database = fresh_store(Backend::Postgres).await;
    let (base, name) = database.rsplit_once('/').unwrap();
    let store_url = format!(
        "{}:{}@{}/{name}?password={}",
        &base[..base.find('@').unwrap()],
        secret("store password"),
        &base[base.find('@').unwrap() + 1..],
        secret("store password parameter"),
    );
    let moto = Moto::connect().await;
    let (bucket, queue) = (moto.bucket().await, moto.queue().await);
    moto.notify(&bucket, &queue).await;
    let receiver = failing_receiver().await;
    let port = free_port();
    let s3 = moto
        .source(&bucket, &format!("queue_url: \"{queue}\""))
        .replace(
            "access_key_id: test, secret_access_key: test",
            &format!(
                "access_key_id: {}, secret_access_key: {}",
                secret("s3 access key id"),
                secret("s3 secret access key")
            ),
        );
    let config_path = dir.0.join("triggers.yaml");
    std::fs::write(
        &config_path,
        format!(
            r#"
store: "{store_url}"
http: {{ listen: 127.0.0.1:{port}, admin_token: {admin} }}
dispatcher: {{ lease: 2s, poll_interval: 100ms, shutdown_grace: 2s }}
sources:
  hooks: {{ http: {{ path: /hooks, verify: {{ github: {{ secret: {github} }} }} }} }}
  uploads: {{ s3: {s3} }}
triggers:
  out:
    source: hooks
    handler: {{ webhook: {{ url: "http://user:{password}@127.0.0.1:{receiver}/hook", signing_secret: "whsec_{signing}" }} }}
    retry: {{ max_attempts: 2, initial: 100ms }}
  s3log: {{ source: uploads, handler: log }}
"#,
            admin = secret("admin_token"),
            github = secret("github verify secret"),
            password = secret("webhook URL password"),
            signing = secret("webhook signing key"),
        ),
    )
    .unwrap();
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(secret("webhook signing key"))
            .unwrap(),
        secret("webhook signing key, decoded").as_bytes(),
    );

    let log = dir.0.join("engine.log");
    let engine = Engine(
        Command::new(BIN)
            .args(["run", "--config"])
            .arg(&config_path)
            .env("SWITCHYARD_LOG", "trace")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.0.join("engine.out")).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("switchyard starts"),
    );
    wait_ready(port).await;
    let base_url = format!("http://127.0.0.1:{port}");

    let mut answers = String::new();
    let body = serde_json::to_vec(&json!({ "order": 1 })).unwrap();
    let signed = client()
        .post(format!("{base_url}/hooks"))
        .header("content-type", "application/json")
        .header(
            "x-hub-signature-256",
            github_signature(secret("github verify secret"), &body),
        )
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(signed.status(), 202);
    let id = signed.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let forged = client()
        .post(format!("{base_url}/hooks"))
        .header("content-type", "application/json")
        .header("x-hub-signature-256", github_signature("wrong", &body))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    answers.push_str(&forged.text().await.unwrap());
    moto.put(&bucket, "incoming/a.jpg", "bytes").await;

    let store = open(&database).await;
    eventually(
        Duration::from_secs(30),
        "the webhook delivery to die and the upload to arrive",
        || async {
            let dead = store.list_dead(&Default::default()).await.unwrap();
            let uploads = store
                .list_events(&switchyard_store::EventQuery {
                    source: Some("uploads".into()),
                    ..Default::default()
                })
                .await
                .unwrap();
            (!dead.is_empty() && !uploads.is_empty()).then_some(())
        },
    )
    .await;

    let token = secret("admin_token");
    for path in [
        "/api/events",
        &format!("/api/events/{id}"),
        "/api/dead-letters",
    ] {
        let response = client()
            .get(format!("{base_url}{path}"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        answers.push_str(&response.text().await.unwrap());
        let refused = client()
            .get(format!("{base_url}{path}"))
            .bearer_auth("wrong")
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 401, "{path}");
        answers.push_str(&refused.text().await.unwrap());
    }
    for path in ["/metrics", "/readyz", "/healthz"] {
        answers.push_str(
            &client()
                .get(format!("{base_url}{path}"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap(),
        );
    }
    assert_no_canary("HTTP answers", &answers);

    for args in [
        &["validate"][..],
        &["migrate"],
        &["events", "--json"],
        &["event", &id, "--json"],
        &["event", &id],
        &["dlq", "list", "--json"],
        &["dlq", "list"],
        &["rejected"],
        &["schedules"],
    ] {
        assert_no_canary(
            &format!("`switchyard {}`", args.join(" ")),
            &cli(&config_path, args),
        );
    }

    drop(engine);
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("TRACE"), "the engine logged at TRACE");
    assert_no_canary("the engine's log at TRACE", &log);
    assert_no_canary(
        "the engine's standard output",
        &std::fs::read_to_string(dir.0.join("engine.out")).unwrap(),
    );

    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&database)
        .await
        .unwrap();
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'switchyard'",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert!(tables.len() >= 8, "{tables:?}");
    for table in tables {
        let rows: Vec<String> =
            sqlx::query_scalar(&format!("SELECT t::text FROM switchyard.{table} t"))
                .fetch_all(&mut conn)
                .await
                .unwrap();
        assert_no_canary(&format!("table {table}"), &rows.join("\n"));
    }
}
