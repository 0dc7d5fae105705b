//! `log:` — write each event to Switchyard's own log. Handy while wiring up sources and
//! filters, before a real handler exists.

use switchyard_core::config;

use crate::{Context, Event, Handler, HandlerFuture};

/// Logs one line per delivery at info level, with the trigger, the event's id, type,
/// source and subject, and (unless `data: false`) its payload: the JSON `data`, or
/// `data_base64` for a binary payload. It never fails.
#[derive(Debug)]
pub struct LogHandler {
    data: bool,
}

impl LogHandler {
    pub fn new(config: &config::LogHandler) -> Self {
        Self { data: config.data }
    }
}

impl Handler for LogHandler {
    fn handle<'a>(&'a self, ctx: Context, event: Event) -> HandlerFuture<'a> {
        Box::pin(async move {
            let data = match (&event.data, &event.data_base64) {
                _ if !self.data => None,
                (Some(json), _) => Some(json.to_string()),
                (None, Some(base64)) => Some(base64.clone()),
                (None, None) => None,
            };
            tracing::info!(
                trigger = %ctx.trigger(),
                event_id = %event.switchyard_id,
                "type" = %event.ty,
                source = %event.source,
                subject = event.subject.as_deref().map(tracing::field::display),
                data = data.as_deref().map(tracing::field::display),
                "event delivered",
            );
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use serde_json::json;

    use super::*;
    use crate::handlers::test_context;

    /// Runs `handler` on `event` and returns what it logged.
    async fn logged(handler: LogHandler, event: Event) -> String {
        #[derive(Clone, Default)]
        struct Buffer(Arc<Mutex<Vec<u8>>>);
        impl io::Write for Buffer {
            fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }

        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || writer.clone())
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        handler.handle(test_context("audit"), event).await.unwrap();
        String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap()
    }

    fn event() -> Event {
        Event::new("orders", "/orders", "order.created")
            .with_subject("order/42")
            .with_json(json!({"id": 42}))
    }

    #[tokio::test]
    async fn logs_the_attributes_and_the_data() {
        let event = event();
        let line = logged(LogHandler { data: true }, event.clone()).await;
        assert!(line.contains(" INFO "), "{line}");
        assert!(line.contains("event delivered"), "{line}");
        assert!(line.contains("trigger=audit"), "{line}");
        assert!(
            line.contains(&format!("event_id={}", event.switchyard_id)),
            "{line}"
        );
        assert!(line.contains("type=order.created"), "{line}");
        assert!(line.contains("source=/orders"), "{line}");
        assert!(line.contains("subject=order/42"), "{line}");
        assert!(line.contains(r#"data={"id":42}"#), "{line}");
    }

    #[tokio::test]
    async fn leaves_the_data_out_when_asked() {
        let line = logged(LogHandler { data: false }, event()).await;
        assert!(line.contains("type=order.created"), "{line}");
        assert!(!line.contains("data="), "{line}");
        assert!(!line.contains("42}"), "{line}");
    }
}
