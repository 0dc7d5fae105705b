//! `make_derivative` in a running engine against moto (started by scripts/test.sh,
//! found through `SWITCHYARD_TEST_MOTO`): an upload is announced through SQS, the
//! handler writes its derivative under `derived/`, and the derivative's own
//! announcement ends there. Fails, never skips, when moto is unreachable.

use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;
use aws_smithy_http_client::tls::Provider;
use aws_smithy_http_client::tls::rustls_provider::CryptoMode;
use switchyard::aws_sdk_s3::{self, primitives::ByteStream, types};
use switchyard::config::{Config, ProcessEnv};
use switchyard::{Engine, EventQuery, handler_fn};
use switchyard_example_plugin::{derive, make_derivative};

async fn clients(url: &str) -> (aws_sdk_s3::Client, aws_sdk_sqs::Client) {
    let https = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .endpoint_url(url)
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "test", "test", None, None, "tests",
        ))
        .http_client(https)
        .load()
        .await;
    let s3 = aws_sdk_s3::config::Builder::from(&shared)
        .force_path_style(true)
        .build();
    (
        aws_sdk_s3::Client::from_conf(s3),
        aws_sdk_sqs::Client::new(&shared),
    )
}

/// Every key in the bucket, sorted.
async fn keys(s3: &aws_sdk_s3::Client, bucket: &str) -> Vec<String> {
    let listed = s3.list_objects_v2().bucket(bucket).send().await.unwrap();
    let mut keys: Vec<String> = listed
        .contents
        .unwrap_or_default()
        .into_iter()
        .filter_map(|object| object.key)
        .collect();
    keys.sort();
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_gets_one_derivative() {
    let url = std::env::var("SWITCHYARD_TEST_MOTO")
        .unwrap_or_else(|_| "http://127.0.0.1:5000".to_owned());
    let (s3, sqs) = clients(&url).await;
    let name = format!(
        "derive-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    if let Err(error) = s3.create_bucket().bucket(&name).send().await {
        panic!(
            "this test needs moto at {url} (run scripts/test.sh, or set SWITCHYARD_TEST_MOTO): {}",
            aws_sdk_s3::error::DisplayErrorContext(&error)
        );
    }
    let queue = sqs
        .create_queue()
        .queue_name(&name)
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&queue)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&QueueAttributeName::QueueArn]
        .clone();
    let notify = types::QueueConfiguration::builder()
        .queue_arn(arn)
        .events(types::Event::S3ObjectCreated)
        .build()
        .unwrap();
    s3.put_bucket_notification_configuration()
        .bucket(&name)
        .notification_configuration(
            types::NotificationConfiguration::builder()
                .queue_configurations(notify)
                .build(),
        )
        .send()
        .await
        .unwrap();

    let store = std::env::temp_dir().join(format!("{name}.db"));
    let yaml = format!(
        "store: sqlite://{}\nhttp: {{ listen: 127.0.0.1:0 }}\n\
         sources: {{ uploads: {{ s3: {{ bucket: {name}, queue_url: \"{queue}\", endpoint: \"{url}\", \
         access_key_id: test, secret_access_key: test }} }} }}\n\
         triggers: {{ derive: {{ source: uploads, handler: make_derivative, retry: {{ initial: 100ms }} }} }}\n",
        store.display()
    );
    let config = Config::parse(&yaml, &ProcessEnv).unwrap();
    let engine = Engine::from_cli()
        .handler("make_derivative", handler_fn(make_derivative))
        .start(config)
        .await
        .unwrap();

    s3.put_object()
        .bucket(&name)
        .key("photos/Cat Pic.txt")
        .body(ByteStream::from_static(b"meow, said the cat"))
        .send()
        .await
        .unwrap();

    // The upload and the derivative are both announced; both deliveries succeed, and
    // the second writes nothing.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let events = engine
            .store()
            .list_events(&EventQuery::default())
            .await
            .unwrap();
        if events.len() == 2 && events.iter().all(|e| e.succeeded == 1) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "expected two handled events, found {events:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    engine.shutdown().await;

    assert_eq!(
        keys(&s3, &name).await,
        ["derived/photos/Cat Pic.txt", "photos/Cat Pic.txt"]
    );
    let derived = s3
        .get_object()
        .bucket(&name)
        .key("derived/photos/Cat Pic.txt")
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes();
    assert_eq!(&derived[..], b"MEOW, SAID THE CAT");
    assert_eq!(derive(b"a1-b"), b"A1-B");
    for suffix in ["", "-wal", "-shm"] {
        // Best effort: a leftover temp file is harmless.
        let _ = std::fs::remove_file(format!("{}{suffix}", store.display()));
    }
}
