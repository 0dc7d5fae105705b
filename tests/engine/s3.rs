//! The `s3` source against moto (S3, SQS and STS on one port, started by
//! scripts/test.sh): notifications end to end with real bucket notifications, every
//! shared fixture as a message body, redelivery, a receiver that dies before
//! committing, and polling across a restart.
//!
//! The moto server is found through `SWITCHYARD_TEST_MOTO` (default
//! `http://127.0.0.1:5000`). These tests fail, never skip, when it is unreachable.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{Event as S3EventKind, NotificationConfiguration, QueueConfiguration};
use aws_sdk_sqs::types::QueueAttributeName;
use aws_smithy_http_client::tls::Provider;
use aws_smithy_http_client::tls::rustls_provider::CryptoMode;
use serde_json::Value;
use switchyard::{Context, Engine, Event, handler_fn};
use switchyard_store::{EventQuery, Store};

use crate::both_backends;
use crate::crash::{Workdir, cli, free_port};
use crate::support::{Backend, eventually, fresh_store, open, start};

const WAIT: Duration = Duration::from_secs(30);
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/fixtures/s3/");

/// Clients of the test's own, talking to moto.
pub(crate) struct Moto {
    url: String,
    s3: aws_sdk_s3::Client,
    sqs: aws_sdk_sqs::Client,
}

impl Moto {
    pub(crate) async fn connect() -> Self {
        let url = std::env::var("SWITCHYARD_TEST_MOTO")
            .unwrap_or_else(|_| "http://127.0.0.1:5000".to_owned());
        let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .endpoint_url(&url)
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                "test", "test", None, None, "tests",
            ))
            .http_client(
                aws_smithy_http_client::Builder::new()
                    .tls_provider(Provider::Rustls(CryptoMode::Ring))
                    .build_https(),
            )
            .load()
            .await;
        let s3 = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(true)
            .build();
        let moto = Self {
            s3: aws_sdk_s3::Client::from_conf(s3),
            sqs: aws_sdk_sqs::Client::new(&shared),
            url,
        };
        if let Err(error) = moto.sqs.list_queues().send().await {
            panic!(
                "the S3 tests need moto at {} (run scripts/test.sh, which starts it, or set SWITCHYARD_TEST_MOTO): {}",
                moto.url,
                aws_sdk_sqs::error::DisplayErrorContext(&error)
            );
        }
        moto
    }

    fn unique(prefix: &str) -> String {
        format!(
            "{prefix}-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..16]
        )
    }

    pub(crate) async fn bucket(&self) -> String {
        let bucket = Self::unique("sy");
        self.s3
            .create_bucket()
            .bucket(&bucket)
            .send()
            .await
            .unwrap();
        bucket
    }

    pub(crate) async fn queue(&self) -> String {
        let created = self
            .sqs
            .create_queue()
            .queue_name(Self::unique("sy"))
            .send()
            .await
            .unwrap();
        created.queue_url.unwrap()
    }

    /// Sends the bucket's created and removed notifications to the queue.
    pub(crate) async fn notify(&self, bucket: &str, queue_url: &str) {
        let attributes = self
            .sqs
            .get_queue_attributes()
            .queue_url(queue_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .unwrap();
        let arn = attributes.attributes.unwrap()[&QueueAttributeName::QueueArn].clone();
        let queue = QueueConfiguration::builder()
            .queue_arn(arn)
            .events(S3EventKind::S3ObjectCreated)
            .events(S3EventKind::S3ObjectRemoved)
            .build()
            .unwrap();
        self.s3
            .put_bucket_notification_configuration()
            .bucket(bucket)
            .notification_configuration(
                NotificationConfiguration::builder()
                    .queue_configurations(queue)
                    .build(),
            )
            .send()
            .await
            .unwrap();
    }

    /// Uploads `body` under `key`; returns its etag, unquoted.
    pub(crate) async fn put(&self, bucket: &str, key: &str, body: &str) -> String {
        let put = self
            .s3
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(ByteStream::from(body.as_bytes().to_vec()))
            .send()
            .await
            .unwrap();
        put.e_tag.unwrap().trim_matches('"').to_owned()
    }

    async fn delete(&self, bucket: &str, key: &str) {
        self.s3
            .delete_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .unwrap();
    }

    async fn send(&self, queue_url: &str, body: &str) {
        self.sqs
            .send_message()
            .queue_url(queue_url)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }

    /// Messages in the queue, visible or held by a receiver.
    pub(crate) async fn messages_left(&self, queue_url: &str) -> u64 {
        let attributes = self
            .sqs
            .get_queue_attributes()
            .queue_url(queue_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .unwrap()
            .attributes
            .unwrap();
        attributes.values().map(|n| n.parse::<u64>().unwrap()).sum()
    }

    pub(crate) async fn wait_until_empty(&self, queue_url: &str) {
        eventually(WAIT, "the queue to be empty", || async {
            (self.messages_left(queue_url).await == 0).then_some(())
        })
        .await;
    }

    /// `s3:` settings for a source on this moto.
    pub(crate) fn source(&self, bucket: &str, rest: &str) -> String {
        format!(
            "{{ bucket: {bucket}, endpoint: \"{}\", access_key_id: test, secret_access_key: test, {rest} }}",
            self.url
        )
    }
}

/// Records every event a handler saw.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<Event>>>);

impl Seen {
    fn all(&self) -> Vec<Event> {
        self.0.lock().unwrap().clone()
    }

    /// `(type, subject, data.event_name)` of every event seen, sorted.
    fn summary(&self) -> Vec<(String, String, String)> {
        let mut all: Vec<_> = self.all().iter().map(summary).collect();
        all.sort();
        all
    }

    fn engine(&self) -> Engine {
        let seen = self.clone();
        Engine::from_cli().handler(
            "record",
            handler_fn(move |_: Context, event: Event| {
                let seen = seen.clone();
                async move {
                    seen.0.lock().unwrap().push(event);
                    Ok(())
                }
            }),
        )
    }

    async fn wait_for(&self, count: usize) -> Vec<Event> {
        eventually(WAIT, &format!("{count} events delivered"), || async {
            let all = self.all();
            (all.len() >= count).then_some(all)
        })
        .await
    }
}

fn summary(event: &Event) -> (String, String, String) {
    let data = event.data.as_ref().expect("s3 events carry data");
    (
        event.ty.clone(),
        event.subject.clone().unwrap_or_default(),
        data["event_name"].as_str().unwrap_or_default().to_owned(),
    )
}

fn owned(expected: &[(&str, &str, &str)]) -> Vec<(String, String, String)> {
    let mut out: Vec<_> = expected
        .iter()
        .map(|(a, b, c)| ((*a).to_owned(), (*b).to_owned(), (*c).to_owned()))
        .collect();
    out.sort();
    out
}

/// Every event of `source` in the log, oldest first.
async fn logged(store: &dyn Store, source: &str) -> Vec<Event> {
    let query = EventQuery {
        source: Some(source.to_owned()),
        limit: 1000,
        ..EventQuery::default()
    };
    let mut events = Vec::new();
    for summary in store.list_events(&query).await.unwrap().into_iter().rev() {
        events.push(store.get_event(summary.id).await.unwrap().unwrap().event);
    }
    events
}

fn fixture(name: &str) -> String {
    let path = Path::new(FIXTURES).join(name);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("read fixture {}: {error}", path.display()))
}

