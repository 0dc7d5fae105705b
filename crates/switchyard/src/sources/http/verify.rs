//! Request-signature verification for HTTP sources: proves that a request comes from
//! whoever holds the configured secret before it becomes an event.
//!
//! One function per preset of [`Verify`]. Everything here is pure: no I/O and no clock,
//! because `now` is passed in. Routing, body limits and the HTTP response live in the
//! source itself.
//!
//! Rules every preset follows:
//! - signatures are compared in constant time (`subtle`); only lengths are public;
//! - an empty or truncated signature never verifies;
//! - timestamped presets (stripe, standard_webhooks, slack) reject timestamps further
//!   than `tolerance` from `now`, in the past or in the future;
//! - error messages name headers and say what is wrong, never the secret or the expected
//!   signature.

use axum::http::HeaderMap;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest as _, Sha256, Sha512};
use subtle::{Choice, ConstantTimeEq};
use switchyard_core::HumanDuration;
use switchyard_core::config::{HmacAlgorithm, HmacVerify, Secret, SignatureEncoding, Verify};

const GITHUB_SIGNATURE: &str = "x-hub-signature-256";
/// GitHub's legacy SHA-1 signature. Not checked, but never copied into event data.
const GITHUB_LEGACY_SIGNATURE: &str = "x-hub-signature";
const STRIPE_SIGNATURE: &str = "stripe-signature";
const WEBHOOK_ID: &str = "webhook-id";
const WEBHOOK_TIMESTAMP: &str = "webhook-timestamp";
const WEBHOOK_SIGNATURE: &str = "webhook-signature";
const SLACK_SIGNATURE: &str = "x-slack-signature";
const SLACK_TIMESTAMP: &str = "x-slack-request-timestamp";
const AUTHORIZATION: &str = "authorization";

/// Why a request failed verification.
///
/// Messages never contain the secret or the expected signature, so they are safe to log
/// and to return to the caller. Every variant except [`VerifyError::InvalidSecret`] is
/// the caller's fault (answer 401); `InvalidSecret` is a configuration mistake.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    /// A header the preset needs is absent. Holds the lowercase header name.
    #[error("missing header {0}")]
    MissingHeader(String),
    /// A header is present but not in the preset's format.
    #[error("malformed header {header}: {reason}")]
    Malformed {
        /// The lowercase header name.
        header: String,
        /// What is wrong, never the header's value.
        reason: &'static str,
    },
    /// The request carries well-formed signatures, but none matches the body. Also the
    /// answer for a wrong bearer token.
    #[error("signature does not match")]
    Mismatch,
    /// The signed timestamp is more than the tolerance away from now, in either
    /// direction: a replay or a badly skewed clock.
    #[error("timestamp {timestamp} is more than {tolerance_secs}s away from now ({now})")]
    TimestampOutOfTolerance {
        timestamp: i64,
        now: i64,
        tolerance_secs: u64,
    },
    /// The configured secret cannot be used (standard_webhooks needs `whsec_` followed
    /// by a base64 key). No request can verify until the configuration is fixed.
    #[error("the configured secret is unusable: {0}")]
    InvalidSecret(&'static str),
}

/// Checks that `headers` and `body` carry a valid proof for `config`.
///
/// `body` must be the raw bytes as received, before any parsing. `now` is the current
/// time in unix seconds; it is a parameter so tests can pin it.
///
/// Fails with the first problem found: a missing or malformed header, a timestamp
/// outside the tolerance, or a signature (or token) that does not match.
pub fn verify(
    config: &Verify,
    headers: &HeaderMap,
    body: &[u8],
    now: i64,
) -> Result<(), VerifyError> {
    match config {
        Verify::Github { secret } => github(secret, headers, body),
        Verify::Stripe { secret, tolerance } => stripe(secret, *tolerance, headers, body, now),
        Verify::StandardWebhooks { secret, tolerance } => {
            standard_webhooks(secret, *tolerance, headers, body, now)
        }
        Verify::Slack { secret, tolerance } => slack(secret, *tolerance, headers, body, now),
        Verify::Hmac(hmac) => generic_hmac(hmac, headers, body),
        Verify::Bearer { token } => bearer(token, headers),
    }
}

