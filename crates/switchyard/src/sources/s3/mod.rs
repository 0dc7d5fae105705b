//! The `s3` source: objects created in or removed from a bucket become
//! `s3.object.created` and `s3.object.removed` events.
//!
//! Two modes, one per submodule:
//! - `queue` (notifications, the default) long-polls the SQS queue that receives the
//!   bucket's event notifications. `notification` parses the message bodies. A message
//!   is deleted only after its events are committed; one that is not a notification is
//!   recorded in `rejected_inputs`, then deleted.
//! - `polling` lists the bucket every interval and compares the listing with the one
//!   saved in the store, committing the changes and the new listing together.
//!
//! Either way every event's dedupe key is the bucket, the key, the object's revision
//! (version id, else sequencer, else etag) and the event name, so a redelivered
//! notification or a repeated listing makes no second event.
//!
//! `client` builds the AWS clients from the source's configuration; handlers get the
//! same S3 client through [`crate::Context::s3`].

mod client;
mod notification;
mod polling;
mod queue;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use futures::future::BoxFuture;
use serde_json::json;
use switchyard_core::Event;
use switchyard_core::config::{ObjectChange, S3Mode, S3Source};
use switchyard_store::{Store, StoreError};
use tokio_util::sync::CancellationToken;

pub(crate) use client::AwsClients;

use super::{BuildContext, Source, SourceDeps, SourceKind, StatusFields};

#[async_trait::async_trait]
impl SourceKind for S3Source {
    /// Builds the source's AWS clients too, and shares its S3 client with handlers
    /// through `context`.
    async fn build(&self, name: &str, context: &mut BuildContext) -> Option<Arc<dyn Source>> {
        let clients = AwsClients::new(self).await;
        context.s3_clients.insert(name, clients.s3.clone());
        let s3 = S3Runtime::new(name.to_owned(), self.clone(), clients)?;
        Some(Arc::new(s3))
    }

    fn event_types(&self) -> Option<Vec<&'static str>> {
        Some(vec![
            ObjectChange::Created.event_type(),
            ObjectChange::Removed.event_type(),
        ])
    }

    /// An `s3.object.created` event from `s3://BUCKET`.
    fn synthetic_event(
        &self,
        name: &str,
        ty: Option<String>,
        data: serde_json::Value,
    ) -> Result<Event, String> {
        let ty = ty.unwrap_or_else(|| ObjectChange::Created.event_type().to_owned());
        Ok(Event::new(name, format!("s3://{}", self.bucket), ty).with_json(data))
    }

    /// Its bucket and mode; in notifications mode its queue URL, in polling mode its
    /// interval and the number of objects in the listing saved as its position
    /// (`null` before the first poll). Asks AWS nothing.
    async fn status(&self, name: &str, store: &dyn Store) -> Result<StatusFields, StoreError> {
        let mut fields = vec![("bucket", json!(self.bucket))];
        match &self.mode {
            S3Mode::Notifications => {
                fields.push(("mode", json!("notifications")));
                fields.push(("queue_url", json!(self.queue_url)));
            }
            S3Mode::Polling(polling) => {
                let saved = store.source_position(name).await?;
                let objects = saved.and_then(|saved| polling::saved_objects(&self.bucket, saved));
                fields.push(("mode", json!("polling")));
                fields.push(("interval", json!(polling.interval)));
                fields.push(("listed_objects", json!(objects)));
            }
        }
        Ok(fields)
    }
}

impl Source for S3Runtime {
    fn run(
        self: Arc<Self>,
        deps: SourceDeps,
        shutdown: CancellationToken,
    ) -> Option<BoxFuture<'static, ()>> {
        Some(Box::pin(async move {
            self.run_until_shutdown(deps, shutdown).await;
        }))
    }
}

/// One configured `s3` source, ready to run.
pub struct S3Runtime {
    name: String,
    config: S3Source,
    clients: AwsClients,
    ingress: Ingress,
}

/// Where changes come from, with what that mode needs.
enum Ingress {
    Notifications { queue_url: String },
    Polling { interval: Duration },
}

impl S3Runtime {
    /// `None` when notifications mode has no queue URL, which `validate` reports.
    pub(crate) fn new(name: String, config: S3Source, clients: AwsClients) -> Option<Self> {
        let ingress = match &config.mode {
            S3Mode::Notifications => Ingress::Notifications {
                queue_url: config.queue_url.clone()?,
            },
            S3Mode::Polling(polling) => Ingress::Polling {
                interval: polling.interval.get(),
            },
        };
        Some(Self {
            name,
            config,
            clients,
            ingress,
        })
    }

    /// Runs until `shutdown`: receives notifications, or polls the bucket.
    async fn run_until_shutdown(&self, deps: SourceDeps, shutdown: CancellationToken) {
        match &self.ingress {
            Ingress::Notifications { queue_url } => {
                queue::run(self, queue_url, &deps, &shutdown).await;
            }
            Ingress::Polling { interval } => {
                polling::run(self, *interval, &deps, &shutdown).await;
            }
        }
    }

