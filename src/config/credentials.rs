//! Registry credentials from the configuration: a username with a password given inline, in a
//! file, or in an environment variable; or the registry's entry in a Docker `config.json`
//! (through [`crate::registry::auth::DockerConfig`], credential helpers included).
//!
//! Secrets are read at load time, so a missing password file or variable stops the daemon
//! before it starts rather than at the first pull hours later, and are wrapped in
//! [`Secret`] at once. Messages name the file, variable or key, never the content.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::error::{KeyPath, Problems};
use super::raw::RawRegistry;
use crate::registry::auth::{Credentials, DockerConfig, Secret};

/// Resolves a path from the configuration against the configuration file's folder.
pub(crate) fn resolve_path(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// Reads a file named by the configuration, or records why it cannot be read.
pub(crate) fn read_named_file(
    base: &Path,
    file: &Path,
    path: &KeyPath,
    problems: &mut Problems<'_>,
) -> Option<(PathBuf, Vec<u8>)> {
    let full = resolve_path(base, file);
    match std::fs::read(&full) {
        Ok(bytes) => Some((full, bytes)),
        Err(e) => {
            problems.add(path, format!("cannot read {}: {e}", full.display()));
            None
        }
    }
}

/// The credentials a registry table names, if any.
pub(crate) fn resolve(
    raw: &RawRegistry,
    registry: &str,
    base: &Path,
    env: &BTreeMap<String, String>,
    path: &KeyPath,
    problems: &mut Problems<'_>,
) -> Option<Credentials> {
    let sources = [
        raw.password.is_some().then_some("password"),
        raw.password_file.is_some().then_some("password_file"),
        raw.password_env.is_some().then_some("password_env"),
    ];
    let given: Vec<&str> = sources.into_iter().flatten().collect();
    if let Some(dc) = &raw.docker_config {
        if raw.username.is_some() || !given.is_empty() {
            problems.add(
                &path.key("docker_config"),
                "give either docker_config or username with a password, not both",
            );
            return None;
        }
        return from_docker_config(base, dc, registry, &path.key("docker_config"), problems);
    }
    if given.len() > 1 {
        problems.add(
            &path.key(given[1]),
            format!(
                "give one of password, password_file, password_env (found {})",
                given.join(" and ")
            ),
        );
        return None;
    }
    let username = match (&raw.username, given.first()) {
        (None, None) => return None,
        (None, Some(_)) => {
            problems.missing(&path.key("username"), "a password needs a username");
            return None;
        }
        (Some(_), None) => {
            problems.add(
                &path.key("username"),
                "a username needs a password: set password, password_file or password_env",
            );
            return None;
        }
        (Some(u), Some(_)) if u.is_empty() => {
            problems.add(&path.key("username"), "empty username");
            return None;
        }
        (Some(u), Some(_)) => u.clone(),
    };
    let password = if let Some(p) = &raw.password {
        p.0.clone()
    } else if let Some(file) = &raw.password_file {
        let key = path.key("password_file");
        let (full, bytes) = read_named_file(base, file, &key, problems)?;
        let Ok(text) = String::from_utf8(bytes) else {
            problems.add(&key, format!("{} is not UTF-8 text", full.display()));
            return None;
        };
        // `echo secret > file` and most editors end the file with a newline that is not part
        // of the password; Kubernetes secret volumes do not, and both must work.
        text.strip_suffix("\r\n")
            .or_else(|| text.strip_suffix('\n'))
            .unwrap_or(&text)
            .to_string()
    } else if let Some(var) = &raw.password_env {
        match env.get(var) {
            Some(v) => v.clone(),
            None => {
                problems.add(
                    &path.key("password_env"),
                    format!("environment variable {var} is not set"),
                );
                return None;
            }
        }
    } else {
        unreachable!("one password source is given")
    };
    if password.is_empty() {
        let key = path.key(given[0]);
        problems.add(&key, "the password is empty");
        return None;
    }
    Some(Credentials::Basic {
        username,
        password: Secret::new(password),
    })
}

/// The registry's entry in a Docker `config.json`, read (and its credential helper run) by
/// [`DockerConfig`], exactly as docker would.
fn from_docker_config(
    base: &Path,
    file: &Path,
    registry: &str,
    path: &KeyPath,
    problems: &mut Problems<'_>,
) -> Option<Credentials> {
    let full = resolve_path(base, file);
    match DockerConfig::load(&full).and_then(|c| c.credentials(registry)) {
        Ok(Some(c)) => Some(c),
        Ok(None) => {
            problems.add(
                path,
                format!("{} holds no credentials for {registry}", full.display()),
            );
            None
        }
        // AuthError's messages name the file and what is wrong, never a secret.
        Err(e) => {
            problems.add(path, e);
            None
        }
    }
}
