//! The bearer-token gate a [`super::FaultProxy`] can put in front of a registry that has no token
//! auth ([`super::FaultProxy::require_bearer`]): the 401 challenge on `/v2/` requests without the
//! token, and the realm at `/token` that grants it to one Basic user. Kept apart because it is
//! an auth server in miniature, unrelated to the faults.

use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine as _;

use super::wire::Head;

/// A bearer-token challenge in front of the registry, with the token endpoint served by the
/// proxy itself at `/token`.
pub(super) struct Gate {
    pub(super) user: String,
    pub(super) password: String,
    pub(super) token: String,
}

/// An answer the proxy gives itself: status, headers, body.
pub(super) type Canned = (u16, Vec<(String, String)>, String);

impl Gate {
    /// The gate's own answer to a request for `path`: the realm's answer at `/token` (counted in
    /// `token_requests`), a 401 challenge to a request without the token, `None` to let it pass.
    pub(super) fn answer(
        &self,
        path: &str,
        head: &Head,
        token_requests: &AtomicUsize,
    ) -> Option<Canned> {
        if path == "/token" {
            token_requests.fetch_add(1, Ordering::SeqCst);
            let want = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD
                    .encode(format!("{}:{}", self.user, self.password))
            );
            return Some(if head.get("authorization") == Some(want.as_str()) {
                (
                    200,
                    vec![("content-type".to_string(), "application/json".to_string())],
                    format!(r#"{{"token":"{}","expires_in":300}}"#, self.token),
                )
            } else {
                (401, Vec::new(), r#"{"details":"bad credentials"}"#.into())
            });
        }
        if head.get("authorization") == Some(format!("Bearer {}", self.token).as_str()) {
            return None;
        }
        let host = head.get("host").unwrap_or("127.0.0.1").to_string();
        Some((
            401,
            vec![(
                "www-authenticate".to_string(),
                format!(r#"Bearer realm="http://{host}/token",service="crossdock-test""#),
            )],
            r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#.into(),
        ))
    }
}
