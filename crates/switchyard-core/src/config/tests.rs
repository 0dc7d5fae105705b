use super::*;

fn env(name: &str) -> Option<String> {
    match name {
        "SECRET" => Some("s3cr3t".to_owned()),
        _ => None,
    }
}

fn registered(name: &str) -> bool {
    name == "resize_image"
}

fn errors(text: &str) -> Vec<String> {
    match Config::load(text, &env, &registered) {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(ConfigErrors(errors)) => errors.iter().map(ToString::to_string).collect(),
    }
}

const GOOD: &str = r#"
store: sqlite://test.db
sources:
  hooks:
    http: { path: /hooks, verify: { github: { secret: "${SECRET}" } } }
triggers:
  resize:
    source: hooks
    filter: { type: http.request, data.body.kind: { prefix: img } }
    handler: resize_image
    retry: { max_attempts: 8, backoff: linear, initial: 500ms, max: 10m, jitter: equal, max_event_age: 1h }
    timeout: 30s
    concurrency: 4
    ordering: { key: data.body.id }
  notify:
    source: hooks
    handler: { webhook: { url: "http://127.0.0.1:9/x", signing_secret: "${SECRET}" } }
"#;

#[test]
fn a_good_file_loads_into_types() {
    let config = Config::load(GOOD, &env, &registered).unwrap();
    let resize = &config.triggers["resize"];
    assert_eq!(resize.retry.max_attempts, 8);
    assert_eq!(resize.retry.backoff, crate::Backoff::Linear);
    assert_eq!(resize.retry.initial, HumanDuration::from_millis(500));
    assert_eq!(
        resize.retry.max_event_age,
        Some(HumanDuration::from_secs(3600))
    );
    assert_eq!(
        resize.ordering.as_ref().unwrap().key.to_string(),
        "data.body.id"
    );
    assert!(matches!(&resize.handler, HandlerSpec::Registered(n) if n == "resize_image"));
    let SourceConfig::Http(http) = &config.sources["hooks"] else {
        panic!("http source")
    };
    let Some(Verify::Github { secret }) = &http.verify else {
        panic!("github verify")
    };
    assert_eq!(secret.expose(), "s3cr3t");
    assert_eq!(http.body_limit, ByteSize(1 << 20));
    assert_eq!(config.triggers["notify"].retry, RetryPolicy::default());
}

