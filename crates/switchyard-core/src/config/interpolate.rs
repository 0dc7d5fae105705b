//! `${VAR}`, `${VAR:-default}` and `${VAR:?message}` in string values.
//!
//! Interpolation runs over the parsed YAML tree, string scalars only, so a value can
//! never change the structure of the file around it. Interpolated values stay strings.

use std::collections::BTreeSet;

use serde_norway::Value;

use super::ConfigError;

/// Where variables come from. `None` means "not set".
pub trait Environment {
    fn var(&self, name: &str) -> Option<String>;

    /// The value for a variable that is not set and has no default. `None` makes it an
    /// error, which is what a real environment wants.
    fn missing(&self, _name: &str) -> Option<String> {
        None
    }
}

/// The process environment.
pub struct ProcessEnv;

impl Environment for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

/// An empty environment in which a variable without a default gets a placeholder, for
/// `validate --no-environment`: the file is checked without the secrets it refers to,
/// and defaults apply as they would on a machine without the variables.
pub struct PlaceholderEnv;

impl Environment for PlaceholderEnv {
    fn var(&self, _name: &str) -> Option<String> {
        None
    }

    fn missing(&self, name: &str) -> Option<String> {
        Some(format!("placeholder-{}", name.to_ascii_lowercase()))
    }
}

impl<F: Fn(&str) -> Option<String>> Environment for F {
    fn var(&self, name: &str) -> Option<String> {
        self(name)
    }
}

/// Replaces variables in every string of `value`, collecting one error per problem.
///
/// Adds to `unchecked` the path of every value whose final text is not known: one whose
/// variable is missing (its error is reported here), or holds a placeholder. What the
/// later checks would say about such a value is about the stand-in, not the value.
pub fn interpolate_tree(
    value: &mut Value,
    path: &str,
    env: &dyn Environment,
    errors: &mut Vec<ConfigError>,
    unchecked: &mut BTreeSet<String>,
) {
    match value {
        Value::String(text) => {
            let mut placeholder = false;
            match interpolate_noting(text, env, &mut placeholder) {
                Ok(Some(replaced)) => *text = replaced,
                Ok(None) => {}
                Err(message) => {
                    errors.push(ConfigError::new(path, message));
                    placeholder = true;
                }
            }
            if placeholder {
                unchecked.insert(path.to_owned());
            }
        }
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                interpolate_tree(item, &format!("{path}[{i}]"), env, errors, unchecked);
            }
        }
        Value::Mapping(map) => {
            for (key, item) in map.iter_mut() {
                let key = key
                    .as_str()
                    .map_or_else(|| format!("{key:?}"), str::to_owned);
                interpolate_tree(item, &super::join(path, &key), env, errors, unchecked);
            }
        }
        Value::Tagged(tagged) => {
            interpolate_tree(&mut tagged.value, path, env, errors, unchecked);
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// Interpolates one string. `Ok(None)` means it held no variables. `$$` is a literal `$`.
pub fn interpolate(text: &str, env: &dyn Environment) -> Result<Option<String>, String> {
    interpolate_noting(text, env, &mut false)
}

/// [`interpolate`], setting `placeholder` when a variable got the environment's
/// placeholder.
fn interpolate_noting(
    text: &str,
    env: &dyn Environment,
    placeholder: &mut bool,
) -> Result<Option<String>, String> {
    if !text.contains('$') {
        return Ok(None);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        if let Some(after) = rest.strip_prefix("$$") {
            out.push('$');
            rest = after;
            continue;
        }
        let Some(body) = rest.strip_prefix("${") else {
            out.push('$');
            rest = &rest[1..];
            continue;
        };
        let end = body
            .find('}')
            .ok_or_else(|| format!("unclosed \"${{\" in {text:?}"))?;
        out.push_str(&expand(&body[..end], env, placeholder)?);
        rest = &body[end + 1..];
    }
    out.push_str(rest);
    Ok(Some(out))
}

fn expand(expr: &str, env: &dyn Environment, placeholder: &mut bool) -> Result<String, String> {
    let (name, op) = match expr.find(":-").into_iter().chain(expr.find(":?")).min() {
        Some(i) => (&expr[..i], Some((&expr[i..i + 2], &expr[i + 2..]))),
        None => (expr, None),
    };
    let valid = !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if !valid {
        return Err(format!("\"${{{expr}}}\" is not a valid variable reference"));
    }
    let value = env.var(name).filter(|v| !v.is_empty() || op.is_none());
    match (value, op) {
        (Some(value), _) => Ok(value),
        (None, Some((":-", default))) => Ok(default.to_owned()),
        (None, op) => env
            .missing(name)
            .inspect(|_| *placeholder = true)
            .ok_or_else(|| match op {
                Some((_, message)) if !message.is_empty() => {
                    format!("environment variable {name} is not set: {message}")
                }
                _ => format!("environment variable {name} is not set"),
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("db.internal".to_owned()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    fn run(text: &str) -> Result<Option<String>, String> {
        interpolate(text, &env)
    }

    #[test]
    fn substitutes_defaults_and_literals() {
        assert_eq!(run("plain").unwrap(), None);
        assert_eq!(
            run("postgres://${HOST}/app").unwrap().unwrap(),
            "postgres://db.internal/app"
        );
        assert_eq!(
            run("${MISSING:-sqlite://x.db}").unwrap().unwrap(),
            "sqlite://x.db"
        );
        assert_eq!(run("${EMPTY:-fallback}").unwrap().unwrap(), "fallback");
        assert_eq!(run("${EMPTY}").unwrap().unwrap(), "");
        assert_eq!(
            run("cost: $$5 and $HOME").unwrap().unwrap(),
            "cost: $5 and $HOME"
        );
        assert_eq!(run("${HOST:?needed}").unwrap().unwrap(), "db.internal");
    }

    #[test]
    fn missing_variables_are_named() {
        assert_eq!(
            run("${MISSING}").unwrap_err(),
            "environment variable MISSING is not set"
        );
        assert_eq!(
            run("${MISSING:?set it to the queue URL}").unwrap_err(),
            "environment variable MISSING is not set: set it to the queue URL"
        );
        assert!(
            run("${1BAD}")
                .unwrap_err()
                .contains("not a valid variable reference")
        );
        assert!(run("${OPEN").unwrap_err().contains("unclosed"));
    }
}
