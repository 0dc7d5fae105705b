//! Pure helpers: latency percentiles, the 256-byte payload, and number formatting.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A latency sample that never completed (counted as worse than any real one).
pub const NEVER: u64 = u64::MAX;

/// Percentiles of a set of latency samples, in microseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Percentiles {
    pub count: usize,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub max: u64,
}

impl Percentiles {
    /// Nearest-rank percentiles of `samples` (microseconds). `None` when empty.
    pub fn of(mut samples: Vec<u64>) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        Some(Self {
            count: samples.len(),
            p50: nearest_rank(&samples, 50.0),
            p90: nearest_rank(&samples, 90.0),
            p99: nearest_rank(&samples, 99.0),
            max: *samples.last().expect("not empty"),
        })
    }
}

/// The nearest-rank percentile `p` (0..=100) of sorted samples: the smallest value
/// such that at least `p`% of the samples are at or below it.
pub fn nearest_rank(sorted: &[u64], p: f64) -> u64 {
    assert!(!sorted.is_empty(), "no samples");
    let n = sorted.len();
    let rank = ((p / 100.0) * n as f64).ceil() as usize;
    sorted[rank.clamp(1, n) - 1]
}

/// Microseconds in a duration, saturating.
pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// A latency in microseconds for a table: `850 µs`, `3.42 ms`, `1.20 s`, or `never`.
pub fn fmt_us(us: u64) -> String {
    if us == NEVER {
        "never".to_owned()
    } else if us < 1_000 {
        format!("{us} µs")
    } else if us < 1_000_000 {
        format!("{:.2} ms", us as f64 / 1e3)
    } else {
        format!("{:.2} s", us as f64 / 1e6)
    }
}

/// A rate or count with thousands separators: `12,345`.
pub fn fmt_int(value: f64) -> String {
    let rounded = value.round();
    if !rounded.is_finite() {
        return "n/a".to_owned();
    }
    let digits = format!("{}", rounded.abs() as u128);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if rounded < 0.0 {
        out.insert(0, '-');
    }
    out
}

/// The JSON payload every workload sends: exactly 256 bytes, carrying a sequence
/// number that the recording handler reads back.
pub fn payload(seq: u64) -> String {
    const SIZE: usize = 256;
    let head = format!(r#"{{"seq":{seq},"pad":""#);
    let tail = r#""}"#;
    let pad = SIZE.saturating_sub(head.len() + tail.len());
    let mut out = String::with_capacity(SIZE);
    out.push_str(&head);
    out.extend(std::iter::repeat_n('x', pad));
    out.push_str(tail);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<u64> = (1..=100).collect();
        let p = Percentiles::of(samples).unwrap();
        assert_eq!((p.p50, p.p90, p.p99, p.max), (50, 90, 99, 100));
        assert_eq!(p.count, 100);

        let p = Percentiles::of(vec![7]).unwrap();
        assert_eq!((p.p50, p.p99, p.max), (7, 7, 7));

        // Unsorted input, with a sample that never completed.
        let p = Percentiles::of(vec![5, NEVER, 1, 3, 2, 4, 6, 8, 9, 10]).unwrap();
        assert_eq!(p.p50, 5);
        assert_eq!(p.p90, 10);
        assert_eq!(p.p99, NEVER);
        assert!(Percentiles::of(Vec::new()).is_none());
    }

    #[test]
    fn p99_of_a_thousand_is_the_990th() {
        let samples: Vec<u64> = (0..1000).rev().collect();
        assert_eq!(Percentiles::of(samples).unwrap().p99, 989);
    }

    #[test]
    fn payload_is_256_bytes_of_json_with_its_seq() {
        for seq in [0, 42, u64::MAX] {
            let text = payload(seq);
            assert_eq!(text.len(), 256);
            let value: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(value["seq"].as_u64(), Some(seq));
        }
    }

    #[test]
    fn formatting() {
        assert_eq!(fmt_int(1234567.4), "1,234,567");
        assert_eq!(fmt_int(999.0), "999");
        assert_eq!(fmt_int(-1000.0), "-1,000");
        assert_eq!(fmt_us(850), "850 µs");
        assert_eq!(fmt_us(3_420), "3.42 ms");
        assert_eq!(fmt_us(1_200_000), "1.20 s");
        assert_eq!(fmt_us(NEVER), "never");
    }
}
