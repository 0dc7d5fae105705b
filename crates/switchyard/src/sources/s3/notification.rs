//! SQS message bodies to object changes. Pure: no I/O.
//!
//! Three shapes are read:
//! - S3's own `{"Records": [...]}`, whose keys are URL-encoded (`+` for a space);
//! - the same wrapped by SNS: the S3 body is a JSON string in `Message`;
//! - EventBridge's `Object Created` and `Object Deleted` events, whose keys are not
//!   encoded.
//!
//! Unknown fields and unknown `eventVersion`s are tolerated. Records that are neither a
//! creation nor a removal (restores, replication, tagging, ACLs) are left out. A body
//! that is none of the shapes, or a record missing what an event needs, makes the whole
//! message [`Unparseable`]: it is quarantined rather than half processed.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use switchyard_core::config::ObjectChange;

use super::ObjectRecord;

/// What a message body says.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Notification {
    /// The object changes it reports; none for an empty `Records` list or a record
    /// kind that is not a creation or removal.
    Changes(Vec<ObjectRecord>),
    /// The `s3:TestEvent` S3 sends when notifications are configured.
    Test,
}

/// Why a body is not a notification, in plain language.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Unparseable(String);

/// Reads one SQS message body.
pub(crate) fn parse(body: &str) -> Result<Notification, Unparseable> {
    let value: Value = serde_json::from_str(body)
        .map_err(|error| Unparseable(format!("the message is not JSON: {error}")))?;
    parse_value(&value, true)
}

fn parse_value(value: &Value, unwrap_sns: bool) -> Result<Notification, Unparseable> {
    let Value::Object(map) = value else {
        return Err(not_a_notification());
    };
    if map.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
        return Ok(Notification::Test);
    }
    if let Some(records) = map.get("Records") {
        return s3_records(records).map(Notification::Changes);
    }
    if unwrap_sns && map.get("Type").and_then(Value::as_str) == Some("Notification") {
        let message = map.get("Message").and_then(Value::as_str).ok_or_else(|| {
            Unparseable("an SNS notification without a Message string".to_owned())
        })?;
        let inner: Value = serde_json::from_str(message)
            .map_err(|error| Unparseable(format!("the SNS Message is not JSON: {error}")))?;
        return parse_value(&inner, false);
    }
    if map.get("source").and_then(Value::as_str) == Some("aws.s3") {
        return eventbridge(map).map(Notification::Changes);
    }
    Err(not_a_notification())
}

fn not_a_notification() -> Unparseable {
    Unparseable(
        "the message is not an S3 notification (expected S3 Records, an SNS Notification carrying them, or an EventBridge aws.s3 event)"
            .to_owned(),
    )
}

/// A creation or a removal; `None` for the other kinds of S3 event.
fn change_of(event_name: &str) -> Option<ObjectChange> {
    let name = event_name.strip_prefix("s3:").unwrap_or(event_name);
    if name.starts_with("ObjectCreated:") {
        Some(ObjectChange::Created)
    } else if name.starts_with("ObjectRemoved:") || name.starts_with("LifecycleExpiration:") {
        Some(ObjectChange::Removed)
    } else {
        None
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct S3Record {
    #[serde(default)]
    event_source: Option<String>,
    #[serde(default)]
    aws_region: Option<String>,
    #[serde(default)]
    event_time: Option<String>,
    event_name: String,
    s3: S3Entity,
}

#[derive(Deserialize)]
struct S3Entity {
    bucket: Bucket,
    object: S3Object,
}

#[derive(Deserialize)]
struct Bucket {
    name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct S3Object {
    key: String,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default, rename = "eTag", alias = "etag")]
    etag: Option<String>,
    #[serde(default)]
    version_id: Option<String>,
    #[serde(default)]
    sequencer: Option<String>,
}

fn s3_records(records: &Value) -> Result<Vec<ObjectRecord>, Unparseable> {
    let Value::Array(records) = records else {
        return Err(Unparseable("Records is not a list".to_owned()));
    };
    let mut out = Vec::with_capacity(records.len());
    for (i, record) in records.iter().enumerate() {
        let at = format!("Records[{i}]");
        let record: S3Record = field(record, &at)?;
        if record
            .event_source
            .as_deref()
            .is_some_and(|s| s != "aws:s3")
        {
            continue;
        }
        let Some(change) = change_of(&record.event_name) else {
            continue;
        };
        let object = record.s3.object;
        out.push(ObjectRecord {
            change,
            event_name: record.event_name,
            bucket: record.s3.bucket.name,
            key: decode_key(&object.key)
                .map_err(|reason| Unparseable(format!("{at}: {reason}")))?,
            size: object.size,
            etag: object.etag.map(unquote),
            version_id: object.version_id.and_then(real_version),
            sequencer: object.sequencer,
            region: record.aws_region,
            time: record.event_time.as_deref().and_then(parse_time),
            last_modified: None,
        });
    }
    Ok(out)
}

#[derive(Deserialize)]
struct EventBridgeEvent {
    #[serde(rename = "detail-type")]
    detail_type: String,
    #[serde(default)]
    time: Option<String>,
    #[serde(default)]
    region: Option<String>,
    detail: Value,
}

#[derive(Deserialize)]
struct EventBridgeDetail {
    bucket: Bucket,
    object: EventBridgeObject,
}

#[derive(Deserialize)]
struct EventBridgeObject {
    key: String,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default)]
    etag: Option<String>,
    #[serde(default, rename = "version-id")]
    version_id: Option<String>,
    #[serde(default)]
    sequencer: Option<String>,
}