#[test]
fn every_error_is_reported_at_once_with_its_path() {
    let text = r#"
sources:
  hooks: { http: { path: /a } }
  again: { http: { path: /a } }
  bucket: { s3: { bucket: images } }
  mystery: { ftp: { host: x } }
  secretive: { http: { path: /b, verify: { bearer: { token: "${NOT_SET}" } } } }
triggers:
  t1: { source: nowhere, handler: log }
  t2: { source: hooks, handler: resize_imagez }
  t3: { source: hooks, handler: log, retry: { initial: "1 sec" } }
  t4: { source: hooks, handler: log, colour: blue }
  t5: { source: mystery, handler: log }
"#;
    // Type errors and cross-reference errors come together; a trigger of a source that
    // failed to parse is not also told its source is unknown.
    let found = errors(text);
    let expected = [
        "sources.secretive.http.verify.bearer.token: environment variable NOT_SET is not set",
        "sources.mystery: unknown variant `ftp`, expected one of `http`, `s3`, `postgres`, `cron`",
        "triggers.t3.retry.initial: \"1 sec\" is not a duration (try 1s, 500ms, 2m)",
        "triggers.t4.colour: unknown field `colour`",
        "sources.bucket.s3.queue_url: is required in notifications mode",
        "sources.hooks.http.path: \"/a\" is already used by source \"again\"",
        "triggers.t1.source: unknown source \"nowhere\"",
        "triggers.t2.handler: unknown handler \"resize_imagez\"",
    ];
    for want in expected {
        assert!(
            found.iter().any(|e| e.starts_with(want)),
            "missing {want:?} in {found:#?}"
        );
    }
    assert_eq!(found.len(), expected.len(), "{found:#?}");

    // More cross-reference checks, all reported together.
    let text = r#"
sources:
  hooks: { http: { path: /a } }
  again: { http: { path: /a } }
  orders: { postgres: { url: "postgres://db/app" } }
  health: { http: { path: /healthz } }
  std: { http: { path: /std, verify: { standard_webhooks: { secret: "whsec_not base64!" } } } }
  nightly: { cron: { schedule: "0 61 2 * * *", timezone: Europe/Berlin } }
  hourly: { cron: { schedule: "@hourly", timezone: Mars/Olympus } }
  ticks: { cron: { schedule: "@hourly", data: { note: "a\u0000b" } } }
triggers:
  t1: { source: nowhere, handler: log }
  t2: { source: hooks, handler: resize_imagez }
  t3: { source: hooks, handler: log, retry: { max_attempts: 0, initial: 1h, max: 1m } }
"#;
    let found = errors(text);
    let expected = [
        "sources.hooks.http.path: \"/a\" is already used by source \"again\"",
        "sources.orders.postgres: source kind \"postgres\" is not supported yet",
        "sources.health.http.path: \"/healthz\" is reserved for Switchyard itself",
        "sources.std.http.verify.standard_webhooks.secret: is not whsec_ followed by a base64 key",
        "sources.nightly.cron.schedule: \"0 61 2 * * *\" is not a cron expression",
        "sources.hourly.cron.timezone: \"Mars/Olympus\" is not an IANA time zone",
        "sources.ticks.cron.data: data.note holds a NUL character (U+0000), which the event log cannot store",
        "triggers.t1.source: unknown source \"nowhere\" (defined: again, health, hooks, hourly, nightly, orders, std, ticks)",
        "triggers.t2.handler: unknown handler \"resize_imagez\"",
        "triggers.t3.retry.max_attempts: must be at least 1",
        "triggers.t3.retry.initial: 1h is longer than retry.max (1m)",
    ];
    for want in expected {
        assert!(
            found.iter().any(|e| e.starts_with(want)),
            "missing {want:?} in {found:#?}"
        );
    }
    assert_eq!(found.len(), expected.len(), "{found:#?}");
}

#[test]
fn s3_sources_load_and_every_s3_problem_is_reported() {
    let text = r#"
sources:
  uploads:
    s3:
      bucket: images
      queue_url: https://sqs.eu-central-1.amazonaws.com/123456789012/uploads
      events: [created, "s3:ObjectRemoved:*"]
      suffix: .jpg
      region: eu-central-1
      access_key_id: AKIDEXAMPLE
      secret_access_key: "${SECRET}"
      role_arn: arn:aws:iam::123456789012:role/uploads
  listing:
    s3: { bucket: images, endpoint: "http://127.0.0.1:9000", mode: { polling: { interval: 10s } } }
triggers:
  thumbnail: { source: uploads, handler: resize_image }
"#;
    let config = Config::load(text, &env, &registered).unwrap();
    let SourceConfig::S3(uploads) = &config.sources["uploads"] else {
        panic!("s3 source")
    };
    assert_eq!(uploads.mode, S3Mode::Notifications);
    assert_eq!(uploads.visibility_timeout, HumanDuration::from_secs(60));
    assert_eq!(
        uploads.events,
        [
            S3EventFilter::Created,
            S3EventFilter::Name("ObjectRemoved:*".into())
        ]
    );
    assert_eq!(
        uploads.secret_access_key.as_ref().unwrap().expose(),
        "s3cr3t"
    );
    assert!(!format!("{config:?}").contains("s3cr3t"));
    let SourceConfig::S3(listing) = &config.sources["listing"] else {
        panic!("s3 source")
    };
    assert_eq!(
        listing.mode,
        S3Mode::Polling(S3Polling {
            interval: HumanDuration::from_secs(10)
        })
    );

    let found = errors(
        "sources: { d: { s3: { bucket: d, events: [creatd] } }, e: { s3: { bucket: e, queue: x } } }",
    );
    assert_eq!(
        found,
        [
            "sources.d.s3.events[0]: \"creatd\" is not an S3 event (use created, removed, or a name such as s3:ObjectCreated:Put)",
            "sources.e.s3.queue: unknown field `queue`, expected one of `bucket`, `mode`, `queue_url`, `visibility_timeout`, `events`, `prefix`, `suffix`, `region`, `endpoint`, `access_key_id`, `secret_access_key`, `role_arn`",
        ],
    );
    let found = errors(
        r#"
sources:
  a: { s3: { bucket: "", region: "", visibility_timeout: 13h, endpoint: "ftp://x", access_key_id: k } }
  b: { s3: { bucket: b, queue_url: "https://q", mode: { polling: { interval: 10ms } }, role_arn: admin } }
  c: { s3: { bucket: c, queue_url: "sqs://q" } }
"#,
    );
    let expected = [
        "sources.a.s3.bucket: is empty",
        "sources.a.s3.region: is empty",
        "sources.a.s3.queue_url: is required in notifications mode",
        "sources.a.s3.visibility_timeout: 13h is out of range (1s to 12h)",
        "sources.a.s3.endpoint: \"ftp://x\" is not an http:// or https:// URL",
        "sources.a.s3.secret_access_key: is required with access_key_id",
        "sources.b.s3.queue_url: is not used in polling mode; remove it",
        "sources.b.s3.mode.polling.interval: 10ms is too short (at least 100ms)",
        "sources.b.s3.role_arn: \"admin\" is not a role ARN",
        "sources.c.s3.queue_url: \"sqs://q\" is not an SQS queue URL",
    ];
    for want in expected {
        assert!(
            found.iter().any(|e| e.starts_with(want)),
            "missing {want:?} in {found:#?}"
        );
    }
    assert_eq!(found.len(), expected.len(), "{found:#?}");
}

