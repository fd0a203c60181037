//! From text to [`RawConfig`]: the TOML file parsed with the position of every key, the
//! `CROSSDOCK_…` environment overrides laid over it, then deserialized so that every bad key
//! is reported, not only serde's first.
//!
//! Why not `figment::Figment::merge(Env::prefixed(..))`: figment's `Env` provider reads the
//! process environment only (the loader must be testable with a given environment, and the
//! process environment cannot be changed safely in threaded tests), and it cannot address an
//! element of an array (`[[rules]]`). So the overlay is done here on figment's value tree, with
//! figment's own rule for reading a value from a string (`true`, `42`, `[a, b]`, `"quoted"`).
//!
//! Why deserialization loops: serde stops at the first error of a struct. Each error names its
//! key path; the offending value is removed and deserialization retried, until it succeeds.
//! Every field of the raw types is optional, so removing a value always makes progress.

use std::collections::BTreeMap;
use std::path::Path;

use figment::error::Kind;
use figment::value::{Dict, Tag, Value};
use serde::de::DeserializeOwned;
use toml::de::{DeTable, DeValue};

use super::error::{ConfigError, ConfigErrors, KeyPath, Origin, Origins, Problems, Segment};

/// Prefix of environment overrides.
pub const ENV_PREFIX: &str = "CROSSDOCK_";
/// Separator of key path steps in an environment override's name.
pub const ENV_SEPARATOR: &str = "__";

/// A parsed configuration tree and where each of its keys came from.
#[derive(Debug)]
pub(crate) struct Document {
    pub(crate) root: Value,
    pub(crate) origins: Origins,
}

/// Where each line of a text starts, to turn byte offsets into line and column: every key of a
/// file gets a position, and counting lines from the start for each would make loading a file
/// quadratic in its size.
struct Lines<'a> {
    text: &'a str,
    /// Byte offsets of line starts: 0, then one past each `\n`.
    starts: Vec<usize>,
}

impl<'a> Lines<'a> {
    fn new(text: &'a str) -> Self {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Lines { text, starts }
    }

    /// Line and column (from 1, column in characters) of a byte offset.
    fn at(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        // The starts at or before `offset`: at least the first.
        let line = self.starts.partition_point(|&s| s <= offset);
        let start = self.starts[line - 1];
        (line, self.text[start..offset].chars().count() + 1)
    }
}

/// Parses the file's text. Syntax errors are all reported, each with line and column; the
/// TOML parser's own message is used without its source excerpt, which could show a password.
pub(crate) fn parse(path: &Path, text: &str) -> Result<Document, ConfigErrors> {
    let lines = Lines::new(text);
    let at = |offset: usize| {
        let (line, column) = lines.at(offset);
        Origin::File {
            path: path.to_path_buf(),
            line,
            column,
        }
    };
    let (spanned, errors) = DeTable::parse_recoverable(text);
    if !errors.is_empty() {
        return Err(ConfigErrors(
            errors
                .iter()
                .map(|e| ConfigError {
                    origin: Some(at(e.span().map(|s| s.start).unwrap_or(0))),
                    path: KeyPath::root(),
                    message: format!("malformed TOML: {}", e.message().trim_end()),
                })
                .collect(),
        ));
    }
    // Values come from `toml::Table` (which reads integers, floats and dates exactly); the
    // spanned tree only gives positions.
    let table: toml::Table = toml::from_str(text).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            origin: Some(at(e.span().map(|s| s.start).unwrap_or(0))),
            path: KeyPath::root(),
            message: format!("malformed TOML: {}", e.message().trim_end()),
        }])
    })?;
    let mut origins = Origins::default();
    record_table(spanned.get_ref(), &KeyPath::root(), &mut origins, &at);
    Ok(Document {
        root: from_toml(toml::Value::Table(table)),
        origins,
    })
}

fn record_table(
    table: &DeTable<'_>,
    path: &KeyPath,
    origins: &mut Origins,
    at: &dyn Fn(usize) -> Origin,
) {
    for (k, v) in table.iter() {
        let p = path.key(k.get_ref());
        // A value's own position is more useful than its key's, except for tables (whose
        // "value" may be a header far from the key).
        let pos = match v.get_ref() {
            DeValue::Table(_) | DeValue::Array(_) => k.span().start,
            _ => v.span().start,
        };
        origins.at.insert(p.clone(), at(pos));
        origins.keys.insert(p.clone(), at(k.span().start));
        record_value(v.get_ref(), &p, origins, at);
    }
}