fn eventbridge(map: &Map<String, Value>) -> Result<Vec<ObjectRecord>, Unparseable> {
    let event: EventBridgeEvent = field(&Value::Object(map.clone()), "the EventBridge event")?;
    let change = match event.detail_type.as_str() {
        "Object Created" => ObjectChange::Created,
        "Object Deleted" => ObjectChange::Removed,
        _ => return Ok(Vec::new()),
    };
    let detail: EventBridgeDetail = field(&event.detail, "detail")?;
    Ok(vec![ObjectRecord {
        change,
        event_name: event.detail_type,
        bucket: detail.bucket.name,
        key: detail.object.key,
        size: detail.object.size,
        etag: detail.object.etag.map(unquote),
        version_id: detail.object.version_id.and_then(real_version),
        sequencer: detail.object.sequencer,
        region: event.region,
        time: event.time.as_deref().and_then(parse_time),
        last_modified: None,
    }])
}

/// Deserializes `value`, naming `at` in the error.
fn field<T: DeserializeOwned>(value: &Value, at: &str) -> Result<T, Unparseable> {
    T::deserialize(value).map_err(|error| Unparseable(format!("{at}: {error}")))
}

/// Etags sometimes arrive quoted, as HTTP writes them.
fn unquote(etag: String) -> String {
    match etag.strip_prefix('"').and_then(|e| e.strip_suffix('"')) {
        Some(inner) => inner.to_owned(),
        None => etag,
    }
}

/// An unversioned (or versioning-suspended) bucket reports the version `null`: no
/// version at all, and no use for telling revisions apart.
fn real_version(version: String) -> Option<String> {
    (!version.is_empty() && version != "null").then_some(version)
}

/// A time the producer wrote; one that does not parse is left out, not fatal.
fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|time| time.with_timezone(&Utc))
}

