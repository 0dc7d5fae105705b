//! Clearing configured secrets out of what a handler said before it is stored: a
//! command may echo its environment, and a receiver may quote the request it got.

use std::fmt;

/// What replaces a secret.
const REDACTED: &str = "***";

/// The secret values one trigger's output is cleared of.
#[derive(Clone, Default)]
pub struct Redactor {
    /// Longest first, so that a secret containing another is replaced whole.
    secrets: Vec<String>,
}

impl Redactor {
    /// A redactor for these values; empty ones and duplicates are dropped.
    pub fn new(mut secrets: Vec<String>) -> Self {
        secrets.retain(|secret| !secret.is_empty());
        secrets.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        secrets.dedup();
        Self { secrets }
    }

    /// `text` with every occurrence of every secret replaced by `***`.
    pub fn redact(&self, mut text: String) -> String {
        for secret in &self.secrets {
            if text.contains(secret.as_str()) {
                text = text.replace(secret.as_str(), REDACTED);
            }
        }
        text
    }
}

/// Prints how many secrets it holds, never the secrets.
impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Redactor({} secrets)", self.secrets.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_every_secret_longest_first() {
        let redactor = Redactor::new(vec!["tok".into(), "token-123".into(), String::new()]);
        assert_eq!(
            redactor.redact("auth token-123 and tok, twice: tok".into()),
            "auth *** and ***, twice: ***"
        );
        assert_eq!(redactor.redact("nothing here".into()), "nothing here");
        assert_eq!(format!("{redactor:?}"), "Redactor(2 secrets)");
    }
}
