//! `http:` — requests on a path of the shared listener become events.

use serde::Deserialize;

use super::{ByteSize, SharedChecks, SourceSettings};
use crate::HumanDuration;
use crate::config::{RESERVED_PATHS, Secret};

/// `http:` — requests to `path` become events.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSource {
    /// The path on the shared listener, such as `/hooks/github`. Must start with `/`.
    pub path: String,
    /// How requests prove where they come from. Without it, any request is accepted.
    #[serde(default)]
    pub verify: Option<Verify>,
    /// Larger bodies are answered with 413.
    #[serde(default = "default_body_limit")]
    pub body_limit: ByteSize,
    /// Request headers copied into `data.headers` of plain (non-CloudEvents) requests.
    /// Names are case-insensitive. Verification headers are never copied.
    #[serde(default)]
    pub headers: Vec<String>,
    /// The event `type` for plain requests. Defaults to `http.request`.
    #[serde(default = "default_http_type", rename = "type")]
    pub ty: String,
}

impl SourceSettings for HttpSource {
    fn check(
        &self,
        name: &str,
        at: &str,
        shared: &mut SharedChecks,
        err: &mut dyn FnMut(String, String),
    ) {
        if let Some(Verify::StandardWebhooks { secret, .. }) = &self.verify
            && !is_standard_webhooks_secret(secret.expose())
        {
            err(
                format!("{at}.verify.standard_webhooks.secret"),
                "is not whsec_ followed by a base64 key".into(),
            );
        }
        let path_at = format!("{at}.path");
        if !self.path.starts_with('/') {
            err(path_at, format!("{:?} must start with /", self.path));
        } else if RESERVED_PATHS
            .iter()
            .any(|r| self.path == *r || self.path.starts_with(&format!("{r}/")))
        {
            err(
                path_at,
                format!("{:?} is reserved for Switchyard itself", self.path),
            );
        } else if let Some(previous) = shared.paths.get(&self.path) {
            err(
                path_at,
                format!("{:?} is already used by source {previous:?}", self.path),
            );
        } else {
            shared.paths.insert(self.path.clone(), name.to_owned());
        }
    }

    fn secrets(&self) -> Vec<&Secret> {
        match &self.verify {
            Some(
                Verify::Github { secret }
                | Verify::Stripe { secret, .. }
                | Verify::StandardWebhooks { secret, .. }
                | Verify::Slack { secret, .. }
                | Verify::Bearer { token: secret },
            ) => vec![secret],
            Some(Verify::Hmac(hmac)) => vec![&hmac.secret],
            None => Vec::new(),
        }
    }
}

fn default_body_limit() -> ByteSize {
    ByteSize(1024 * 1024)
}

fn default_http_type() -> String {
    "http.request".to_owned()
}

/// Request verification presets.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Verify {
    /// GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>`.
    Github { secret: Secret },
    /// Stripe: `Stripe-Signature: t=<ts>,v1=<hex HMAC-SHA256(secret, "ts.body")>`.
    Stripe {
        secret: Secret,
        #[serde(default = "default_tolerance")]
        tolerance: HumanDuration,
    },
    /// Standard Webhooks: `webhook-id`, `webhook-timestamp`, `webhook-signature`; the
    /// secret is `whsec_` followed by the base64 key.
    StandardWebhooks {
        secret: Secret,
        #[serde(default = "default_tolerance")]
        tolerance: HumanDuration,
    },
    /// Slack: `X-Slack-Signature: v0=<hex HMAC-SHA256(secret, "v0:ts:body")>` with
    /// `X-Slack-Request-Timestamp`.
    Slack {
        secret: Secret,
        #[serde(default = "default_tolerance")]
        tolerance: HumanDuration,
    },
    /// Any HMAC of the raw body carried in one header.
    Hmac(HmacVerify),
    /// `Authorization: Bearer <token>`.
    Bearer { token: Secret },
}

impl Verify {
    /// The YAML key of this preset, such as `github`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Github { .. } => "github",
            Self::Stripe { .. } => "stripe",
            Self::StandardWebhooks { .. } => "standard_webhooks",
            Self::Slack { .. } => "slack",
            Self::Hmac(_) => "hmac",
            Self::Bearer { .. } => "bearer",
        }
    }
}

/// Whether `secret` is a Standard Webhooks secret: an optional `whsec_` prefix and a
/// non-empty base64 key.
pub fn is_standard_webhooks_secret(secret: &str) -> bool {
    use base64::Engine as _;
    let key = secret.strip_prefix("whsec_").unwrap_or(secret);
    base64::engine::general_purpose::STANDARD
        .decode(key)
        .is_ok_and(|key| !key.is_empty())
}

fn default_tolerance() -> HumanDuration {
    HumanDuration::from_secs(300)
}

/// `verify: { hmac: ... }`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HmacVerify {
    pub secret: Secret,
    /// The header holding the signature, such as `X-Signature`.
    pub header: String,
    #[serde(default)]
    pub algorithm: HmacAlgorithm,
    /// Text before the signature in the header, such as `sha256=`.
    #[serde(default)]
    pub prefix: String,
    #[serde(default)]
    pub encoding: SignatureEncoding,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HmacAlgorithm {
    Sha1,
    #[default]
    Sha256,
    Sha512,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignatureEncoding {
    #[default]
    Hex,
    Base64,
}