#[test]
fn unknown_top_level_and_nested_fields_are_rejected() {
    let found = errors("dispatcher: { lease: 0s }\n");
    assert_eq!(found, ["dispatcher.lease: 0s is too short (at least 1s)"]);
    let found = errors("stor: x\nhttp: { listen: 127.0.0.1:1, tls: true }\n");
    assert!(found[0].starts_with("stor: unknown field"), "{found:?}");
    assert!(
        found[1].starts_with("http.tls: unknown field `tls`"),
        "{found:?}"
    );
}

#[test]
fn interpolation_applies_defaults_and_reports_required_variables() {
    let text = "store: ${DB:-sqlite://default.db}\nhttp: { admin_token: \"${TOKEN:?set the admin token}\" }\n";
    let found = errors(text);
    assert_eq!(
        found,
        ["http.admin_token: environment variable TOKEN is not set: set the admin token"]
    );
    let config = Config::parse("store: ${DB:-sqlite://default.db}\n", &env).unwrap();
    assert_eq!(config.store, "sqlite://default.db");
    let config = Config::parse("store: ${DB}\n", &PlaceholderEnv).unwrap();
    assert_eq!(config.store, "placeholder-db");
    let config = Config::parse("store: ${DB:-sqlite://x.db}\n", &PlaceholderEnv).unwrap();
    assert_eq!(
        config.store, "sqlite://x.db",
        "defaults apply without an environment"
    );
}

#[test]
fn secrets_do_not_appear_in_debug_output() {
    let config = Config::load(GOOD, &env, &registered).unwrap();
    assert!(!format!("{config:?}").contains("s3cr3t"));
}

#[test]
fn redacts_store_passwords() {
    assert_eq!(
        redact_url("postgres://app:hunter2@db/app"),
        "postgres://app:***@db/app"
    );
    assert_eq!(redact_url("sqlite://x.db"), "sqlite://x.db");
}

#[test]
fn the_example_validates_without_an_environment() {
    let text = include_str!("../../../../triggers.yaml");
    Config::load(text, &PlaceholderEnv, &|_| false).unwrap();
}

/// The example shipped at the repository root loads and validates with an empty
/// environment, and keeps its documented shape.
#[test]
fn the_example_triggers_yaml_round_trips() {
    let text = include_str!("../../../../triggers.yaml");
    let config = Config::load(text, &|_: &str| None, &|_| false).unwrap();
    assert_eq!(config.store, DEFAULT_STORE);
    assert_eq!(config.http.listen, default_listen());
    assert_eq!(
        config.sources.keys().collect::<Vec<_>>(),
        ["demo", "github"]
    );
    assert_eq!(config.triggers.len(), 3);
    assert_eq!(
        config
            .retention
            .overrides(RetainedTable::Events)
            .map(|(source, period)| (source, period.to_string()))
            .collect::<Vec<_>>(),
        [("demo", "7d".to_owned())]
    );
    for trigger in config.triggers.values() {
        assert!(config.sources.contains_key(&trigger.source));
    }
}