async fn notifications_deliver_objects_with_decoded_keys(backend: Backend) {
    let moto = Moto::connect().await;
    let (bucket, queue) = (moto.bucket().await, moto.queue().await);
    moto.notify(&bucket, &queue).await;
    let store_url = fresh_store(backend).await;
    let seen = Seen::default();
    let yaml = format!(
        "sources: {{ uploads: {{ s3: {} }} }}\ntriggers: {{ record: {{ source: uploads, handler: record }} }}\n",
        moto.source(
            &bucket,
            &format!("queue_url: \"{queue}\", visibility_timeout: 5s")
        )
    );
    let engine = start(seen.engine(), &yaml, &store_url).await;

    let petals = moto.put(&bucket, "photos/red flower.jpg", "petals").await;
    moto.put(&bucket, "photos/café/menü 2026.png", "menu").await;
    moto.put(&bucket, "notes/a+b=c.txt", "plus").await;
    moto.delete(&bucket, "photos/red flower.jpg").await;
    seen.wait_for(4).await;
    moto.wait_until_empty(&queue).await;

    assert_eq!(
        seen.summary(),
        owned(&[
            ("s3.object.created", "notes/a+b=c.txt", "ObjectCreated:Put"),
            (
                "s3.object.created",
                "photos/café/menü 2026.png",
                "ObjectCreated:Put"
            ),
            (
                "s3.object.created",
                "photos/red flower.jpg",
                "ObjectCreated:Put"
            ),
            (
                "s3.object.removed",
                "photos/red flower.jpg",
                "ObjectRemoved:Delete"
            ),
        ])
    );
    let events = seen.all();
    let flower = events
        .iter()
        .find(|e| {
            e.ty == "s3.object.created" && e.subject.as_deref() == Some("photos/red flower.jpg")
        })
        .unwrap();
    assert_eq!(flower.source, format!("s3://{bucket}"));
    let data = flower.data.as_ref().unwrap();
    assert_eq!(data["bucket"], bucket.as_str());
    assert_eq!(data["key"], "photos/red flower.jpg");
    assert_eq!(data["size"], 6);
    assert_eq!(data["etag"], petals.as_str());
    assert_eq!(data["region"], "us-east-1");
    assert!(
        engine
            .store()
            .list_rejected(None, 0)
            .await
            .unwrap()
            .is_empty(),
        "the s3:TestEvent moto sends is skipped, not rejected"
    );
    engine.shutdown().await;
}

