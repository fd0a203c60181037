//! One JSON request to an identity endpoint (Entra ID, IMDS, ACR's exchange, Google's metadata
//! server and token endpoint), with the failure turned into a [`CloudError`] that says which
//! endpoint answered what — and never repeats a token: error bodies are cut to the endpoint's
//! own explanation (`error_description`, `error`, `message`), and anything that looks like a
//! token is left out.

use serde::de::DeserializeOwned;

use super::CloudError;
use crate::registry::auth::Secret;

/// Tokens in identity endpoints' answers are read straight into a [`Secret`].
impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret::new)
    }
}

/// Longest explanation taken from an error body.
const EXCERPT: usize = 300;

/// Who is asking, for the errors.
pub(super) struct Caller<'a> {
    pub registry: &'a str,
    pub cloud: &'static str,
    pub source_name: &'a str,
}

impl Caller<'_> {
    /// A [`CloudError`] from this caller.
    pub(super) fn error(&self, reason: impl Into<String>, transient: bool) -> CloudError {
        CloudError {
            registry: self.registry.to_string(),
            cloud: self.cloud,
            source_name: self.source_name.to_string(),
            reason: reason.into(),
            transient,
        }
    }

    /// Sends `request` (named `what` in errors, e.g. `the Entra ID token endpoint
    /// https://login.example/…`) and parses a 2xx answer as `T`.
    pub(super) async fn json<T: DeserializeOwned>(
        &self,
        what: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<T, CloudError> {
        let response = request.send().await.map_err(|e| {
            self.error(
                format!("{what} could not be reached ({})", error_chain(&e)),
                true,
            )
        })?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| {
            self.error(
                format!("{what} broke off its answer ({})", error_chain(&e)),
                true,
            )
        })?;
        if !status.is_success() {
            return Err(self.error(
                format!(
                    "{what} answered HTTP {}: {}",
                    status.as_u16(),
                    explanation(&body)
                ),
                status.is_server_error() || status.as_u16() == 429,
            ));
        }
        serde_json::from_slice(&body)
            .map_err(|e| self.error(format!("{what} sent an unreadable answer ({e})"), false))
    }
}

/// `request` with `pairs` as an `application/x-www-form-urlencoded` body.
pub(super) fn form(
    request: reqwest::RequestBuilder,
    pairs: &[(&str, String)],
) -> reqwest::RequestBuilder {
    let mut body = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        body.append_pair(k, v);
    }
    request
        .header(
            http::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(body.finish())
}

/// A reqwest error with its causes ("connection refused" sits a few levels down).
fn error_chain(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The endpoint's own explanation from an error body, without anything token-like.
fn explanation(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Body {
        #[serde(default)]
        error: Option<serde_json::Value>,
        #[serde(default)]
        error_description: Option<String>,
        #[serde(default)]
        message: Option<String>,
    }
    let text = match serde_json::from_slice::<Body>(body) {
        Ok(b) => {
            let mut parts = Vec::new();
            match b.error {
                Some(serde_json::Value::String(s)) => parts.push(s),
                Some(serde_json::Value::Object(o)) => {
                    if let Some(serde_json::Value::String(m)) = o.get("message") {
                        parts.push(m.clone());
                    }
                }
                _ => {}
            }
            parts.extend(b.error_description);
            parts.extend(b.message);
            parts.join(": ")
        }
        Err(_) => String::from_utf8_lossy(body).trim().to_string(),
    };
    let cleaned: Vec<&str> = text
        .split_whitespace()
        .filter(|w| !looks_like_token(w))
        .collect();
    let mut out = cleaned.join(" ");
    if out.len() > EXCERPT {
        let mut cut = EXCERPT;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push('…');
    }
    if out.is_empty() {
        "no explanation".to_string()
    } else {
        out
    }
}

/// Long unbroken base64-ish words are tokens or assertions, not prose.
fn looks_like_token(word: &str) -> bool {
    word.len() >= 32
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.=+/".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explanations_keep_prose_and_drop_tokens() {
        let body = br#"{"error":"invalid_client","error_description":"AADSTS700024: Client assertion eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlc2lnbmF0dXJl is expired"}"#;
        let e = explanation(body);
        assert!(
            e.contains("invalid_client") && e.contains("is expired"),
            "{e}"
        );
        assert!(!e.contains("eyJ"), "{e}");
        assert_eq!(explanation(b""), "no explanation");
        assert_eq!(explanation(b"plain failure"), "plain failure");
    }
}
