//! One attempt: the handler call wrapped in composable layers, and the decision about
//! what follows it.
//!
//! Each layer is a small function over a future, so each can be read and tested on its
//! own: [`catch_panic`] turns a panic into an error, [`with_deadline`] bounds the
//! attempt and cancels the handler's token when time is up.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::pin;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::FutureExt;
use rand::Rng;
use switchyard_core::RetryPolicy;
use switchyard_core::retry::{GiveUpReason, RetryDecision};
use switchyard_store::AttemptOutcome;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::HandlerError;

/// A panic in the handler becomes a retryable error carrying the panic message.
pub async fn catch_panic(
    attempt: impl Future<Output = Result<(), HandlerError>>,
) -> Result<(), HandlerError> {
    match AssertUnwindSafe(attempt).catch_unwind().await {
        Ok(result) => result,
        Err(panic) => Err(HandlerError::retryable(format!(
            "handler panicked: {}",
            panic_message(&*panic)
        ))),
    }
}

/// Runs the attempt until `deadline`. At the deadline the handler's cancellation
/// token fires and the future is dropped; the attempt is a retryable timeout.
pub async fn with_deadline(
    attempt: impl Future<Output = Result<(), HandlerError>>,
    deadline: Instant,
    timeout: Duration,
    cancellation: &CancellationToken,
) -> Result<(), HandlerError> {
    match tokio::time::timeout_at(deadline, attempt).await {
        Ok(result) => result,
        Err(_) => {
            cancellation.cancel();
            Err(HandlerError::retryable(format!(
                "timed out after {}",
                switchyard_core::HumanDuration(timeout)
            )))
        }
    }
}

/// How long a handler may still run once its lease is lost and its token has fired.
const LOST_LEASE_GRACE: Duration = Duration::from_secs(1);

/// Runs the attempt until the delivery's lease is `lost`. Then the handler's
/// `cancellation` token fires, the handler gets [`LOST_LEASE_GRACE`] to return, and
/// after that it is dropped and the attempt fails as retryable. Whatever it comes to,
/// the store records it only if this process still holds the lease.
pub async fn until_lease_lost(
    attempt: impl Future<Output = Result<(), HandlerError>>,
    lost: &CancellationToken,
    cancellation: &CancellationToken,
) -> Result<(), HandlerError> {
    let mut attempt = pin!(attempt);
    tokio::select! {
        biased;
        result = &mut attempt => result,
        () = lost.cancelled() => {
            cancellation.cancel();
            match tokio::time::timeout(LOST_LEASE_GRACE, attempt).await {
                Ok(result) => result,
                Err(_) => Err(HandlerError::retryable(
                    "stopped: the delivery's lease was lost, so another process may be running it",
                )),
            }
        }
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

/// What the store should record for an attempt's result.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    pub outcome: AttemptOutcome,
    pub retry_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
}

/// Applies the retry policy to an attempt's result.
///
/// `created_at` is when the delivery was created; `now` is injected so the decision
/// can be tested without a clock.
pub fn decide(
    result: &Result<(), HandlerError>,
    attempt: u32,
    policy: &RetryPolicy,
    created_at: DateTime<Utc>,
    now: DateTime<Utc>,
    rng: &mut impl Rng,
) -> Verdict {
    let error = match result {
        Ok(()) => {
            return Verdict {
                outcome: AttemptOutcome::Succeeded,
                retry_at: None,
                error: None,
            };
        }
        Err(error) => error,
    };
    let text = error.to_string();
    if error.is_fatal() {
        return Verdict {
            outcome: AttemptOutcome::Dead,
            retry_at: None,
            error: Some(format!("fatal: {text}")),
        };
    }
    let age = (now - created_at).to_std().unwrap_or_default();
    match policy.decide(attempt, error.retry_after_delay(), age, rng) {
        RetryDecision::RetryIn(delay) => Verdict {
            outcome: AttemptOutcome::Retry,
            retry_at: Some(
                now + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX),
            ),
            error: Some(text),
        },
        RetryDecision::GiveUp(reason) => {
            let why = match reason {
                GiveUpReason::AttemptsExhausted => format!("gave up after {attempt} attempts"),
                GiveUpReason::TooOld => "gave up: older than retry.max_event_age".to_owned(),
            };
            Verdict {
                outcome: AttemptOutcome::Dead,
                retry_at: None,
                error: Some(format!("{why}: {text}")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[tokio::test]
    async fn a_panic_becomes_a_retryable_error() {
        let result = catch_panic(async { panic!("boom") }).await;
        let error = result.unwrap_err();
        assert!(!error.is_fatal());
        assert_eq!(error.to_string(), "handler panicked: boom");
    }

    #[tokio::test(start_paused = true)]
    async fn the_deadline_cancels_and_fails_the_attempt() {
        let token = CancellationToken::new();
        let timeout = Duration::from_secs(5);
        let slow = async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok(())
        };
        let result = with_deadline(slow, Instant::now() + timeout, timeout, &token).await;
        assert_eq!(result.unwrap_err().to_string(), "timed out after 5s");
        assert!(token.is_cancelled());
    }

    #[tokio::test(start_paused = true)]
    async fn a_lost_lease_cancels_the_handler_and_then_stops_it() {
        let (lost, cancellation) = (CancellationToken::new(), CancellationToken::new());
        let watching = {
            let cancellation = cancellation.clone();
            async move {
                cancellation.cancelled().await;
                Err(HandlerError::retryable("saw the cancellation"))
            }
        };
        lost.cancel();
        let result = until_lease_lost(watching, &lost, &cancellation).await;
        assert_eq!(result.unwrap_err().to_string(), "saw the cancellation");

        let (lost, cancellation) = (CancellationToken::new(), CancellationToken::new());
        let deaf = async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok(())
        };
        lost.cancel();
        let result = until_lease_lost(deaf, &lost, &cancellation).await;
        assert!(cancellation.is_cancelled());
        assert!(
            result.unwrap_err().to_string().contains("lease was lost"),
            "a handler that ignores its token is stopped after the grace"
        );
    }

    #[test]
    fn verdicts_follow_the_policy() {
        let mut rng = StdRng::seed_from_u64(3);
        let policy = RetryPolicy {
            max_attempts: 3,
            jitter: switchyard_core::Jitter::None,
            ..RetryPolicy::default()
        };
        let now = Utc::now();
        let ok = decide(&Ok(()), 1, &policy, now, now, &mut rng);
        assert_eq!(ok.outcome, AttemptOutcome::Succeeded);

        let retry = decide(
            &Err(HandlerError::retryable("flaky")),
            1,
            &policy,
            now,
            now,
            &mut rng,
        );
        assert_eq!(retry.outcome, AttemptOutcome::Retry);
        assert_eq!(retry.retry_at, Some(now + chrono::Duration::seconds(1)));

        let exhausted = decide(
            &Err(HandlerError::retryable("flaky")),
            3,
            &policy,
            now,
            now,
            &mut rng,
        );
        assert_eq!(exhausted.outcome, AttemptOutcome::Dead);
        assert_eq!(
            exhausted.error.as_deref(),
            Some("gave up after 3 attempts: flaky")
        );

        let fatal = decide(
            &Err(HandlerError::fatal("bad")),
            1,
            &policy,
            now,
            now,
            &mut rng,
        );
        assert_eq!(fatal.outcome, AttemptOutcome::Dead);
        assert_eq!(fatal.error.as_deref(), Some("fatal: bad"));
    }
}