both_backends!(
    notifications_deliver_objects_with_decoded_keys,
    polling_survives_a_restart_without_repeating_events,
);

/// What a fixture body must turn into, per shared/fixtures/s3/README.md.
enum Expect {
    Events(&'static [(&'static str, &'static str, &'static str)]),
    Nothing,
    Quarantined,
}

/// A notification with a record whose key decodes to a NUL character: that change is
/// quarantined, the message's other change is committed, and the queue moves on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_the_log_cannot_store_is_quarantined_alone() {
    let moto = Moto::connect().await;
    let queue = moto.queue().await;
    let store_url = fresh_store(Backend::Sqlite).await;
    let settings = format!("queue_url: \"{queue}\"");
    let engine = start(
        Engine::from_cli(),
        &format!(
            "sources:\n  uploads: {{ s3: {} }}\n",
            moto.source("images", &settings)
        ),
        &store_url,
    )
    .await;
    let body = fixture("two-records.json").replace("incoming/b.jpg", "incoming/b%00.jpg");
    moto.send(&queue, &body).await;
    moto.wait_until_empty(&queue).await;

    let store = engine.store().clone();
    let events = logged(&*store, "uploads").await;
    let subjects: Vec<_> = events.iter().map(|e| e.subject.clone().unwrap()).collect();
    assert_eq!(subjects, ["incoming/a.jpg"]);
    let rejected = store.list_rejected(Some("uploads"), 0).await.unwrap();
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert!(
        rejected[0].input_id.ends_with("#1"),
        "{:?}",
        rejected[0].input_id
    );
    assert_eq!(
        rejected[0].reason,
        "subject holds a NUL character (U+0000), which the event log cannot store"
    );
    assert_eq!(rejected[0].body, body, "the message is kept as received");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fixture_gives_its_documented_result() {
    use Expect::{Events, Nothing, Quarantined};
    const CREATED: &str = "s3.object.created";
    const REMOVED: &str = "s3.object.removed";
    let table: [(&str, Expect); 11] = [
        (
            "put-with-space-and-version.json",
            Events(&[(CREATED, "incoming/red flower.jpg", "ObjectCreated:Put")]),
        ),
        (
            "put-unicode-key.json",
            Events(&[(CREATED, "incoming/café/menu 2026.png", "ObjectCreated:Put")]),
        ),
        (
            "delete.json",
            Events(&[(REMOVED, "incoming/red flower.jpg", "ObjectRemoved:Delete")]),
        ),
        (
            "delete-marker.json",
            Events(&[(
                REMOVED,
                "incoming/old.jpg",
                "ObjectRemoved:DeleteMarkerCreated",
            )]),
        ),
        (
            "multipart-v2.3-unknown-fields.json",
            Events(&[(
                CREATED,
                "videos/big.mp4",
                "ObjectCreated:CompleteMultipartUpload",
            )]),
        ),
        (
            "two-records.json",
            Events(&[
                (CREATED, "incoming/a.jpg", "ObjectCreated:Put"),
                (CREATED, "incoming/b.jpg", "ObjectCreated:Copy"),
            ]),
        ),
        ("test-event.json", Nothing),
        ("empty-records.json", Nothing),
        (
            "sns-wrapped.json",
            Events(&[(CREATED, "incoming/red flower.jpg", "ObjectCreated:Put")]),
        ),
        (
            "eventbridge-object-created.json",
            Events(&[(CREATED, "incoming/red flower.jpg", "Object Created")]),
        ),
        ("not-json.txt", Quarantined),
    ];
    let mut on_disk: Vec<String> = std::fs::read_dir(FIXTURES)
        .unwrap_or_else(|error| panic!("the fixtures are in {FIXTURES}: {error}"))
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name != "README.md")
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = table.iter().map(|(name, _)| (*name).to_owned()).collect();
    listed.sort();
    assert_eq!(listed, on_disk, "every fixture needs a row here");

    // One source and queue per fixture, so each result is its own; the sources assume
    // a role through moto's STS, as a deployment with role_arn would.
    let moto = Moto::connect().await;
    let mut queues = Vec::new();
    let mut sources = String::new();
    for (i, (name, _)) in table.iter().enumerate() {
        let queue = moto.queue().await;
        let settings =
            format!("queue_url: \"{queue}\", role_arn: \"arn:aws:iam::123456789012:role/reader\"");
        sources.push_str(&format!(
            "  f{i}: {{ s3: {} }}\n",
            moto.source("images", &settings)
        ));
        queues.push((i, *name, queue));
    }
    let store_url = fresh_store(Backend::Sqlite).await;
    let engine = start(
        Engine::from_cli(),
        &format!("sources:\n{sources}"),
        &store_url,
    )
    .await;
    for (_, name, queue) in &queues {
        moto.send(queue, &fixture(name)).await;
    }
    for (_, _, queue) in &queues {
        moto.wait_until_empty(queue).await;
    }

    let store = engine.store().clone();
    let mut quarantined = Vec::new();
    for ((i, name, _), (_, expect)) in queues.iter().zip(&table) {
        let source = format!("f{i}");
        let events: Vec<_> = logged(&*store, &source).await;
        let rejected = store.list_rejected(Some(&source), 0).await.unwrap();
        match expect {
            Events(expected) => {
                let mut found: Vec<_> = events.iter().map(summary).collect();
                found.sort();
                assert_eq!(found, owned(expected), "{name}");
                assert!(rejected.is_empty(), "{name}");
                for event in &events {
                    assert_eq!(event.source, "s3://images", "{name}");
                    let region = &event.data.as_ref().unwrap()["region"];
                    assert_eq!(region, "eu-central-1", "{name}: the record's region wins");
                }
            }
            Nothing => {
                assert!(events.is_empty(), "{name}: {events:?}");
                assert!(rejected.is_empty(), "{name}: {rejected:?}");
            }
            Quarantined => {
                assert!(events.is_empty(), "{name}: {events:?}");
                assert_eq!(rejected.len(), 1, "{name}");
                assert_eq!(rejected[0].body, fixture(name));
                assert!(
                    rejected[0].reason.starts_with("the message is not JSON"),
                    "{}",
                    rejected[0].reason
                );
                quarantined.push(source);
            }
        }
    }
    engine.shutdown().await;

    // `switchyard rejected` shows them.
    let dir = Workdir::new();
    let config = dir.config(&store_url, free_port(), "");
    let output = cli(&config, &["rejected", "--json"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let listed: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
    let sources: Vec<&str> = listed
        .iter()
        .map(|r| r["source_name"].as_str().unwrap())
        .collect();
    assert_eq!(sources, quarantined);
    assert_eq!(listed[0]["body"], fixture("not-json.txt"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_delivered_three_times_makes_one_event() {
    let moto = Moto::connect().await;
    let queue = moto.queue().await;
    let body = fixture("put-with-space-and-version.json");
    // Two copies wait in the queue (they may arrive in one batch), a third comes after
    // the first commit.
    moto.send(&queue, &body).await;
    moto.send(&queue, &body).await;
    let store_url = fresh_store(Backend::Sqlite).await;
    let seen = Seen::default();
    let yaml = format!(
        "sources: {{ uploads: {{ s3: {} }} }}\ntriggers: {{ record: {{ source: uploads, handler: record }} }}\n",
        moto.source("images", &format!("queue_url: \"{queue}\""))
    );
    let engine = start(seen.engine(), &yaml, &store_url).await;
    seen.wait_for(1).await;
    moto.wait_until_empty(&queue).await;
    moto.send(&queue, &body).await;
    moto.wait_until_empty(&queue).await;

    assert_eq!(logged(&**engine.store(), "uploads").await.len(), 1);
    engine.shutdown().await;
    assert_eq!(seen.all().len(), 1, "one event, one delivery");
}

/// A receiver that dies between receive and commit leaves the message in the queue,
/// invisible until its visibility timeout; the engine then receives and commits it once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_dying_before_commit_loses_nothing() {
    let moto = Moto::connect().await;
    let queue = moto.queue().await;
    moto.send(&queue, &fixture("two-records.json")).await;
    let taken = moto
        .sqs
        .receive_message()
        .queue_url(&queue)
        .visibility_timeout(2)
        .send()
        .await
        .unwrap();
    assert_eq!(
        taken.messages.unwrap_or_default().len(),
        1,
        "the dead receiver took it"
    );

    let store_url = fresh_store(Backend::Sqlite).await;
    let seen = Seen::default();
    let yaml = format!(
        "sources: {{ uploads: {{ s3: {} }} }}\ntriggers: {{ record: {{ source: uploads, handler: record }} }}\n",
        moto.source("images", &format!("queue_url: \"{queue}\""))
    );
    let engine = start(seen.engine(), &yaml, &store_url).await;
    seen.wait_for(2).await;
    moto.wait_until_empty(&queue).await;
    engine.shutdown().await;

    // Restarting finds nothing more to do.
    let engine = start(seen.engine(), &yaml, &store_url).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    engine.shutdown().await;
    assert_eq!(
        seen.summary(),
        owned(&[
            ("s3.object.created", "incoming/a.jpg", "ObjectCreated:Put"),
            ("s3.object.created", "incoming/b.jpg", "ObjectCreated:Copy"),
        ])
    );
}

async fn polling_survives_a_restart_without_repeating_events(backend: Backend) {
    let moto = Moto::connect().await;
    let bucket = moto.bucket().await;
    let store_url = fresh_store(backend).await;
    let seen = Seen::default();
    let yaml = format!(
        "sources: {{ listing: {{ s3: {} }} }}\ntriggers: {{ record: {{ source: listing, handler: record }} }}\n",
        moto.source(
            &bucket,
            "prefix: docs/, mode: { polling: { interval: 200ms } }"
        )
    );
    let engine = start(seen.engine(), &yaml, &store_url).await;
    moto.put(&bucket, "docs/a.txt", "one").await;
    moto.put(&bucket, "docs/keep.txt", "kept").await;
    moto.put(&bucket, "other/ignored.txt", "outside the prefix")
        .await;
    seen.wait_for(2).await;
    let two = moto.put(&bucket, "docs/a.txt", "two").await;
    seen.wait_for(3).await;
    moto.delete(&bucket, "docs/a.txt").await;
    seen.wait_for(4).await;
    engine.shutdown().await;

    // A change while nothing runs is found by the next process; what was already
    // announced is not announced again.
    moto.put(&bucket, "docs/while-down.txt", "missed?").await;
    let engine = start(seen.engine(), &yaml, &store_url).await;
    seen.wait_for(5).await;
    moto.put(&bucket, "docs/after.txt", "new").await;
    seen.wait_for(6).await;
    // A few more polls, to give a repeat every chance to show up.
    tokio::time::sleep(Duration::from_millis(800)).await;
    engine.shutdown().await;

    assert_eq!(
        seen.summary(),
        owned(&[
            ("s3.object.created", "docs/a.txt", "Polling:Created"),
            ("s3.object.created", "docs/a.txt", "Polling:Updated"),
            ("s3.object.removed", "docs/a.txt", "Polling:Removed"),
            ("s3.object.created", "docs/keep.txt", "Polling:Created"),
            (
                "s3.object.created",
                "docs/while-down.txt",
                "Polling:Created"
            ),
            ("s3.object.created", "docs/after.txt", "Polling:Created"),
        ])
    );
    let store = open(&store_url).await;
    let position = store.source_position("listing").await.unwrap().unwrap();
    let keys: Vec<&String> = position["objects"].as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        ["docs/after.txt", "docs/keep.txt", "docs/while-down.txt"]
    );
    let updated = seen
        .all()
        .into_iter()
        .find(|e| summary(e).2 == "Polling:Updated")
        .unwrap();
    let data: BTreeMap<String, Value> = updated.data_as().unwrap();
    assert_eq!(data["etag"], two.as_str());
    assert_eq!(data["size"], 3);
}
