//! Credentials in URLs, kept out of logs, errors and command output.
//!
//! Store URLs, webhook URLs and endpoints may carry a password in their user info or a
//! token in their query string. Everything that prints such a URL goes through
//! [`redact_url`].

use url::Url;

/// What replaces a credential.
const REDACTED: &str = "***";

/// Words that, in a query parameter's name, mark its value as a credential (compared
/// without case): `password`, `sslpassword`, `access_token`, `api_key`,
/// `X-Amz-Signature`, `client_secret`, `auth` and the like.
const SECRET_WORDS: [&str; 8] = [
    "pass",
    "pwd",
    "secret",
    "token",
    "key",
    "sig",
    "auth",
    "credential",
];

/// `text` with every credential a URL may carry replaced by `***`: the password of its
/// user info (a password holding `@` included), and the value of every query parameter
/// whose name marks it as a credential (see [`SECRET_WORDS`]). Everything else is kept
/// as written, and text with nothing to redact is returned unchanged.
///
/// Text that does not parse as a URL is redacted by its shape: everything between
/// `://` and the last `@` before the path, and the value of every query parameter.
pub fn redact_url(text: &str) -> String {
    match Url::parse(text) {
        Ok(url) => redact_parsed(url).unwrap_or_else(|| text.to_owned()),
        Err(_) => redact_by_shape(text),
    }
}

/// The redacted URL, or `None` when it holds no credential.
fn redact_parsed(mut url: Url) -> Option<String> {
    let mut changed = false;
    if url.password().is_some() {
        changed |= url.set_password(Some(REDACTED)).is_ok();
    }
    if url.query().is_some() {
        let mut secret_query = false;
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(name, value)| {
                if is_secret(&name) {
                    secret_query = true;
                    (name.into_owned(), REDACTED.to_owned())
                } else {
                    (name.into_owned(), value.into_owned())
                }
            })
            .collect();
        if secret_query {
            url.query_pairs_mut().clear().extend_pairs(pairs);
            changed = true;
        }
    }
    changed.then(|| url.to_string())
}

/// The credentials a URL carries, as [`redact_url`] finds them: the password of its
/// user info and the values of its credential query parameters, each as written and
/// percent-decoded. Empty for text that does not parse as a URL.
pub fn url_credentials(text: &str) -> Vec<String> {
    let Ok(url) = Url::parse(text) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    if let Some(password) = url.password() {
        found.push(password.to_owned());
        if let Ok(decoded) = percent_decode(password) {
            found.push(decoded);
        }
    }
    for (name, value) in url.query_pairs() {
        if is_secret(&name) && !value.is_empty() {
            found.push(value.into_owned());
        }
    }
    found
}

fn percent_decode(text: &str) -> Result<String, std::string::FromUtf8Error> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(high), Some(low)) => {
                // Two hex digits make one byte: high * 16 + low is below 256.
                out.push((high * 16 + low) as u8);
                i += 3;
            }
            (byte, _, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out)
}

/// Whether a query parameter or header named `name` carries a credential, by the
/// words in [`SECRET_WORDS`].
pub fn is_secret(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_WORDS.iter().any(|word| name.contains(word))
}

fn redact_by_shape(text: &str) -> String {
    let (before_query, query) = match text.split_once('?') {
        Some((before, query)) => (before, Some(query)),
        None => (text, None),
    };
    let mut out = match before_query.find("://") {
        Some(scheme_end) => {
            let authority_start = scheme_end + 3;
            let rest = &before_query[authority_start..];
            let authority_len = rest.find('/').unwrap_or(rest.len());
            match rest[..authority_len].rfind('@') {
                Some(at) => format!(
                    "{}{REDACTED}{}",
                    &before_query[..authority_start],
                    &rest[at..]
                ),
                None => before_query.to_owned(),
            }
        }
        None => before_query.to_owned(),
    };
    if let Some(query) = query {
        let redacted: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((name, _)) => format!("{name}={REDACTED}"),
                None => pair.to_owned(),
            })
            .collect();
        out.push('?');
        out.push_str(&redacted.join("&"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_user_info_are_redacted() {
        assert_eq!(
            redact_url("postgres://app:hunter2@db/app"),
            "postgres://app:***@db/app"
        );
        assert_eq!(
            redact_url("postgres://app:p@ss@db:5432/app"),
            "postgres://app:***@db:5432/app",
            "a password holding @"
        );
        assert_eq!(redact_url("postgres://app@db/app"), "postgres://app@db/app");
    }

    #[test]
    fn credential_query_parameters_are_redacted_and_the_rest_kept() {
        assert_eq!(
            redact_url("postgres://u@h/db?sslmode=require&password=X&application_name=a"),
            "postgres://u@h/db?sslmode=require&password=***&application_name=a"
        );
        assert_eq!(
            redact_url("https://h.example/hook?access_token=abc&X-Amz-Signature=def&page=2"),
            "https://h.example/hook?access_token=***&X-Amz-Signature=***&page=2"
        );
        assert_eq!(
            redact_url("postgres://u@h/db?sslpassword=Y"),
            "postgres://u@h/db?sslpassword=***"
        );
    }

    #[test]
    fn url_credentials_lists_passwords_and_credential_parameters() {
        assert_eq!(
            url_credentials("https://u:p%40ss@h/hook?token=t0k&page=2"),
            ["p%40ss", "p@ss", "t0k"]
        );
        assert!(url_credentials("http://127.0.0.1:4566").is_empty());
        assert!(url_credentials("not a url").is_empty());
    }

    #[test]
    fn urls_without_credentials_are_unchanged() {
        for url in [
            "sqlite://switchyard.db",
            "sqlite::memory:",
            "sqlite://data/x.db?mode=rwc",
            "http://127.0.0.1:4566",
            "not a url",
        ] {
            assert_eq!(redact_url(url), url);
        }
    }

    #[test]
    fn text_that_does_not_parse_is_redacted_by_its_shape() {
        assert_eq!(
            redact_url("postgres://u:p@ss@h:bad port/db?password=x"),
            "postgres://***@h:bad port/db?password=***"
        );
    }
}
