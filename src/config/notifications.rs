//! `[server] notifications_token` (or `_file`, `_env`): the bearer token registries must send
//! to the daemon's notification endpoint.
//!
//! Read like a registry password (see [`super::credentials`]): inline, from a file or from a
//! variable, at load time, so that a missing file stops the daemon before it starts; wrapped
//! in [`Secret`] at once and never quoted in a message.

use std::collections::BTreeMap;
use std::path::Path;

use super::credentials::read_named_file;
use super::error::{KeyPath, Problems};
use super::raw::RawServer;
use crate::registry::auth::Secret;

/// Shortest token accepted: the endpoint makes the daemon reach its registries, so the token
/// must not be guessable.
const MIN_TOKEN_LEN: usize = 16;

/// The token registries must send to `/notifications`; `None`: the endpoint is off.
pub(super) fn notifications_token(
    raw: Option<&RawServer>,
    base: &Path,
    env: &BTreeMap<String, String>,
    problems: &mut Problems<'_>,
) -> Option<Secret> {
    let raw = raw?;
    let path = KeyPath::root().key("server");
    let given: Vec<&str> = [
        raw.notifications_token
            .is_some()
            .then_some("notifications_token"),
        raw.notifications_token_file
            .is_some()
            .then_some("notifications_token_file"),
        raw.notifications_token_env
            .is_some()
            .then_some("notifications_token_env"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if given.len() > 1 {
        problems.add(
            &path.key(given[1]),
            format!(
                "give one of notifications_token, notifications_token_file, \
                 notifications_token_env (found {})",
                given.join(" and ")
            ),
        );
        return None;
    }
    let key = path.key(given.first()?);
    let token = if let Some(t) = &raw.notifications_token {
        t.0.clone()
    } else if let Some(file) = &raw.notifications_token_file {
        let (full, bytes) = read_named_file(base, file, &key, problems)?;
        let Ok(text) = String::from_utf8(bytes) else {
            problems.add(&key, format!("{} is not UTF-8 text", full.display()));
            return None;
        };
        // A trailing newline (`echo token > file`) is not part of the token; Kubernetes
        // secret volumes have none.
        text.strip_suffix("\r\n")
            .or_else(|| text.strip_suffix('\n'))
            .unwrap_or(&text)
            .to_string()
    } else {
        let var = raw.notifications_token_env.as_ref()?;
        match env.get(var) {
            Some(v) => v.clone(),
            None => {
                problems.add(&key, format!("environment variable {var} is not set"));
                return None;
            }
        }
    };
    // Registries send it in a header: it must be one header-safe word.
    if token.len() < MIN_TOKEN_LEN {
        problems.add(
            &key,
            format!(
                "the token is shorter than {MIN_TOKEN_LEN} characters; use a long random one \
                 (e.g. `openssl rand -hex 32`)"
            ),
        );
        return None;
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        problems.add(
            &key,
            "the token must be printable ASCII without spaces (it is sent in an HTTP header)",
        );
        return None;
    }
    Some(Secret::new(token))
}