/// Decodes a key as S3 notifications encode it: `+` is a space and `%XX` a byte of
/// its UTF-8 form.
pub(crate) fn decode_key(raw: &str) -> Result<String, String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                    .ok_or_else(|| format!("the key {raw:?} has a broken %-escape"))?;
                let hex = std::str::from_utf8(hex).expect("hex digits are ASCII");
                out.push(u8::from_str_radix(hex, 16).expect("two hex digits"));
                i += 2;
            }
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| format!("the key {raw:?} does not decode to UTF-8"))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/fixtures/s3/");

    fn fixture(name: &str) -> String {
        let path = Path::new(FIXTURES).join(name);
        std::fs::read_to_string(&path)
            .unwrap_or_else(|error| panic!("read fixture {}: {error}", path.display()))
    }

    fn changes_in(body: &str) -> Vec<ObjectRecord> {
        match parse(body) {
            Ok(Notification::Changes(records)) => records,
            other => panic!("expected changes in {body}, got {other:?}"),
        }
    }

    fn one_in(body: &str) -> ObjectRecord {
        let mut records = changes_in(body);
        assert_eq!(records.len(), 1, "{body}");
        records.remove(0)
    }

    fn changes(fixture_name: &str) -> Vec<ObjectRecord> {
        changes_in(&fixture(fixture_name))
    }

    fn one(fixture_name: &str) -> ObjectRecord {
        one_in(&fixture(fixture_name))
    }

    fn time(text: &str) -> Option<DateTime<Utc>> {
        Some(
            DateTime::parse_from_rfc3339(text)
                .unwrap()
                .with_timezone(&Utc),
        )
    }

    #[test]
    fn every_fixture_has_a_test_here() {
        let mut names: Vec<String> = std::fs::read_dir(FIXTURES)
            .unwrap_or_else(|error| panic!("the fixtures are in {FIXTURES}: {error}"))
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .filter(|name| name != "README.md")
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "delete-marker.json",
                "delete.json",
                "empty-records.json",
                "eventbridge-object-created.json",
                "multipart-v2.3-unknown-fields.json",
                "not-json.txt",
                "put-unicode-key.json",
                "put-with-space-and-version.json",
                "sns-wrapped.json",
                "test-event.json",
                "two-records.json",
            ],
            "a new fixture needs a test below"
        );
    }

    #[test]
    fn a_put_decodes_its_key_and_keeps_version_and_sequencer() {
        assert_eq!(
            one("put-with-space-and-version.json"),
            ObjectRecord {
                change: ObjectChange::Created,
                event_name: "ObjectCreated:Put".into(),
                bucket: "images".into(),
                key: "incoming/red flower.jpg".into(),
                size: Some(1024),
                etag: Some("d41d8cd98f00b204e9800998ecf8427e".into()),
                version_id: Some("096fKKXTRTtl3on89fVO.nfljtsv6qko".into()),
                sequencer: Some("0055AED6DCD90281E5".into()),
                region: Some("eu-central-1".into()),
                time: time("2026-11-20T14:03:07.123Z"),
                last_modified: None,
            }
        );
    }

    #[test]
    fn a_unicode_key_with_an_encoded_slash_decodes() {
        let record = one("put-unicode-key.json");
        assert_eq!(record.key, "incoming/café/menu 2026.png");
        assert_eq!(record.version_id, None);
        assert_eq!(record.sequencer.as_deref(), Some("0055AED6DCD90281E6"));
    }

    #[test]
    fn deletes_and_delete_markers_are_removals() {
        let delete = one("delete.json");
        assert_eq!(delete.change, ObjectChange::Removed);
        assert_eq!(delete.event_name, "ObjectRemoved:Delete");
        assert_eq!(delete.key, "incoming/red flower.jpg");
        assert_eq!((delete.size, delete.etag.as_deref()), (None, None));
        let marker = one("delete-marker.json");
        assert_eq!(marker.change, ObjectChange::Removed);
        assert_eq!(marker.event_name, "ObjectRemoved:DeleteMarkerCreated");
        assert_eq!(marker.key, "incoming/old.jpg");
        assert_ne!(delete.dedupe_key(), marker.dedupe_key());
    }

    #[test]
    fn newer_event_versions_and_unknown_fields_are_tolerated() {
        let record = one("multipart-v2.3-unknown-fields.json");
        assert_eq!(record.event_name, "ObjectCreated:CompleteMultipartUpload");
        assert_eq!(record.key, "videos/big.mp4");
        assert_eq!(record.size, Some(5_368_709_120));
        assert_eq!(record.etag.as_deref(), Some("a3f1c1b1e6c1c3d1-640"));
    }

    #[test]
    fn two_records_make_two_changes() {
        let records = changes("two-records.json");
        let keys: Vec<(&str, &str)> = records
            .iter()
            .map(|r| (r.key.as_str(), r.event_name.as_str()))
            .collect();
        assert_eq!(
            keys,
            [
                ("incoming/a.jpg", "ObjectCreated:Put"),
                ("incoming/b.jpg", "ObjectCreated:Copy")
            ]
        );
        assert_ne!(records[0].dedupe_key(), records[1].dedupe_key());
    }

    #[test]
    fn the_test_event_and_empty_records_make_nothing() {
        assert_eq!(parse(&fixture("test-event.json")), Ok(Notification::Test));
        assert_eq!(changes("empty-records.json"), []);
    }

    #[test]
    fn sns_wrapped_reads_like_the_direct_form() {
        let wrapped = one("sns-wrapped.json");
        assert_eq!(wrapped, one("put-with-space-and-version.json"));
        let test = json_with("Message", &fixture("test-event.json"));
        assert_eq!(parse(&test), Ok(Notification::Test));
    }

    #[test]
    fn eventbridge_keys_are_not_decoded() {
        let record = one("eventbridge-object-created.json");
        assert_eq!(record.change, ObjectChange::Created);
        assert_eq!(record.event_name, "Object Created");
        assert_eq!(record.key, "incoming/red flower.jpg");
        assert_eq!(record.size, Some(1024));
        assert_eq!(
            record.version_id.as_deref(),
            Some("096fKKXTRTtl3on89fVO.nfljtsv6qko")
        );
        assert_eq!(record.region.as_deref(), Some("eu-central-1"));
        assert_eq!(record.time, time("2026-11-20T14:03:07Z"));

        let plus = fixture("eventbridge-object-created.json").replace("red flower", "a+b%20c");
        assert_eq!(one_in(&plus).key, "incoming/a+b%20c.jpg");
        let restore = fixture("eventbridge-object-created.json")
            .replace("Object Created", "Object Restore Completed");
        assert_eq!(parse(&restore), Ok(Notification::Changes(Vec::new())));
    }

    #[test]
    fn garbage_and_broken_records_are_unparseable() {
        let error = parse(&fixture("not-json.txt")).unwrap_err();
        assert!(
            error.to_string().starts_with("the message is not JSON"),
            "{error}"
        );
        for (body, reason) in [
            ("[1, 2]", "not an S3 notification"),
            (r#"{"hello": "world"}"#, "not an S3 notification"),
            (r#"{"Records": {}}"#, "Records is not a list"),
            (
                r#"{"Records": [{"eventName": "ObjectCreated:Put"}]}"#,
                "Records[0]: missing field `s3`",
            ),
            (
                r#"{"Type": "Notification", "Message": "nope"}"#,
                "the SNS Message is not JSON",
            ),
            (
                r#"{"Records": [{"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "b"}, "object": {"key": "a%zz"}}}]}"#,
                "Records[0]: the key \"a%zz\" has a broken %-escape",
            ),
            (
                r#"{"Records": [{"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "b"}, "object": {"key": "%ff"}}}]}"#,
                "does not decode to UTF-8",
            ),
            (
                r#"{"source": "aws.s3", "detail-type": "Object Created", "detail": {}}"#,
                "detail: missing field `bucket`",
            ),
        ] {
            let error = parse(body).unwrap_err().to_string();
            assert!(error.contains(reason), "{body}: {error}");
        }
    }

    #[test]
    fn other_record_kinds_and_sources_are_left_out() {
        let put = fixture("put-with-space-and-version.json");
        let restore = put.replace("ObjectCreated:Put", "ObjectRestore:Completed");
        assert_eq!(changes_in(&restore), []);
        let sqs = put.replace("\"aws:s3\"", "\"aws:sqs\"");
        assert_eq!(changes_in(&sqs), []);
        let expired = put.replace("ObjectCreated:Put", "LifecycleExpiration:Delete");
        assert_eq!(one_in(&expired).change, ObjectChange::Removed);
        let null_version = put.replace("096fKKXTRTtl3on89fVO.nfljtsv6qko", "null");
        assert_eq!(one_in(&null_version).version_id, None);
    }

    #[test]
    fn keys_decode_plus_percent_and_utf8() {
        assert_eq!(decode_key("a+b%2Bc%2Fd").unwrap(), "a b+c/d");
        assert_eq!(decode_key("caf%C3%A9").unwrap(), "café");
        assert_eq!(decode_key("plain/key.txt").unwrap(), "plain/key.txt");
        assert!(decode_key("100%").is_err());
        assert!(decode_key("%+1").is_err(), "a sign is not a hex digit");
    }

    fn json_with(field: &str, text: &str) -> String {
        serde_json::json!({"Type": "Notification", field: text}).to_string()
    }
}
