//! Configuration problems: each with the key path it concerns and where it came from (a line
//! and column of the file, or an environment variable), all collected before any is reported.
//!
//! A daemon that starts with half a configuration mirrors the wrong things in silence, and a
//! user who fixes one typo per run gives up; so loading never stops at the first problem, and
//! every problem carries enough to find it: `config.toml:14:12: rules[2].schedule: …`.
//! Values are quoted in messages except under `password` and `notifications_token`, which are
//! secrets.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

/// One step of a key path: a table key or an array index.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Segment {
    /// A key of a table.
    Key(String),
    /// An index into an array.
    Index(usize),
}

/// Where a value sits in the configuration, written as in TOML: `rules[2].tags.include[0]`,
/// `registries."docker.io".password_file`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyPath(pub Vec<Segment>);

impl KeyPath {
    /// The empty path (the whole document).
    pub fn root() -> Self {
        KeyPath(Vec::new())
    }

    /// This path with a key appended.
    pub fn key(&self, k: &str) -> Self {
        let mut p = self.clone();
        p.0.push(Segment::Key(k.to_string()));
        p
    }

    /// This path with an index appended.
    pub fn index(&self, i: usize) -> Self {
        let mut p = self.clone();
        p.0.push(Segment::Index(i));
        p
    }

    /// The path without its last step.
    pub fn parent(&self) -> Option<Self> {
        let mut p = self.clone();
        p.0.pop().map(|_| p)
    }

    /// Whether `self` is `other` or lies under it.
    pub fn starts_with(&self, other: &KeyPath) -> bool {
        self.0.starts_with(&other.0)
    }

    /// The last key, if the path ends in one.
    pub fn last_key(&self) -> Option<&str> {
        match self.0.last() {
            Some(Segment::Key(k)) => Some(k),
            _ => None,
        }
    }

    /// Whether the value at this path is a secret (never quoted in messages).
    pub fn is_secret(&self) -> bool {
        self.0
            .iter()
            .any(|s| matches!(s, Segment::Key(k) if k == "password" || k == "notifications_token"))
    }
}

fn is_bare_key(k: &str) -> bool {
    !k.is_empty()
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for seg in &self.0 {
            match seg {
                Segment::Key(k) => {
                    if !first {
                        f.write_str(".")?;
                    }
                    if is_bare_key(k) {
                        f.write_str(k)?;
                    } else {
                        write!(f, "{k:?}")?;
                    }
                }
                Segment::Index(i) => write!(f, "[{i}]")?,
            }
            first = false;
        }
        Ok(())
    }
}

/// Where a configuration value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A place in the configuration file (line and column from 1).
    File {
        /// The file.
        path: PathBuf,
        /// Line, from 1.
        line: usize,
        /// Column in characters, from 1.
        column: usize,
    },
    /// An environment variable that overrode the file.
    Env(String),
    /// The file as a whole (it could not be read).
    Whole(PathBuf),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File { path, line, column } => {
                write!(f, "{}:{line}:{column}", path.display())
            }
            Origin::Env(var) => write!(f, "environment variable {var}"),
            Origin::Whole(path) => write!(f, "{}", path.display()),
        }
    }
}

/// One configuration problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Where the offending value was written, when known.
    pub origin: Option<Origin>,
    /// The key it concerns (empty for the whole document).
    pub path: KeyPath,
    /// What is wrong, and what would be right.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(o) = &self.origin {
            write!(f, "{o}: ")?;
        }
        if !self.path.0.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem found in a configuration; Display prints one per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// The problems.
    pub fn iter(&self) -> impl Iterator<Item = &ConfigError> {
        self.0.iter()
    }

    /// How many problems.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Never true for an error returned by loading; here for completeness.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// Where each key path of the merged configuration was written.
#[derive(Debug, Clone, Default)]
pub(crate) struct Origins {
    /// Where each value was written.
    pub(crate) at: BTreeMap<KeyPath, Origin>,
    /// Where each key of a table was written (for problems with the key itself).
    pub(crate) keys: BTreeMap<KeyPath, Origin>,
}

