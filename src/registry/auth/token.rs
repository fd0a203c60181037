//! Fetching bearer tokens from a registry's token realm (the Docker token authentication spec).
//!
//! Two ways to ask, as docker does:
//! - `GET realm?service=S&scope=A&scope=B`, anonymous or with Basic credentials (Docker Hub,
//!   ghcr, quay and distribution's token servers all accept this; it is docker's default);
//! - with an identity token from `docker login` (an OAuth2 refresh token):
//!   `POST realm` with the form `grant_type=refresh_token&refresh_token=..&service=..&scope=..
//!   &client_id=crossdock`, where `scope` is one space-separated list (RFC 6749 §3.3).
//!
//! The answer is JSON with `token` (or the OAuth2 name `access_token`), `expires_in` and
//! `issued_at`. Refusals become errors naming the registry and the realm host; the caller never
//! falls back to anonymous when credentials were given and refused, because that turns "your
//! password is wrong" into a baffling "repository not found" later.

use std::time::{Duration, SystemTime};

use http::HeaderValue;
use serde::Deserialize;
use url::Url;

use super::{AuthError, Credentials, Secret};

/// The OAuth2 client id crossdock names itself by.
const CLIENT_ID: &str = "crossdock";

/// Docker's minimum token lifetime: the spec says a token "should" live at least 60 s and
/// clients assume so when `expires_in` is missing or smaller.
pub(super) const MIN_LIFETIME: Duration = Duration::from_secs(60);

/// How much of an error body goes into an error message.
const BODY_EXCERPT: usize = 200;

/// What to ask the realm for.
pub(super) struct TokenRequest<'a> {
    pub registry: &'a str,
    pub realm: &'a Url,
    pub service: Option<&'a str>,
    /// Scope strings (`repository:foo:pull,push`), in a stable order.
    pub scopes: &'a [String],
    pub credentials: Option<&'a Credentials>,
}

/// A token as the realm granted it.
pub(super) struct GrantedToken {
    /// `Bearer <token>`, marked sensitive.
    pub header: HeaderValue,
    /// How long it lives from now.
    pub lifetime: Duration,
    /// A new refresh token, when the OAuth2 endpoint rotated it.
    pub refresh_token: Option<Secret>,
}

#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
    #[serde(default)]
    issued_at: Option<String>,
    #[serde(default)]
    refresh_token: Option<String>,
}

/// The realm URL checked: only http(s) realms are followed.
pub(super) fn realm_url(registry: &str, realm: &str) -> Result<Url, AuthError> {
    let url = Url::parse(realm).map_err(|e| AuthError::InvalidRealm {
        registry: registry.to_string(),
        realm: realm.to_string(),
        reason: e.to_string(),
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(AuthError::InvalidRealm {
            registry: registry.to_string(),
            realm: realm.to_string(),
            reason: "not an http(s) URL".to_string(),
        });
    }
    Ok(url)
}

/// The realm's host (and port) for messages and logs.
pub(super) fn realm_host(realm: &Url) -> String {
    match (realm.host_str(), realm.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        _ => realm.as_str().to_string(),
    }
}

/// Asks the realm for a token.
pub(super) async fn fetch(
    client: &reqwest::Client,
    req: &TokenRequest<'_>,
    refresh_token: Option<&Secret>,
) -> Result<GrantedToken, AuthError> {
    let host = realm_host(req.realm);
    let (builder, method) = match (refresh_token, req.credentials) {
        (Some(refresh), _) => (oauth_post(client, req, refresh), "POST (refresh token)"),
        (None, Some(Credentials::Basic { username, password })) => {
            let mut url = get_url(req);
            // Docker Hub wants the account named; others ignore it.
            url.query_pairs_mut().append_pair("account", username);
            (
                client
                    .get(url)
                    .basic_auth(username, Some(password.expose())),
                "GET (basic)",
            )
        }
        (None, _) => (client.get(get_url(req)), "GET (anonymous)"),
    };
    tracing::debug!(
        registry = req.registry,
        realm_host = %host,
        method,
        scopes = ?req.scopes,
        "requesting bearer token"
    );
    let response = builder.send().await.map_err(|e| AuthError::TokenRequest {
        registry: req.registry.to_string(),
        realm_host: host.clone(),
        source: e,
    })?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|e| AuthError::TokenRequest {
            registry: req.registry.to_string(),
            realm_host: host.clone(),
            source: e,
        })?;
    let with_credentials = req.credentials.is_some();
    if !status.is_success() {
        let detail = scrub(&error_detail(&body), req.credentials, refresh_token);
        return Err(match status.as_u16() {
            401 if !with_credentials => AuthError::CredentialsRequired {
                registry: req.registry.to_string(),
            },
            401 | 403 => AuthError::TokenRefused {
                registry: req.registry.to_string(),
                realm_host: host,
                status: status.as_u16(),
                anonymous: !with_credentials,
                detail,
            },
            code => AuthError::TokenStatus {
                registry: req.registry.to_string(),
                realm_host: host,
                status: code,
                detail,
            },
        });
    }
    let bad = |reason: String| AuthError::TokenResponse {
        registry: req.registry.to_string(),
        realm_host: realm_host(req.realm),
        reason,
    };
    let parsed: TokenResponse = serde_json::from_slice(&body)
        .map_err(|e| bad(format!("answer is not token JSON ({e})")))?;
    // The spec's `token`; OAuth2 endpoints answer `access_token`. Docker prefers `token`.
    let token = parsed
        .token
        .filter(|t| !t.is_empty())
        .or(parsed.access_token.filter(|t| !t.is_empty()))
        .ok_or_else(|| bad("answer has neither token nor access_token".to_string()))?;
    let mut header = HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| bad("token has characters not allowed in a header".to_string()))?;
    header.set_sensitive(true);
    let lifetime = lifetime(
        parsed.expires_in,
        parsed.issued_at.as_deref(),
        SystemTime::now(),
    );
    tracing::debug!(
        registry = req.registry,
        realm_host = %host,
        lifetime_s = lifetime.as_secs(),
        "bearer token granted"
    );
    Ok(GrantedToken {
        header,
        lifetime,
        refresh_token: parsed
            .refresh_token
            .filter(|t| !t.is_empty())
            .map(Secret::new),
    })
}