fn record_value(
    v: &DeValue<'_>,
    path: &KeyPath,
    origins: &mut Origins,
    at: &dyn Fn(usize) -> Origin,
) {
    match v {
        DeValue::Table(t) => record_table(t, path, origins, at),
        DeValue::Array(a) => {
            for (i, item) in a.iter().enumerate() {
                let p = path.index(i);
                origins.at.insert(p.clone(), at(item.span().start));
                record_value(item.get_ref(), &p, origins, at);
            }
        }
        _ => {}
    }
}

fn from_toml(v: toml::Value) -> Value {
    match v {
        toml::Value::String(s) => Value::from(s),
        toml::Value::Integer(i) => Value::from(i),
        toml::Value::Float(f) => Value::from(f),
        toml::Value::Boolean(b) => Value::from(b),
        // No key takes a date; keeping it as text gives a readable type error.
        toml::Value::Datetime(d) => Value::from(d.to_string()),
        toml::Value::Array(a) => Value::from(a.into_iter().map(from_toml).collect::<Vec<_>>()),
        toml::Value::Table(t) => Value::Dict(
            Tag::Default,
            t.into_iter().map(|(k, v)| (k, from_toml(v))).collect(),
        ),
    }
}

/// Compares names the way an environment variable can spell them: case and punctuation
/// ignored (`DOCKER_IO` finds `docker.io`, `MY_RULE` finds `my-rule`).
fn env_spelling(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// Lays `CROSSDOCK_A__B__C=value` over the document: the value at `a.b.c` is replaced.
/// Only names with the separator are overrides (`CROSSDOCK_SHARD` and other single-word
/// variables belong to the command line). A step into `[[rules]]` is an index or a rule name;
/// a step into a table matches an existing key by [`env_spelling`], else names a new key.
pub(crate) fn apply_env(
    doc: &mut Document,
    env: &BTreeMap<String, String>,
    errors: &mut Vec<ConfigError>,
) {
    for (var, raw) in env {
        let Some(rest) = var.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        if !rest.contains(ENV_SEPARATOR) {
            continue;
        }
        let steps: Vec<String> = rest
            .split(ENV_SEPARATOR)
            .map(|s| s.to_ascii_lowercase())
            .collect();
        match overlay(&mut doc.root, &steps, raw) {
            Ok((path, created)) => {
                // Everything under the overridden key now comes from the variable.
                let origins = &mut doc.origins;
                origins.at.retain(|p, _| !p.starts_with(&path));
                origins.keys.retain(|p, _| !p.starts_with(&path));
                origins.at.insert(path, Origin::Env(var.clone()));
                if let Some(c) = created {
                    origins.at.insert(c, Origin::Env(var.clone()));
                }
            }
            Err(message) => errors.push(ConfigError {
                origin: Some(Origin::Env(var.clone())),
                path: KeyPath::root(),
                message,
            }),
        }
    }
}

/// Sets the value; returns its path and, if the variable created keys the file did not have,
/// the shallowest of them (so that an unknown key it introduced is reported at the variable).
fn overlay(
    root: &mut Value,
    steps: &[String],
    raw: &str,
) -> Result<(KeyPath, Option<KeyPath>), String> {
    if steps.iter().any(|s| s.is_empty()) {
        return Err(format!(
            "empty key in the name (steps are separated by a double underscore {ENV_SEPARATOR:?})"
        ));
    }
    let mut path = KeyPath::root();
    let mut created = None;
    let mut cur = root;
    for (i, step) in steps.iter().enumerate() {
        let last = i + 1 == steps.len();
        cur = match cur {
            Value::Dict(_, dict) => {
                let key = dict
                    .keys()
                    .find(|k| *k == step)
                    .or_else(|| dict.keys().find(|k| env_spelling(k) == env_spelling(step)))
                    .cloned()
                    .unwrap_or_else(|| step.clone());
                path = path.key(&key);
                if created.is_none() && !dict.contains_key(&key) {
                    created = Some(path.clone());
                }
                if last {
                    let existing = dict.get(&key);
                    dict.insert(key.clone(), env_value(&key, raw, existing));
                    return Ok((path, created));
                }
                dict.entry(key)
                    .or_insert_with(|| Value::Dict(Tag::Default, Dict::new()))
            }
            Value::Array(_, items) => {
                let index = match step.parse::<usize>() {
                    Ok(n) if n < items.len() => n,
                    Ok(n) => {
                        return Err(format!(
                            "{path} has {} entries; there is no index {n}",
                            items.len()
                        ));
                    }
                    Err(_) => find_named(items, step).ok_or_else(|| {
                        format!("{path} has no entry named {step:?} (matched ignoring case and punctuation)")
                    })?,
                };
                path = path.index(index);
                if last {
                    let existing = items.get(index);
                    items[index] = env_value("", raw, existing);
                    return Ok((path, created));
                }
                &mut items[index]
            }
            _ => return Err(format!("{path} is not a table, so it has no key {step:?}")),
        };
    }
    Ok((path, created))
}

fn find_named(items: &[Value], step: &str) -> Option<usize> {
    items.iter().position(|item| {
        item.find_ref("name")
            .and_then(Value::as_str)
            .is_some_and(|n| env_spelling(n) == env_spelling(step))
    })
}

/// Reads an override's text the way figment's `Env` does, except that it stays a string where
/// a string is expected: for keys that always take one, and where the file had a string.
fn env_value(key: &str, raw: &str, existing: Option<&Value>) -> Value {
    let parsed: Value = raw.parse().unwrap_or_else(|_| Value::from(raw));
    let wants_string = matches!(
        key,
        "password" | "username" | "listen" | "name" | "notifications_token"
    ) || matches!(existing, Some(Value::String(..)));
    if wants_string && !matches!(parsed, Value::String(..)) {
        Value::from(raw)
    } else {
        parsed
    }
}

/// Converts figment's error path (keys and array indexes as strings) into a [`KeyPath`] by
/// walking the tree, which knows which steps are indexes.
fn key_path(root: &Value, steps: &[String]) -> KeyPath {
    let mut path = KeyPath::root();
    let mut cur = Some(root);
    for s in steps {
        match cur {
            Some(Value::Array(_, items)) => {
                let i = s.parse::<usize>().unwrap_or(0);
                path = path.index(i);
                cur = items.get(i);
            }
            Some(Value::Dict(_, d)) => {
                path = path.key(s);
                cur = d.get(s);
            }
            _ => {
                path = path.key(s);
                cur = None;
            }
        }
    }
    path
}

/// Removes the value at `path` so that deserialization can go on without it. An array element
/// takes its whole array with it (removing one element would shift the indexes of later errors).
fn remove(root: &mut Value, path: &KeyPath) -> bool {
    let mut steps = path.0.clone();
    while matches!(steps.last(), Some(Segment::Index(_))) {
        steps.pop();
    }
    let Some((last, parents)) = steps.split_last() else {
        return false;
    };
    let mut cur = root;
    for s in parents {
        cur = match (cur, s) {
            (Value::Dict(_, d), Segment::Key(k)) => match d.get_mut(k) {
                Some(v) => v,
                None => return false,
            },
            (Value::Array(_, a), Segment::Index(i)) => match a.get_mut(*i) {
                Some(v) => v,
                None => return false,
            },
            _ => return false,
        };
    }
    match (cur, last) {
        (Value::Dict(_, d), Segment::Key(k)) => d.remove(k).is_some(),
        _ => false,
    }
}

fn describe(kind: &Kind, path: &KeyPath) -> String {
    use super::error::suggestion;
    let value_shown = !matches!(kind, Kind::UnknownField(..) | Kind::MissingField(..));
    if path.is_secret() && value_shown {
        // The value is a secret: say what was expected, never what was found.
        return "invalid value (not shown: it is a secret); expected a string".to_string();
    }
    match kind {
        Kind::UnknownField(got, expected) => {
            format!("unknown key `{got}`; {}", suggestion(got, expected))
        }
        Kind::UnknownVariant(got, expected) => {
            format!("unknown value {got:?}; {}", suggestion(got, expected))
        }
        Kind::InvalidType(found, expected) => format!("expected {expected}, found {found}"),
        Kind::InvalidValue(found, expected) => format!("expected {expected}, found {found}"),
        other => other.to_string(),
    }
}

/// Deserializes the document into `T`, recording every refused value in `problems`.
pub(crate) fn extract<T: DeserializeOwned + Default>(
    doc: &Document,
    problems: &mut Problems<'_>,
) -> T {
    let mut root = doc.root.clone();
    // Each round removes one value; the bound only guards against a value that cannot be
    // removed reappearing forever.
    for _ in 0..10_000 {
        match root.deserialize::<T>() {
            Ok(v) => return v,
            Err(e) => {
                let path = key_path(&root, &e.path);
                let message = describe(&e.kind, &path);
                if matches!(e.kind, Kind::UnknownField(..)) {
                    // Point at the misspelt key, not at its value.
                    problems.add_at_key(&path, message);
                } else {
                    problems.add(&path, message);
                }
                if !remove(&mut root, &path) {
                    return T::default();
                }
            }
        }
    }
    T::default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every character boundary of a text with empty lines, CRLF and multi-byte characters gets
    /// the line and column counted from the start: lines before it plus one, characters since
    /// the line's start plus one.
    #[test]
    fn line_starts_give_the_positions_counted_from_the_start() {
        let text = "\na = \"é\"\r\n\n  [b] # ü€\nc=1";
        let lines = Lines::new(text);
        for (offset, _) in text.char_indices().chain([(text.len(), ' ')]) {
            let before = &text[..offset];
            let line = before.matches('\n').count() + 1;
            let start = before.rfind('\n').map_or(0, |i| i + 1);
            let column = text[start..offset].chars().count() + 1;
            assert_eq!(lines.at(offset), (line, column), "offset {offset}");
        }
        assert_eq!(lines.at(text.len() + 5), lines.at(text.len()));
        assert_eq!(lines.at(text.find('c').unwrap()), (5, 1));
        assert_eq!(lines.at(text.find('€').unwrap()), (4, 10));
    }

    #[test]
    fn positions() {
        let text = "a = 1\n\n[b]\n  c = \"x\"\n";
        assert_eq!(Lines::new(text).at(0), (1, 1));
        assert_eq!(Lines::new(text).at(text.find("c =").unwrap()), (4, 3));
        let doc = parse(Path::new("f.toml"), text).unwrap();
        let o = doc.origins.of(&KeyPath::root().key("b").key("c")).unwrap();
        assert_eq!(
            o,
            Origin::File {
                path: "f.toml".into(),
                line: 4,
                column: 7
            }
        );
        // A missing key is placed at its table.
        let o = doc
            .origins
            .of(&KeyPath::root().key("b").key("zzz"))
            .unwrap();
        assert!(matches!(o, Origin::File { line: 3, .. }), "{o:?}");
    }

    #[test]
    fn syntax_errors_have_line_and_column_and_no_excerpt() {
        let text = "[server]\nlisten = \"127.0.0.1:9090\"\npassword = \"hunter2\nx = 1\n";
        let errs = parse(Path::new("c.toml"), text).unwrap_err();
        let first = &errs.0[0];
        assert!(
            matches!(first.origin, Some(Origin::File { line: 3, .. })),
            "{errs}"
        );
        assert!(!errs.to_string().contains("hunter2"), "{errs}");
    }

    #[test]
    fn env_overlay_addresses_tables_and_rules() {
        let text = r#"
[server]
listen = "127.0.0.1:9090"
[registries."docker.io"]
username = "u"
[[rules]]
name = "my-rule"
schedule = "@hourly"
[[rules]]
name = "other"
"#;
        let mut doc = parse(Path::new("c.toml"), text).unwrap();
        let env: BTreeMap<String, String> = [
            ("CROSSDOCK_SERVER__LISTEN", "0.0.0.0:1"),
            ("CROSSDOCK_REGISTRIES__DOCKER_IO__USERNAME", "1234"),
            ("CROSSDOCK_RULES__MY_RULE__SCHEDULE", "@daily"),
            ("CROSSDOCK_RULES__1__REFERRERS", "false"),
            ("CROSSDOCK_RULES__NOPE__SCHEDULE", "@daily"),
            ("CROSSDOCK_RULES__7__SCHEDULE", "@daily"),
            ("CROSSDOCK_SHARD", "1/2"),
            ("OTHER__X", "1"),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        let mut errors = Vec::new();
        apply_env(&mut doc, &env, &mut errors);
        let get = |p: &str| doc.root.find_ref(p).cloned();
        assert_eq!(get("server.listen").unwrap().as_str(), Some("0.0.0.0:1"));
        // Stays a string although it reads as a number.
        assert_eq!(
            doc.root.find_ref("registries").unwrap().as_dict().unwrap()["docker.io"]
                .find_ref("username")
                .unwrap()
                .as_str(),
            Some("1234")
        );
        let rules = get("rules").unwrap().into_array().unwrap();
        assert_eq!(
            rules[0].find_ref("schedule").unwrap().as_str(),
            Some("@daily")
        );
        assert_eq!(
            rules[1].find_ref("referrers").unwrap().to_bool(),
            Some(false)
        );
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[0].to_string().contains("no index 7"),
            "{}",
            errors[0]
        );
        assert!(
            errors[1].to_string().contains("no entry named \"nope\""),
            "{}",
            errors[1]
        );
        assert_eq!(
            doc.origins.of(&KeyPath::root().key("server").key("listen")),
            Some(Origin::Env("CROSSDOCK_SERVER__LISTEN".into()))
        );
    }
}