/// The lowercase names of the headers that carry the preset's proof, so the source
/// never copies them into event data.
pub fn verification_headers(config: &Verify) -> Vec<String> {
    let names: &[&str] = match config {
        Verify::Github { .. } => &[GITHUB_SIGNATURE, GITHUB_LEGACY_SIGNATURE],
        Verify::Stripe { .. } => &[STRIPE_SIGNATURE],
        Verify::StandardWebhooks { .. } => &[WEBHOOK_ID, WEBHOOK_TIMESTAMP, WEBHOOK_SIGNATURE],
        Verify::Slack { .. } => &[SLACK_SIGNATURE, SLACK_TIMESTAMP],
        Verify::Hmac(hmac) => return vec![hmac.header.to_ascii_lowercase()],
        Verify::Bearer { .. } => &[AUTHORIZATION],
    };
    names.iter().map(|name| (*name).to_owned()).collect()
}

/// `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>`.
fn github(secret: &Secret, headers: &HeaderMap, body: &[u8]) -> Result<(), VerifyError> {
    let value = header(headers, GITHUB_SIGNATURE)?;
    let hex_sig = value
        .strip_prefix("sha256=")
        .ok_or_else(|| malformed(GITHUB_SIGNATURE, "expected sha256=<hex>"))?;
    let signature = decode_hex(GITHUB_SIGNATURE, hex_sig)?;
    let expected = mac::<Hmac<Sha256>>(secret.expose().as_bytes(), &[body]);
    require_match(&expected, [signature.as_slice()])
}