    /// The event for `record`, or `None` when this source does not want it: another
    /// bucket, a key outside `prefix`/`suffix`, or an event `events` leaves out.
    fn event(&self, record: &ObjectRecord) -> Option<Event> {
        if record.bucket != self.config.bucket {
            tracing::debug!(source = %self.name, bucket = %record.bucket, "skipped a change in another bucket");
            return None;
        }
        if !self
            .config
            .wants(record.change, &record.event_name, &record.key)
        {
            return None;
        }
        Some(record.to_event(&self.name, &self.config.region))
    }
}

/// One change to one object, as a notification or a listing reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ObjectRecord {
    pub change: ObjectChange,
    /// The event name as the producer wrote it: `ObjectCreated:Put`, `Object Deleted`,
    /// `Polling:Updated`.
    pub event_name: String,
    pub bucket: String,
    /// The decoded key.
    pub key: String,
    pub size: Option<u64>,
    /// Without quotes.
    pub etag: Option<String>,
    pub version_id: Option<String>,
    pub sequencer: Option<String>,
    /// Where the bucket is, when the producer says.
    pub region: Option<String>,
    /// When the change happened, when the producer says.
    pub time: Option<DateTime<Utc>>,
    /// The object's modification time, from a listing (polling mode).
    pub last_modified: Option<DateTime<Utc>>,
}

impl ObjectRecord {
    /// What tells this revision of the object from others: its version id, else the
    /// notification's sequencer, else its etag (with the modification time when a
    /// listing gave one, so that re-creating identical content is a new revision).
    fn revision(&self) -> String {
        if let Some(version) = &self.version_id {
            return version.clone();
        }
        if let Some(sequencer) = &self.sequencer {
            return sequencer.clone();
        }
        let etag = self.etag.as_deref().unwrap_or_default();
        match self.last_modified {
            Some(time) => format!(
                "{etag}@{}",
                time.to_rfc3339_opts(SecondsFormat::Millis, true)
            ),
            None => etag.to_owned(),
        }
    }

    /// Bucket, key, revision and event name, as a JSON array so that no key can be
    /// mistaken for another's.
    pub fn dedupe_key(&self) -> String {
        json!([self.bucket, self.key, self.revision(), self.event_name]).to_string()
    }

    /// The envelope (DESIGN §2): source `s3://BUCKET`, the decoded key as subject.
    pub fn to_event(&self, source_name: &str, default_region: &str) -> Event {
        let mut data = json!({
            "bucket": self.bucket,
            "key": self.key,
            "size": self.size,
            "etag": self.etag,
            "version_id": self.version_id,
            "sequencer": self.sequencer,
            "event_name": self.event_name,
            "region": self.region.as_deref().unwrap_or(default_region),
        });
        if let Some(time) = self.last_modified {
            data["last_modified"] = json!(time.to_rfc3339_opts(SecondsFormat::Millis, true));
        }
        let mut event = Event::new(
            source_name,
            format!("s3://{}", self.bucket),
            self.change.event_type(),
        )
        .with_subject(&self.key)
        .with_json(data)
        .with_dedupe_key(self.dedupe_key());
        if let Some(time) = self.time {
            event.time = time;
        }
        event
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> ObjectRecord {
        ObjectRecord {
            change: ObjectChange::Created,
            event_name: "ObjectCreated:Put".into(),
            bucket: "images".into(),
            key: "in/red flower.jpg".into(),
            size: Some(1024),
            etag: Some("d41d8".into()),
            version_id: None,
            sequencer: None,
            region: None,
            time: None,
            last_modified: None,
        }
    }

    #[test]
    fn events_follow_the_envelope() {
        let mut record = record();
        record.version_id = Some("v1".into());
        record.sequencer = Some("0055".into());
        let event = record.to_event("uploads", "us-east-1");
        assert_eq!(event.ty, "s3.object.created");
        assert_eq!(event.source, "s3://images");
        assert_eq!(event.subject.as_deref(), Some("in/red flower.jpg"));
        assert_eq!(event.source_name, "uploads");
        assert_eq!(
            event.data.unwrap(),
            json!({
                "bucket": "images", "key": "in/red flower.jpg", "size": 1024, "etag": "d41d8",
                "version_id": "v1", "sequencer": "0055", "event_name": "ObjectCreated:Put",
                "region": "us-east-1",
            })
        );
        assert_eq!(
            event.dedupe_key.as_deref(),
            Some(r#"["images","in/red flower.jpg","v1","ObjectCreated:Put"]"#)
        );
    }

    #[test]
    fn the_revision_is_the_version_else_sequencer_else_etag() {
        let mut record = record();
        assert!(record.dedupe_key().contains(r#""d41d8""#));
        record.last_modified = Some(DateTime::from_timestamp(1_800_000_000, 0).unwrap());
        assert!(
            record
                .dedupe_key()
                .contains(r#""d41d8@2027-01-15T08:00:00.000Z""#)
        );
        record.sequencer = Some("0055".into());
        assert!(record.dedupe_key().contains(r#""0055""#));
        record.version_id = Some("v1".into());
        assert!(record.dedupe_key().contains(r#""v1""#));
        let mut removed = record.clone();
        removed.event_name = "ObjectRemoved:Delete".into();
        assert_ne!(removed.dedupe_key(), record.dedupe_key());
    }
}
