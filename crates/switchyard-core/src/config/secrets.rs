//! Every secret value a configuration holds, so that text from outside (a handler's
//! output) can be cleared of them before it is stored.

use super::{BuiltinHandler, Config, HandlerSpec, SourceConfig};
use crate::redact::{is_secret, url_credentials};

impl Config {
    /// The configuration's secret values: every [`Secret`](super::Secret) (the admin
    /// token, verification secrets, S3 keys, webhook signing secrets), the credentials
    /// of the store's and webhooks' URLs, and webhook header values whose header name
    /// marks a credential (`Authorization`, `X-Api-Key`, ...). Empty values are left
    /// out; the list may hold duplicates.
    pub fn secret_values(&self) -> Vec<String> {
        let mut found = url_credentials(&self.store);
        let mut secret = |value: &str| found.push(value.to_owned());
        if let Some(token) = &self.http.admin_token {
            secret(token.expose());
        }
        for settings in self.sources.values().filter_map(SourceConfig::settings) {
            for value in settings.secrets() {
                secret(value.expose());
            }
        }
        for trigger in self.triggers.values() {
            if let HandlerSpec::Builtin(BuiltinHandler::Webhook(webhook)) = &trigger.handler {
                if let Some(signing) = &webhook.signing_secret {
                    secret(signing.expose());
                }
                for (name, value) in &webhook.headers {
                    if is_secret(name) {
                        secret(value);
                        // `Bearer <token>`: the token on its own, too.
                        if let Some((_, credentials)) = value.split_once(' ') {
                            secret(credentials.trim_start());
                        }
                    }
                }
                for credential in url_credentials(&webhook.url) {
                    secret(&credential);
                }
            }
        }
        found.retain(|value| !value.is_empty());
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PlaceholderEnv;

    #[test]
    fn collects_every_kind_of_secret() {
        let config = Config::parse(
            r#"
store: postgres://app:store-pw@db/app
http: { admin_token: admin-tok }
sources:
  hooks: { http: { path: /hooks, verify: { github: { secret: gh-secret } } } }
  bare: { http: { path: /bare, verify: { bearer: { token: bearer-tok } } } }
triggers:
  out:
    source: hooks
    handler:
      webhook:
        url: "https://u:hook-pw@h/x?api_key=q-key&page=2"
        signing_secret: whsec_c2lnbmluZw==
        headers: { Authorization: "Bearer hdr-tok", X-Trace: visible }
"#,
            &PlaceholderEnv,
        )
        .unwrap();
        let mut found = config.secret_values();
        found.sort();
        found.dedup();
        assert_eq!(
            found,
            [
                "Bearer hdr-tok",
                "admin-tok",
                "bearer-tok",
                "gh-secret",
                "hdr-tok",
                "hook-pw",
                "q-key",
                "store-pw",
                "whsec_c2lnbmluZw==",
            ]
        );
    }
}