/// `Stripe-Signature: t=<ts>,v1=<hex>[,v1=<hex>...]`, each `v1` an
/// HMAC-SHA256(secret, "ts.body"). Several `v1`s appear while a secret is rolled; one
/// match is enough. Other schemes (`v0`) are ignored.
fn stripe(
    secret: &Secret,
    tolerance: HumanDuration,
    headers: &HeaderMap,
    body: &[u8],
    now: i64,
) -> Result<(), VerifyError> {
    let value = header(headers, STRIPE_SIGNATURE)?;
    let mut timestamp = None;
    let mut signatures = Vec::new();
    let mut saw_v1 = false;
    for item in value.split(',') {
        let (key, val) = item
            .trim()
            .split_once('=')
            .ok_or_else(|| malformed(STRIPE_SIGNATURE, "expected comma-separated key=value"))?;
        match key {
            "t" if timestamp.is_some() => {
                return Err(malformed(STRIPE_SIGNATURE, "more than one t="));
            }
            "t" => timestamp = Some(val),
            "v1" => {
                saw_v1 = true;
                // Undecodable entries cannot match; another v1 still may.
                signatures.extend(hex::decode(val).ok());
            }
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or_else(|| malformed(STRIPE_SIGNATURE, "no t= timestamp"))?;
    if !saw_v1 {
        return Err(malformed(STRIPE_SIGNATURE, "no v1= signature"));
    }
    check_timestamp(STRIPE_SIGNATURE, timestamp, tolerance, now)?;
    let expected = mac::<Hmac<Sha256>>(
        secret.expose().as_bytes(),
        &[timestamp.as_bytes(), b".", body],
    );
    require_match(&expected, signatures.iter().map(Vec::as_slice))
}

/// Standard Webhooks: `webhook-signature: v1,<base64>[ v1,<base64>...]`, each an
/// HMAC-SHA256(key, "id.timestamp.body") where the secret is `whsec_<base64 key>`.
/// Entries of other versions (such as the asymmetric `v1a`) are ignored.
fn standard_webhooks(
    secret: &Secret,
    tolerance: HumanDuration,
    headers: &HeaderMap,
    body: &[u8],
    now: i64,
) -> Result<(), VerifyError> {
    // The reference libraries accept the key with or without the prefix; so do we.
    let encoded_key = secret.expose();
    let encoded_key = encoded_key.strip_prefix("whsec_").unwrap_or(encoded_key);
    let key = BASE64
        .decode(encoded_key)
        .map_err(|_| VerifyError::InvalidSecret("standard_webhooks expects whsec_<base64 key>"))?;
    if key.is_empty() {
        return Err(VerifyError::InvalidSecret(
            "the standard_webhooks key is empty",
        ));
    }

    let id = header(headers, WEBHOOK_ID)?;
    let timestamp = header(headers, WEBHOOK_TIMESTAMP)?;
    let value = header(headers, WEBHOOK_SIGNATURE)?;
    let mut signatures = Vec::new();
    let mut saw_v1 = false;
    for entry in value.split_ascii_whitespace() {
        if let Some(encoded) = entry.strip_prefix("v1,") {
            saw_v1 = true;
            // Undecodable entries cannot match; another v1 still may.
            signatures.extend(BASE64.decode(encoded).ok());
        }
    }
    if !saw_v1 {
        return Err(malformed(WEBHOOK_SIGNATURE, "no v1,<base64> signature"));
    }
    check_timestamp(WEBHOOK_TIMESTAMP, timestamp, tolerance, now)?;
    let expected = mac::<Hmac<Sha256>>(
        &key,
        &[id.as_bytes(), b".", timestamp.as_bytes(), b".", body],
    );
    require_match(&expected, signatures.iter().map(Vec::as_slice))
}

/// Slack: `X-Slack-Signature: v0=<hex HMAC-SHA256(secret, "v0:ts:body")>` with the
/// timestamp in `X-Slack-Request-Timestamp`.
fn slack(
    secret: &Secret,
    tolerance: HumanDuration,
    headers: &HeaderMap,
    body: &[u8],
    now: i64,
) -> Result<(), VerifyError> {
    let timestamp = header(headers, SLACK_TIMESTAMP)?;
    let value = header(headers, SLACK_SIGNATURE)?;
    let hex_sig = value
        .strip_prefix("v0=")
        .ok_or_else(|| malformed(SLACK_SIGNATURE, "expected v0=<hex>"))?;
    let signature = decode_hex(SLACK_SIGNATURE, hex_sig)?;
    check_timestamp(SLACK_TIMESTAMP, timestamp, tolerance, now)?;
    let expected = mac::<Hmac<Sha256>>(
        secret.expose().as_bytes(),
        &[b"v0:", timestamp.as_bytes(), b":", body],
    );
    require_match(&expected, [signature.as_slice()])
}

/// `<header>: <prefix><hex or base64 HMAC(secret, body)>`.
fn generic_hmac(config: &HmacVerify, headers: &HeaderMap, body: &[u8]) -> Result<(), VerifyError> {
    let name = config.header.to_ascii_lowercase();
    let value = header(headers, &name)?;
    let encoded = value
        .strip_prefix(config.prefix.as_str())
        .ok_or_else(|| malformed(&name, "the signature lacks the configured prefix"))?;
    let signature = match config.encoding {
        SignatureEncoding::Hex => decode_hex(&name, encoded)?,
        SignatureEncoding::Base64 => BASE64
            .decode(encoded)
            .map_err(|_| malformed(&name, "the signature is not base64"))?,
    };
    let key = config.secret.expose().as_bytes();
    let expected = match config.algorithm {
        HmacAlgorithm::Sha1 => mac::<Hmac<Sha1>>(key, &[body]),
        HmacAlgorithm::Sha256 => mac::<Hmac<Sha256>>(key, &[body]),
        HmacAlgorithm::Sha512 => mac::<Hmac<Sha512>>(key, &[body]),
    };
    require_match(&expected, [signature.as_slice()])
}

/// `Authorization: Bearer <token>`; the scheme is case-insensitive (RFC 7235).
fn bearer(expected: &Secret, headers: &HeaderMap) -> Result<(), VerifyError> {
    let value = header(headers, AUTHORIZATION)?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or_else(|| malformed(AUTHORIZATION, "expected Bearer <token>"))?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(malformed(AUTHORIZATION, "expected Bearer <token>"));
    }
    let token = token.trim_start_matches(' ');
    if token.is_empty() {
        return Err(malformed(AUTHORIZATION, "the bearer token is empty"));
    }
    // Comparing digests keeps even the token's length out of the timing.
    let presented = Sha256::digest(token.as_bytes());
    let wanted = Sha256::digest(expected.expose().as_bytes());
    require_match(&wanted, [presented.as_slice()])
}

/// The header's value as text. Non-ASCII values are malformed for every preset.
fn header<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a str, VerifyError> {
    headers
        .get(name)
        .ok_or_else(|| VerifyError::MissingHeader(name.to_owned()))?
        .to_str()
        .map_err(|_| malformed(name, "the value is not visible ASCII"))
}

fn malformed(header: &str, reason: &'static str) -> VerifyError {
    VerifyError::Malformed {
        header: header.to_owned(),
        reason,
    }
}

fn decode_hex(header: &str, text: &str) -> Result<Vec<u8>, VerifyError> {
    hex::decode(text).map_err(|_| malformed(header, "the signature is not hex"))
}

/// Rejects `raw` unless it is unix seconds within `tolerance` of `now`, either side.
fn check_timestamp(
    header: &str,
    raw: &str,
    tolerance: HumanDuration,
    now: i64,
) -> Result<(), VerifyError> {
    let timestamp = Some(raw)
        .filter(|raw| !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|raw| raw.parse::<i64>().ok())
        .ok_or_else(|| malformed(header, "the timestamp is not unix seconds"))?;
    let tolerance_secs = tolerance.get().as_secs();
    if now.abs_diff(timestamp) > tolerance_secs {
        return Err(VerifyError::TimestampOutOfTolerance {
            timestamp,
            now,
            tolerance_secs,
        });
    }
    Ok(())
}

/// The MAC of the concatenated `parts`.
fn mac<M: Mac + KeyInit>(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = <M as KeyInit>::new_from_slice(key).expect("HMAC accepts keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}

/// Succeeds when any candidate equals `expected`. Every candidate is compared, each in
/// time independent of its content; a candidate of another length (empty, truncated)
/// never matches.
fn require_match<'a>(
    expected: &[u8],
    candidates: impl IntoIterator<Item = &'a [u8]>,
) -> Result<(), VerifyError> {
    let mut found = Choice::from(0);
    for candidate in candidates {
        found |= expected.ct_eq(candidate);
    }
    if bool::from(found) && !expected.is_empty() {
        Ok(())
    } else {
        Err(VerifyError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use axum::http::{HeaderName, HeaderValue};
    use serde::Deserialize;

    use super::*;

    const VECTORS: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/fixtures/webhooks/signature-vectors.json"
    );

    /// One entry of `signature-vectors.json`; see the README next to it.
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Case {
        preset: String,
        secret: String,
        body: String,
        headers: BTreeMap<String, String>,
        /// Absent for presets without timestamps.
        now: Option<i64>,
        valid: bool,
        note: String,
    }

    fn headers<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    fn preset(name: &str, secret: &str) -> Verify {
        let secret = Secret::new(secret);
        let tolerance = HumanDuration::from_secs(300);
        match name {
            "github" => Verify::Github { secret },
            "stripe" => Verify::Stripe { secret, tolerance },
            "standard_webhooks" => Verify::StandardWebhooks { secret, tolerance },
            "slack" => Verify::Slack { secret, tolerance },
            other => panic!("the vectors name an unknown preset {other:?}"),
        }
    }

    #[test]
    fn every_published_vector() {
        let text = std::fs::read_to_string(VECTORS)
            .unwrap_or_else(|e| panic!("cannot read {VECTORS}: {e}"));
        let raw: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
        let mut checked = 0;
        let mut failures = Vec::new();
        let mut presets = BTreeMap::<String, (usize, usize)>::new();
        for (index, value) in raw.iter().enumerate() {
            let case: Case = serde_json::from_value(value.clone())
                .unwrap_or_else(|e| panic!("case {index} does not parse: {e}"));
            let config = preset(&case.preset, &case.secret);
            let map = headers(case.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            let result = verify(&config, &map, case.body.as_bytes(), case.now.unwrap_or(0));
            if result.is_ok() != case.valid {
                failures.push(format!(
                    "case {index} ({} / {}): expected valid={}, got {result:?}",
                    case.preset, case.note, case.valid
                ));
            }
            let counts = presets.entry(case.preset).or_default();
            if case.valid {
                counts.0 += 1;
            } else {
                counts.1 += 1;
            }
            checked += 1;
        }
        assert!(
            failures.is_empty(),
            "vectors failed:\n{}",
            failures.join("\n")
        );
        assert_eq!(checked, raw.len(), "every vector is checked, none skipped");
        assert!(checked > 0, "the vector file is empty");
        for name in ["github", "standard_webhooks", "stripe", "slack"] {
            let (valid, _) = presets.get(name).copied().unwrap_or_default();
            assert!(valid > 0, "no valid vector for {name}");
        }
    }

    // The Stripe and Slack vectors, reused with another `now`.
    const STRIPE_BODY: &[u8] = br#"{"id":"evt_1","type":"invoice.paid"}"#;
    const STRIPE_HEADER: &str =
        "t=1795830000,v1=3385f50d3e322e723169dc0b596d5edf21f34e9fac5ab4196ceb48bddf2e938d";
    const SLACK_BODY: &[u8] = b"token=x&team_id=T1&command=%2Fdeploy";
    const SLACK_SIG: &str = "v0=8fec8f8c867f630f99501ecf261c56f87b882173243b22a8f2c4329c84d8114d";
    const SIGNED_AT: i64 = 1_795_830_000;

    fn stripe_at(now: i64) -> Result<(), VerifyError> {
        let config = preset("stripe", "whsec_stripe_test_secret");
        verify(
            &config,
            &headers([("Stripe-Signature", STRIPE_HEADER)]),
            STRIPE_BODY,
            now,
        )
    }

    fn slack_at(now: i64) -> Result<(), VerifyError> {
        let config = preset("slack", "8f742231b10e8888abcd99yyyzzz85a5");
        let map = headers([
            ("X-Slack-Request-Timestamp", "1795830000"),
            ("X-Slack-Signature", SLACK_SIG),
        ]);
        verify(&config, &map, SLACK_BODY, now)
    }

    #[test]
    fn tolerance_is_inclusive_and_applies_both_ways() {
        for check in [stripe_at, slack_at] {
            assert_eq!(check(SIGNED_AT + 300), Ok(()));
            assert_eq!(check(SIGNED_AT - 300), Ok(()));
            for now in [SIGNED_AT + 301, SIGNED_AT - 301] {
                assert_eq!(
                    check(now),
                    Err(VerifyError::TimestampOutOfTolerance {
                        timestamp: SIGNED_AT,
                        now,
                        tolerance_secs: 300,
                    })
                );
            }
        }
    }

    #[test]
    fn stripe_rejects_truncated_empty_and_missing_parts() {
        let config = preset("stripe", "whsec_stripe_test_secret");
        let check = |value: &str| {
            verify(
                &config,
                &headers([("Stripe-Signature", value)]),
                STRIPE_BODY,
                SIGNED_AT,
            )
        };
        assert_eq!(check("t=1795830000,v1="), Err(VerifyError::Mismatch));
        assert_eq!(
            check("t=1795830000,v1=3385f50d3e32"),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            check("t=1795830000,v0=3385"),
            Err(malformed(STRIPE_SIGNATURE, "no v1= signature"))
        );
        assert_eq!(
            check("v1=3385f50d3e322e723169dc0b596d5edf21f34e9fac5ab4196ceb48bddf2e938d"),
            Err(malformed(STRIPE_SIGNATURE, "no t= timestamp"))
        );
        assert_eq!(
            check("t=-1795830000,v1=3385"),
            Err(malformed(
                STRIPE_SIGNATURE,
                "the timestamp is not unix seconds"
            ))
        );
    }

    /// The vectors put the valid signature last; it must count in any position.
    #[test]
    fn any_of_several_signatures_may_match() {
        let stripe = preset("stripe", "whsec_stripe_test_secret");
        let header = format!("{STRIPE_HEADER},v1={}", "00".repeat(32));
        let map = headers([("Stripe-Signature", header.as_str())]);
        assert_eq!(verify(&stripe, &map, STRIPE_BODY, SIGNED_AT), Ok(()));

        let webhooks = preset(
            "standard_webhooks",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        );
        let valid = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
        let wrong = "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
        for signature in [format!("{valid} {wrong}"), format!("{wrong} {valid}")] {
            let map = headers([
                ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
                ("webhook-timestamp", "1614265330"),
                ("webhook-signature", signature.as_str()),
            ]);
            let body = br#"{"test": 2432232314}"#;
            assert_eq!(
                verify(&webhooks, &map, body, 1_614_265_330),
                Ok(()),
                "{signature}"
            );
        }
        let map = headers([
            ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
            ("webhook-timestamp", "1614265330"),
            ("webhook-signature", wrong),
        ]);
        assert_eq!(
            verify(&webhooks, &map, br#"{"test": 2432232314}"#, 1_614_265_330),
            Err(VerifyError::Mismatch)
        );
    }

    #[test]
    fn standard_webhooks_rejects_a_key_without_base64() {
        let config = preset("standard_webhooks", "whsec_not base64!");
        let map = headers([
            ("webhook-id", "msg_1"),
            ("webhook-timestamp", "1614265330"),
            (
                "webhook-signature",
                "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            ),
        ]);
        assert!(matches!(
            verify(&config, &map, b"{}", 1_614_265_330),
            Err(VerifyError::InvalidSecret(_))
        ));
    }

    // RFC 2202 / RFC 4231 test case 2: key "Jefe".
    const JEFE_BODY: &[u8] = b"what do ya want for nothing?";
    const JEFE_SHA1_HEX: &str = "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79";
    const JEFE_SHA256_HEX: &str =
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
    const JEFE_SHA256_B64: &str = "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM=";
    const JEFE_SHA512_B64: &str =
        "Fkt6e/z4GeLjlfvnO1bgo4e9ZCIugx/WECcM1+olBVSXWL91wFqZSm0DT2X48Ob9yuqxo01Ka0tjbgcKOLznNw==";

    fn hmac_config(algorithm: HmacAlgorithm, prefix: &str, encoding: SignatureEncoding) -> Verify {
        Verify::Hmac(HmacVerify {
            secret: Secret::new("Jefe"),
            header: "X-Signature".to_owned(),
            algorithm,
            prefix: prefix.to_owned(),
            encoding,
        })
    }

    fn signed(config: &Verify, value: &str) -> Result<(), VerifyError> {
        verify(config, &headers([("x-signature", value)]), JEFE_BODY, 0)
    }

    #[test]
    fn generic_hmac_hex_and_base64() {
        use HmacAlgorithm::*;
        use SignatureEncoding::*;
        let sha256_hex = hmac_config(Sha256, "", Hex);
        assert_eq!(signed(&sha256_hex, JEFE_SHA256_HEX), Ok(()));
        assert_eq!(signed(&sha256_hex, &JEFE_SHA256_HEX.to_uppercase()), Ok(()));
        assert_eq!(
            signed(&sha256_hex, &JEFE_SHA256_HEX[..62]),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(signed(&sha256_hex, ""), Err(VerifyError::Mismatch));
        assert_eq!(
            signed(&sha256_hex, JEFE_SHA1_HEX),
            Err(VerifyError::Mismatch)
        );
        assert!(matches!(
            signed(&sha256_hex, "zz"),
            Err(VerifyError::Malformed { .. })
        ));

        let sha256_b64 = hmac_config(Sha256, "", Base64);
        assert_eq!(signed(&sha256_b64, JEFE_SHA256_B64), Ok(()));
        assert_eq!(
            signed(&sha256_b64, JEFE_SHA256_HEX),
            Err(VerifyError::Mismatch)
        );

        let sha1_prefixed = hmac_config(Sha1, "sha1=", Hex);
        assert_eq!(
            signed(&sha1_prefixed, &format!("sha1={JEFE_SHA1_HEX}")),
            Ok(())
        );
        assert_eq!(signed(&sha1_prefixed, "sha1="), Err(VerifyError::Mismatch));
        assert_eq!(
            signed(&sha1_prefixed, JEFE_SHA1_HEX),
            Err(malformed(
                "x-signature",
                "the signature lacks the configured prefix"
            ))
        );

        let sha512_prefixed = hmac_config(Sha512, "sha512=", Base64);
        assert_eq!(
            signed(&sha512_prefixed, &format!("sha512={JEFE_SHA512_B64}")),
            Ok(())
        );
        assert_eq!(
            signed(&sha512_prefixed, &format!("sha512={JEFE_SHA256_B64}")),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify(&sha512_prefixed, &HeaderMap::new(), JEFE_BODY, 0),
            Err(VerifyError::MissingHeader("x-signature".to_owned()))
        );
    }

    #[test]
    fn bearer_token() {
        let config = Verify::Bearer {
            token: Secret::new("s3cret-token"),
        };
        let check = |value: &str| verify(&config, &headers([("Authorization", value)]), b"", 0);
        assert_eq!(check("Bearer s3cret-token"), Ok(()));
        assert_eq!(check("bearer s3cret-token"), Ok(()));
        assert_eq!(check("Bearer wrong-token"), Err(VerifyError::Mismatch));
        assert_eq!(check("Bearer s3cret-toke"), Err(VerifyError::Mismatch));
        assert_eq!(
            check("Bearer "),
            Err(malformed(AUTHORIZATION, "the bearer token is empty"))
        );
        assert!(matches!(
            check("Basic s3cret-token"),
            Err(VerifyError::Malformed { .. })
        ));
        assert!(matches!(
            check("s3cret-token"),
            Err(VerifyError::Malformed { .. })
        ));
        assert_eq!(
            verify(&config, &HeaderMap::new(), b"", 0),
            Err(VerifyError::MissingHeader(AUTHORIZATION.to_owned()))
        );
    }

    #[test]
    fn non_ascii_header_is_malformed() {
        let config = preset("github", "It's a Secret to Everybody");
        let mut map = HeaderMap::new();
        map.insert(
            GITHUB_SIGNATURE,
            HeaderValue::from_bytes(b"sha256=\xff").unwrap(),
        );
        assert!(matches!(
            verify(&config, &map, b"Hello, World!", 0),
            Err(VerifyError::Malformed { .. })
        ));
    }

    #[test]
    fn verification_headers_are_lowercase_and_cover_what_is_read() {
        let cases = [
            (
                preset("github", "s"),
                vec!["x-hub-signature-256", "x-hub-signature"],
            ),
            (preset("stripe", "s"), vec!["stripe-signature"]),
            (
                preset("standard_webhooks", "whsec_AAAA"),
                vec!["webhook-id", "webhook-timestamp", "webhook-signature"],
            ),
            (
                preset("slack", "s"),
                vec!["x-slack-signature", "x-slack-request-timestamp"],
            ),
            (
                hmac_config(HmacAlgorithm::Sha256, "", SignatureEncoding::Hex),
                vec!["x-signature"],
            ),
            (
                Verify::Bearer {
                    token: Secret::new("t"),
                },
                vec!["authorization"],
            ),
        ];
        for (config, expected) in cases {
            assert_eq!(verification_headers(&config), expected, "{config:?}");
        }
    }

    /// Distinct names so the test below notices a variant it does not produce.
    fn variant(error: &VerifyError) -> &'static str {
        match error {
            VerifyError::MissingHeader(_) => "MissingHeader",
            VerifyError::Malformed { .. } => "Malformed",
            VerifyError::Mismatch => "Mismatch",
            VerifyError::TimestampOutOfTolerance { .. } => "TimestampOutOfTolerance",
            VerifyError::InvalidSecret(_) => "InvalidSecret",
        }
    }

    #[test]
    fn no_error_message_contains_a_secret_or_expected_signature() {
        let secret = "It's a Secret to Everybody";
        let github = preset("github", secret);
        let body = b"Hello, World!";
        let expected_hex = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        let whsec = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let expected_b64 = "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
        let webhook = |signature: &str| {
            headers([
                ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
                ("webhook-timestamp", "1614265330"),
                ("webhook-signature", signature),
            ])
        };
        let errors = [
            verify(&github, &HeaderMap::new(), body, 0),
            verify(&github, &headers([(GITHUB_SIGNATURE, "md5=00")]), body, 0),
            verify(
                &github,
                &headers([(GITHUB_SIGNATURE, "sha256=00")]),
                body,
                0,
            ),
            verify(
                &preset("standard_webhooks", whsec),
                &webhook(&format!("v1,{expected_b64}")),
                br#"{"test": 2432232314}"#,
                0,
            ),
            verify(
                &preset("standard_webhooks", whsec),
                &webhook("v1,AAAA"),
                br#"{"test": 2432232314}"#,
                1_614_265_330,
            ),
            verify(
                &preset("standard_webhooks", "whsec_%%%"),
                &webhook("v1,AAAA"),
                b"",
                1_614_265_330,
            ),
            verify(
                &Verify::Bearer {
                    token: Secret::new(secret),
                },
                &headers([("authorization", "Bearer nope")]),
                b"",
                0,
            ),
        ];
        let mut seen = std::collections::BTreeSet::new();
        for result in errors {
            let error = result.expect_err("every request above is invalid");
            let message = error.to_string();
            for leak in [secret, expected_hex, whsec, &whsec[6..], expected_b64] {
                assert!(!message.contains(leak), "{message:?} leaks {leak:?}");
            }
            seen.insert(variant(&error));
        }
        let all = [
            "MissingHeader",
            "Malformed",
            "Mismatch",
            "TimestampOutOfTolerance",
            "InvalidSecret",
        ];
        assert_eq!(seen.into_iter().collect::<Vec<_>>(), {
            let mut all = all.to_vec();
            all.sort_unstable();
            all
        });
    }
}