#[test]
fn http_limits_have_defaults_and_are_checked() {
    let config = Config::load("{}\n", &env, &registered).unwrap();
    assert_eq!(config.http.header_timeout, HumanDuration::from_secs(10));
    assert_eq!(config.http.body_timeout, HumanDuration::from_secs(30));
    assert_eq!(config.http.max_connections, 1024);
    assert_eq!(config.http.shutdown_grace, HumanDuration::from_secs(5));

    let text = "http: { header_timeout: 500ms, body_timeout: 2s, max_connections: 4, shutdown_grace: 0s }\n";
    let config = Config::load(text, &env, &registered).unwrap();
    assert_eq!(config.http.header_timeout, HumanDuration::from_millis(500));
    assert_eq!(config.http.body_timeout, HumanDuration::from_secs(2));
    assert_eq!(config.http.max_connections, 4);
    assert_eq!(config.http.shutdown_grace, HumanDuration::from_secs(0));

    let found = errors("http: { header_timeout: 0s, body_timeout: 0ms, max_connections: 0 }\n");
    assert_eq!(
        found,
        [
            "http.max_connections: must be at least 1",
            "http.header_timeout: must be longer than 0s",
            "http.body_timeout: must be longer than 0s",
        ]
    );
}

#[test]
fn every_type_error_of_one_entry_is_reported() {
    let found = errors(
        "sources: { hooks: { http: { path: /h } } }
triggers:
  t:
    source: hooks
    handler: resize_image
    timeout: 1 sec
    retry: { initial: 2 parsecs, max_attempts: -1 }
    concurrency: many
",
    );
    assert_eq!(
        found,
        [
            "triggers.t.concurrency: invalid type: string \"many\", expected u32",
            "triggers.t.retry.initial: \"2 parsecs\" is not a duration (try 1s, 500ms, 2m)",
            "triggers.t.retry.max_attempts: invalid value: integer `-1`, expected u32",
            "triggers.t.timeout: \"1 sec\" is not a duration (try 1s, 500ms, 2m)",
        ]
    );
}

#[test]
fn a_missing_variable_is_reported_once() {
    let found = errors(
        "store: ${NOPE_STORE:?set the store URL}
http: { listen: \"${NOPE_LISTEN}\" }
sources: { hooks: { http: { path: /h, body_limit: \"${NOPE_LIMIT}\" } } }
triggers: { t: { source: hooks, handler: resize_image, timeout: \"${NOPE_TIMEOUT}\" } }
",
    );
    assert_eq!(
        found,
        [
            "store: environment variable NOPE_STORE is not set: set the store URL",
            "http.listen: environment variable NOPE_LISTEN is not set",
            "sources.hooks.http.body_limit: environment variable NOPE_LIMIT is not set",
            "triggers.t.timeout: environment variable NOPE_TIMEOUT is not set",
        ]
    );
}

#[test]
fn placeholders_stand_for_any_value() {
    let text = "store: ${STORE_URL}
http: { listen: \"${LISTEN}\" }
sources: { hooks: { http: { path: /h, body_limit: \"${LIMIT}\" } } }
triggers:
  t: { source: hooks, handler: resize_image, timeout: \"${TIMEOUT}\", retry: { initial: \"${INITIAL}\" } }
";
    Config::load(text, &PlaceholderEnv, &registered).unwrap();
    let bad = format!("{text}  u: {{ source: hooks, handler: resize_image, timeout: 1 sec }}\n");
    let Err(ConfigErrors(found)) = Config::load(&bad, &PlaceholderEnv, &registered) else {
        panic!("a bad literal value passed");
    };
    assert_eq!(
        found.iter().map(ToString::to_string).collect::<Vec<_>>(),
        ["triggers.u.timeout: \"1 sec\" is not a duration (try 1s, 500ms, 2m)"]
    );
}