fn get_url(req: &TokenRequest<'_>) -> Url {
    let mut url = req.realm.clone();
    {
        let mut q = url.query_pairs_mut();
        if let Some(s) = req.service {
            q.append_pair("service", s);
        }
        for scope in req.scopes {
            q.append_pair("scope", scope);
        }
    }
    // `query_pairs_mut` leaves a bare `?` when nothing was added.
    if url.query() == Some("") {
        url.set_query(None);
    }
    url
}

fn oauth_post(
    client: &reqwest::Client,
    req: &TokenRequest<'_>,
    refresh: &Secret,
) -> reqwest::RequestBuilder {
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    form.append_pair("grant_type", "refresh_token")
        .append_pair("refresh_token", refresh.expose())
        .append_pair("client_id", CLIENT_ID);
    if let Some(s) = req.service {
        form.append_pair("service", s);
    }
    if !req.scopes.is_empty() {
        form.append_pair("scope", &req.scopes.join(" "));
    }
    client
        .post(req.realm.clone())
        .header(
            http::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(form.finish())
}

/// How long a token lives from `now`. As docker: `expires_in` below the 60 s minimum (or
/// missing) counts as 60 s, and the lifetime runs from `issued_at` when the realm gives it.
/// A clock skew that would make a fresh token look already expired (or issued in the future)
/// is ignored and the lifetime runs from now instead.
pub(super) fn lifetime(
    expires_in: Option<u64>,
    issued_at: Option<&str>,
    now: SystemTime,
) -> Duration {
    let full = Duration::from_secs(expires_in.unwrap_or(0)).max(MIN_LIFETIME);
    let age = issued_at
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .and_then(|t| now.duration_since(SystemTime::from(t)).ok());
    match age {
        Some(age) if age < full => full - age,
        _ => full,
    }
}

/// A short human explanation from an error body: the spec error `message`, Docker Hub's
/// `details`, OAuth2's `error_description`, or an excerpt of a non-JSON body.
fn error_detail(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Body {
        #[serde(default)]
        errors: Vec<Entry>,
        #[serde(default)]
        details: Option<String>,
        #[serde(default)]
        error_description: Option<String>,
        #[serde(default)]
        error: Option<serde_json::Value>,
    }
    #[derive(Deserialize)]
    struct Entry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    if let Ok(b) = serde_json::from_slice::<Body>(body) {
        let mut parts: Vec<String> = b
            .errors
            .into_iter()
            .map(|e| format!("{} {}", e.code, e.message).trim().to_string())
            .collect();
        parts.extend(b.details);
        parts.extend(b.error_description);
        if let Some(serde_json::Value::String(e)) = b.error {
            parts.push(e);
        }
        parts.retain(|p| !p.is_empty());
        if !parts.is_empty() {
            return excerpt(&parts.join("; "));
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        "empty body".to_string()
    } else {
        excerpt(text)
    }
}

fn excerpt(text: &str) -> String {
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(BODY_EXCERPT)
        .collect();
    if text.chars().count() > BODY_EXCERPT {
        format!("{clean}...")
    } else {
        clean
    }
}

/// Removes our own secrets from text a server sent back, in case it echoes them.
fn scrub(text: &str, credentials: Option<&Credentials>, refresh: Option<&Secret>) -> String {
    let mut out = text.to_string();
    let secret = match credentials {
        Some(Credentials::Basic { password, .. }) => Some(password),
        Some(Credentials::IdentityToken(s) | Credentials::RegistryToken(s)) => Some(s),
        None => None,
    };
    for s in secret.into_iter().chain(refresh) {
        if s.expose().len() >= 4 {
            out = out.replace(s.expose(), "***");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetime_follows_docker() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(lifetime(None, None, now), MIN_LIFETIME);
        assert_eq!(lifetime(Some(5), None, now), MIN_LIFETIME);
        assert_eq!(lifetime(Some(300), None, now), Duration::from_secs(300));
        // Issued 100 s ago with 300 s to live: 200 s left.
        let issued =
            chrono::DateTime::<chrono::Utc>::from(now - Duration::from_secs(100)).to_rfc3339();
        assert_eq!(
            lifetime(Some(300), Some(&issued), now),
            Duration::from_secs(200)
        );
        // Skewed clocks: issued "in the future" or "long ago" → the full lifetime from now.
        let future =
            chrono::DateTime::<chrono::Utc>::from(now + Duration::from_secs(100)).to_rfc3339();
        assert_eq!(
            lifetime(Some(300), Some(&future), now),
            Duration::from_secs(300)
        );
        let old =
            chrono::DateTime::<chrono::Utc>::from(now - Duration::from_secs(1000)).to_rfc3339();
        assert_eq!(
            lifetime(Some(300), Some(&old), now),
            Duration::from_secs(300)
        );
        assert_eq!(
            lifetime(Some(300), Some("yesterday"), now),
            Duration::from_secs(300)
        );
    }

    #[test]
    fn error_details_are_short_and_scrubbed() {
        assert_eq!(
            error_detail(
                br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#
            ),
            "UNAUTHORIZED authentication required"
        );
        assert_eq!(
            error_detail(br#"{"details":"incorrect username or password"}"#),
            "incorrect username or password"
        );
        assert_eq!(
            error_detail(br#"{"error":"invalid_grant","error_description":"expired"}"#),
            "expired; invalid_grant"
        );
        assert_eq!(error_detail(b""), "empty body");
        let long = "x".repeat(1000);
        assert_eq!(error_detail(long.as_bytes()).len(), BODY_EXCERPT + 3);
        let creds = Credentials::Basic {
            username: "u".into(),
            password: Secret::new("hunter22"),
        };
        assert_eq!(
            scrub("bad password hunter22", Some(&creds), None),
            "bad password ***"
        );
    }

    #[test]
    fn get_url_repeats_scope() {
        let realm = Url::parse("https://auth.example/token?x=1").unwrap();
        let scopes = vec![
            "repository:a:pull".to_string(),
            "repository:b:pull,push".to_string(),
        ];
        let req = TokenRequest {
            registry: "r.example",
            realm: &realm,
            service: Some("svc"),
            scopes: &scopes,
            credentials: None,
        };
        let url = get_url(&req);
        let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        assert_eq!(
            pairs,
            [
                ("x".into(), "1".into()),
                ("service".into(), "svc".into()),
                ("scope".into(), "repository:a:pull".into()),
                ("scope".into(), "repository:b:pull,push".into()),
            ]
        );
        let bare = Url::parse("https://auth.example/token").unwrap();
        let req = TokenRequest {
            realm: &bare,
            service: None,
            scopes: &[],
            ..req
        };
        assert_eq!(get_url(&req).as_str(), "https://auth.example/token");
    }

    #[test]
    fn realm_must_be_http() {
        assert!(realm_url("r", "https://a.example/token").is_ok());
        for bad in ["file:///etc/passwd", "not a url", "ftp://a/b", "/token"] {
            assert!(
                matches!(realm_url("r", bad), Err(AuthError::InvalidRealm { .. })),
                "{bad}"
            );
        }
    }
}
