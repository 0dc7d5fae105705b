//! The retry policy: how many attempts, how long between them, and when to give up.

use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::HumanDuration;

/// A trigger's retry policy. Every field has a default, so `retry: {}` is valid.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// Attempts in all, the first one included. `1` means never retry.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// How the delay grows from one attempt to the next.
    #[serde(default)]
    pub backoff: Backoff,
    /// The delay after the first failed attempt.
    #[serde(default = "default_initial")]
    pub initial: HumanDuration,
    /// The delay never grows beyond this.
    #[serde(default = "default_max")]
    pub max: HumanDuration,
    /// Growth factor for `exponential` backoff.
    #[serde(default = "default_multiplier")]
    pub multiplier: f64,
    /// Randomization applied to each delay, so that failing deliveries spread out.
    #[serde(default)]
    pub jitter: Jitter,
    /// Give up (dead-letter) once the delivery is older than this, whatever attempts
    /// remain. Measured from when the delivery was created, so a replay starts afresh.
    #[serde(default)]
    pub max_event_age: Option<HumanDuration>,
}

fn default_max_attempts() -> u32 {
    5
}
fn default_initial() -> HumanDuration {
    HumanDuration::from_secs(1)
}
fn default_max() -> HumanDuration {
    HumanDuration::from_secs(300)
}
fn default_multiplier() -> f64 {
    2.0
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: default_max_attempts(),
            backoff: Backoff::default(),
            initial: default_initial(),
            max: default_max(),
            multiplier: default_multiplier(),
            jitter: Jitter::default(),
            max_event_age: None,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backoff {
    /// `initial * multiplier^(n-1)`.
    #[default]
    Exponential,
    /// `initial * n`.
    Linear,
    /// Always `initial`.
    Constant,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Jitter {
    /// The computed delay exactly.
    None,
    /// Uniform in `[0, delay]`.
    #[default]
    Full,
    /// Uniform in `[delay/2, delay]`.
    Equal,
}

/// What to do after a failed attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryDecision {
    /// Try again after this delay.
    RetryIn(Duration),
    /// The policy is exhausted: dead-letter the delivery.
    GiveUp(GiveUpReason),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GiveUpReason {
    AttemptsExhausted,
    TooOld,
}

impl RetryPolicy {
    /// The delay before attempt `failed_attempt + 1`, before jitter and without a
    /// `Retry-After`. `failed_attempt` counts from 1.
    pub fn base_delay(&self, failed_attempt: u32) -> Duration {
        let initial = self.initial.get().as_secs_f64();
        let n = f64::from(failed_attempt.max(1));
        let secs = match self.backoff {
            Backoff::Exponential => initial * self.multiplier.powf(n - 1.0),
            Backoff::Linear => initial * n,
            Backoff::Constant => initial,
        };
        let max = self.max.get().as_secs_f64();
        Duration::from_secs_f64(if secs.is_finite() { secs.min(max) } else { max })
    }

    /// Decides what follows a retryable failure of attempt `failed_attempt` (from 1).
    ///
    /// `retry_after` is the handler's own wish; it replaces the computed delay, but is
    /// still capped by `max`. `age` is how old the delivery will be at the retry.
    pub fn decide(
        &self,
        failed_attempt: u32,
        retry_after: Option<Duration>,
        age: Duration,
        rng: &mut impl Rng,
    ) -> RetryDecision {
        if failed_attempt >= self.max_attempts {
            return RetryDecision::GiveUp(GiveUpReason::AttemptsExhausted);
        }
        let delay = match retry_after {
            Some(wanted) => wanted.min(self.max.get()),
            None => self.jittered(self.base_delay(failed_attempt), rng),
        };
        if let Some(max_age) = self.max_event_age
            && age + delay > max_age.get()
        {
            return RetryDecision::GiveUp(GiveUpReason::TooOld);
        }
        RetryDecision::RetryIn(delay)
    }

    fn jittered(&self, delay: Duration, rng: &mut impl Rng) -> Duration {
        match self.jitter {
            Jitter::None => delay,
            Jitter::Full => delay.mul_f64(rng.random::<f64>()),
            Jitter::Equal => delay / 2 + (delay / 2).mul_f64(rng.random::<f64>()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn policy(backoff: Backoff, jitter: Jitter) -> RetryPolicy {
        RetryPolicy {
            max_attempts: 10,
            backoff,
            initial: HumanDuration::from_secs(1),
            max: HumanDuration::from_secs(60),
            multiplier: 2.0,
            jitter,
            max_event_age: None,
        }
    }

    #[test]
    fn base_delays_grow_and_cap() {
        let exp = policy(Backoff::Exponential, Jitter::None);
        let secs: Vec<u64> = (1..=8).map(|n| exp.base_delay(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 60, 60]);
        let lin = policy(Backoff::Linear, Jitter::None);
        assert_eq!(lin.base_delay(3), Duration::from_secs(3));
        let constant = policy(Backoff::Constant, Jitter::None);
        assert_eq!(constant.base_delay(7), Duration::from_secs(1));
        assert_eq!(exp.base_delay(10_000), Duration::from_secs(60));
    }

    #[test]
    fn jitter_stays_within_its_bounds() {
        let mut rng = StdRng::seed_from_u64(7);
        for attempt in 1..8 {
            let base = policy(Backoff::Exponential, Jitter::None).base_delay(attempt);
            for _ in 0..200 {
                let RetryDecision::RetryIn(full) = policy(Backoff::Exponential, Jitter::Full)
                    .decide(attempt, None, Duration::ZERO, &mut rng)
                else {
                    panic!("expected a retry")
                };
                assert!(full <= base);
                let RetryDecision::RetryIn(equal) = policy(Backoff::Exponential, Jitter::Equal)
                    .decide(attempt, None, Duration::ZERO, &mut rng)
                else {
                    panic!("expected a retry")
                };
                assert!(equal >= base / 2 && equal <= base, "{equal:?} vs {base:?}");
            }
        }
    }

    #[test]
    fn gives_up_after_max_attempts_or_max_age() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut p = policy(Backoff::Constant, Jitter::None);
        p.max_attempts = 3;
        assert_eq!(
            p.decide(2, None, Duration::ZERO, &mut rng),
            RetryDecision::RetryIn(Duration::from_secs(1))
        );
        assert_eq!(
            p.decide(3, None, Duration::ZERO, &mut rng),
            RetryDecision::GiveUp(GiveUpReason::AttemptsExhausted)
        );
        p.max_event_age = Some(HumanDuration::from_secs(10));
        assert_eq!(
            p.decide(1, None, Duration::from_secs(9), &mut rng),
            RetryDecision::RetryIn(Duration::from_secs(1))
        );
        assert_eq!(
            p.decide(1, None, Duration::from_millis(9_500), &mut rng),
            RetryDecision::GiveUp(GiveUpReason::TooOld)
        );
    }

    #[test]
    fn retry_after_replaces_the_delay_but_respects_max() {
        let mut rng = StdRng::seed_from_u64(1);
        let p = policy(Backoff::Exponential, Jitter::Full);
        assert_eq!(
            p.decide(1, Some(Duration::from_secs(7)), Duration::ZERO, &mut rng),
            RetryDecision::RetryIn(Duration::from_secs(7))
        );
        assert_eq!(
            p.decide(1, Some(Duration::from_secs(3600)), Duration::ZERO, &mut rng),
            RetryDecision::RetryIn(Duration::from_secs(60))
        );
    }
}
