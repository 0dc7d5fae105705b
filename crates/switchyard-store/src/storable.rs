//! The databases' limits on values, applied the same way on both backends, so that no
//! text a handler or a source produces can make a write fail.
//!
//! - Text the engine records about what happened (an attempt's error, a rejected
//!   input's reason and body) is made storable: each NUL character becomes U+FFFD
//!   (Postgres `text` cannot hold NUL), and text beyond its limit is cut, with a note
//!   saying how much was cut.
//! - Keys that go into a unique or ordering index (dedupe keys, ordering keys, input
//!   ids) are stored as `sha256:` and the hex digest of the key when they are longer
//!   than [`MAX_INDEXED_KEY`] bytes or hold a NUL character. Equal keys still compare
//!   equal, and the index entry stays far below Postgres's limit of about 2.7 kB.
//!
//! Event attributes and data are never rewritten here: the producer's values are
//! stored as they are or refused before they reach the store (see
//! `switchyard_core::Event::check_storable`).

use std::borrow::Cow;
use std::fmt::Write as _;

use sha2::{Digest, Sha256};

use crate::{Finished, NewDelivery, NewEvent};

/// The longest key stored as it is, in bytes; longer keys are stored as their digest.
pub(crate) const MAX_INDEXED_KEY: usize = 1024;

/// The most of an attempt's error text that is kept, in bytes.
pub(crate) const MAX_ERROR: usize = 16 * 1024;

/// The most of an attempt's output that is kept, in bytes.
pub(crate) const MAX_OUTPUT: usize = 16 * 1024;

/// The most of a rejected input's body that is kept, in bytes.
pub(crate) const MAX_REJECTED_BODY: usize = 1024 * 1024;

/// The stored form of a key that goes into an index: the key itself, or
/// `sha256:<hex digest>` when it is longer than [`MAX_INDEXED_KEY`] or holds NUL.
pub(crate) fn indexed_key(key: &str) -> Cow<'_, str> {
    if fits_index(key) {
        return Cow::Borrowed(key);
    }
    let digest = Sha256::digest(key.as_bytes());
    let mut stored = String::with_capacity(7 + 64);
    stored.push_str("sha256:");
    for byte in digest {
        // Writing to a String cannot fail.
        let _ = write!(stored, "{byte:02x}");
    }
    Cow::Owned(stored)
}

fn fits_index(key: &str) -> bool {
    key.len() <= MAX_INDEXED_KEY && !key.contains('\0')
}

/// `batch` with every dedupe key and ordering key in its stored form. Borrowed when
/// none needs changing, which is the common case.
pub(crate) fn events(batch: &[NewEvent]) -> Cow<'_, [NewEvent]> {
    let fits = |item: &NewEvent| {
        item.event.dedupe_key.as_deref().is_none_or(fits_index)
            && item.deliveries.iter().all(delivery_fits)
    };
    if batch.iter().all(fits) {
        return Cow::Borrowed(batch);
    }
    let mut batch = batch.to_vec();
    for item in &mut batch {
        stored_key(&mut item.event.dedupe_key);
        for delivery in &mut item.deliveries {
            stored_key(&mut delivery.ordering_key);
        }
    }
    Cow::Owned(batch)
}

/// `deliveries` with every ordering key in its stored form; borrowed when none changes.
pub(crate) fn deliveries(deliveries: &[NewDelivery]) -> Cow<'_, [NewDelivery]> {
    if deliveries.iter().all(delivery_fits) {
        return Cow::Borrowed(deliveries);
    }
    let mut deliveries = deliveries.to_vec();
    for delivery in &mut deliveries {
        stored_key(&mut delivery.ordering_key);
    }
    Cow::Owned(deliveries)
}

/// `results` with every error and output in its stored form; borrowed when none
/// changes.
pub(crate) fn results(results: &[Finished]) -> Cow<'_, [Finished]> {
    let fits = |text: &Option<String>, limit| {
        text.as_deref()
            .is_none_or(|t| matches!(self::text(t, limit), Cow::Borrowed(_)))
    };
    if results
        .iter()
        .all(|r| fits(&r.error, MAX_ERROR) && fits(&r.output, MAX_OUTPUT))
    {
        return Cow::Borrowed(results);
    }
    let mut results = results.to_vec();
    for result in &mut results {
        for (field, limit) in [
            (&mut result.error, MAX_ERROR),
            (&mut result.output, MAX_OUTPUT),
        ] {
            if let Some(value) = field
                && let Cow::Owned(stored) = text(value, limit)
            {
                *value = stored;
            }
        }
    }
    Cow::Owned(results)
}

fn delivery_fits(delivery: &NewDelivery) -> bool {
    delivery.ordering_key.as_deref().is_none_or(fits_index)
}

fn stored_key(key: &mut Option<String>) {
    if let Some(key) = key
        && let Cow::Owned(stored) = indexed_key(key)
    {
        *key = stored;
    }
}

/// `text` as it can be stored: NUL characters replaced by U+FFFD, and cut to at most
/// `limit` bytes (on a character boundary) followed by a note of how many were cut.
pub(crate) fn text(text: &str, limit: usize) -> Cow<'_, str> {
    let cut = text.len() > limit;
    if !cut && !text.contains('\0') {
        return Cow::Borrowed(text);
    }
    let mut end = text.len().min(limit);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut stored = text[..end].replace('\0', "\u{FFFD}");
    if cut {
        // Writing to a String cannot fail.
        let _ = write!(stored, "… ({} more bytes not kept)", text.len() - end);
    }
    Cow::Owned(stored)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_keys_are_kept_and_long_or_nul_keys_become_their_digest() {
        assert_eq!(indexed_key("webhook-id:abc"), "webhook-id:abc");
        let long = "k".repeat(MAX_INDEXED_KEY + 1);
        let stored = indexed_key(&long);
        assert!(stored.starts_with("sha256:"), "{stored}");
        assert_eq!(stored.len(), 7 + 64);
        assert_eq!(stored, indexed_key(&long), "equal keys stay equal");
        assert_ne!(stored, indexed_key(&"k".repeat(MAX_INDEXED_KEY + 2)));
        assert!(indexed_key("a\0b").starts_with("sha256:"));
        assert_eq!(
            indexed_key(&"k".repeat(MAX_INDEXED_KEY)).len(),
            MAX_INDEXED_KEY
        );
    }

    #[test]
    fn text_loses_its_nul_characters_and_what_is_past_the_limit() {
        assert_eq!(text("exit 3", 100), "exit 3");
        assert_eq!(text("a\0b", 100), "a\u{FFFD}b");
        assert_eq!(text("abcdef", 4), "abcd… (2 more bytes not kept)");
        // "é" is two bytes: a cut inside it moves back to the character's start.
        assert_eq!(text("aé", 2), "a… (2 more bytes not kept)");
    }
}