impl Origins {
    /// The origin of `path`, or of its nearest written ancestor (a missing key is reported at
    /// the table that lacks it).
    pub(crate) fn of(&self, path: &KeyPath) -> Option<Origin> {
        let mut p = Some(path.clone());
        while let Some(cur) = p {
            if let Some(o) = self.at.get(&cur) {
                return Some(o.clone());
            }
            p = cur.parent();
        }
        None
    }
}

/// Collects problems while a configuration is checked.
pub(crate) struct Problems<'o> {
    origins: &'o Origins,
    errors: Vec<ConfigError>,
}

impl<'o> Problems<'o> {
    pub(crate) fn new(origins: &'o Origins) -> Self {
        Problems {
            origins,
            errors: Vec::new(),
        }
    }

    /// Records a problem at `path`.
    pub(crate) fn add(&mut self, path: &KeyPath, message: impl fmt::Display) {
        self.errors.push(ConfigError {
            origin: self.origins.of(path),
            path: path.clone(),
            message: message.to_string(),
        });
    }

    /// Records a problem with the key at `path` itself (an unknown key), placed at the key.
    pub(crate) fn add_at_key(&mut self, path: &KeyPath, message: impl fmt::Display) {
        let origin = self
            .origins
            .keys
            .get(path)
            .cloned()
            .or_else(|| self.origins.of(path));
        self.errors.push(ConfigError {
            origin,
            path: path.clone(),
            message: message.to_string(),
        });
    }

    /// Records that a required key is missing, unless a problem was already reported at it
    /// (a value refused by type leaves the key empty; saying "missing" too would be noise).
    pub(crate) fn missing(&mut self, path: &KeyPath, hint: &str) {
        if !self.has_problem_at(path) {
            self.add(path, format!("missing; {hint}"));
        }
    }

    /// Whether a problem was recorded at `path` or under it.
    pub(crate) fn has_problem_at(&self, path: &KeyPath) -> bool {
        self.errors.iter().any(|e| e.path.starts_with(path))
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    pub(crate) fn into_result<T>(self, value: T) -> Result<T, ConfigErrors> {
        if self.errors.is_empty() {
            Ok(value)
        } else {
            Err(ConfigErrors(self.errors))
        }
    }
}

/// The valid name nearest to `got`, if one is near enough to be what was meant.
pub(crate) fn nearest<'a>(got: &str, valid: &[&'a str]) -> Option<&'a str> {
    let got_l = got.to_ascii_lowercase();
    valid
        .iter()
        .map(|v| (strsim::levenshtein(&got_l, &v.to_ascii_lowercase()), *v))
        .filter(|(d, v)| *d <= (v.len().max(got.len()) / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, v)| v)
}

/// "did you mean `x`?" or the list of valid names.
pub(crate) fn suggestion(got: &str, valid: &[&str]) -> String {
    match nearest(got, valid) {
        Some(v) => format!("did you mean `{v}`?"),
        None => {
            let list: Vec<String> = valid.iter().map(|v| format!("`{v}`")).collect();
            format!("expected one of {}", list.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_render_as_toml() {
        let p = KeyPath::root()
            .key("registries")
            .key("docker.io")
            .key("password_file");
        assert_eq!(p.to_string(), r#"registries."docker.io".password_file"#);
        let p = KeyPath::root()
            .key("rules")
            .index(2)
            .key("tags")
            .key("include")
            .index(0);
        assert_eq!(p.to_string(), "rules[2].tags.include[0]");
        assert!(p.starts_with(&KeyPath::root().key("rules").index(2)));
        assert!(!p.starts_with(&KeyPath::root().key("rules").index(1)));
    }

    #[test]
    fn suggestions() {
        let keys = ["name", "source", "target", "schedule", "timeout", "tags"];
        assert_eq!(nearest("shedule", &keys), Some("schedule"));
        assert_eq!(nearest("Schedule", &keys), Some("schedule"));
        assert_eq!(nearest("tag", &keys), Some("tags"));
        assert_eq!(nearest("sources", &keys), Some("source"));
        assert_eq!(nearest("completely_else", &keys), None);
        assert!(suggestion("zzz", &["a", "b"]).contains("`a`, `b`"));
    }
}
