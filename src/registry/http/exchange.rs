//! Sending one request to the registry, with everything every call needs.
//!
//! In order: a concurrency permit (held until the caller drops the [`Answer`], so a streamed
//! blob body keeps its permit to the end; each answer moves the registry's adaptive limit, see
//! [`super::super::limiter`]), the pacer's slot, the cached credential for the
//! call's scopes (only to the registry's own origin), the request, metrics and a debug line.
//! Then the auth handshake, written down because every registry does it a little differently:
//!
//! 1. send with whatever [`Auth::cached_header`](super::super::auth::Auth::cached_header) has for
//!    the scopes (nothing at first, a Basic header or a bearer token later);
//! 2. on 401 from the registry, hand the `WWW-Authenticate` challenge and the header we sent to
//!    `Auth::on_unauthorized`, which fetches or refreshes a token (or settles on Basic);
//! 3. resend once with the header it returns; a second 401 is an `Unauthorized` error.
//!
//! A request whose body is a one-shot stream (a blob upload) cannot be resent: its 401 is an
//! error at once. That is safe because the upload's POST, moments before, authenticated the
//! same scopes. Finally the status is checked against the ones the call expects; anything else
//! becomes a classified error (see [`super::response`]). [`HttpRegistry::send`] wraps all this in
//! the retry policy for calls that can be rebuilt.
//!
//! reqwest's `read_timeout` starts when the request is sent and is not reset while the request
//! body streams, so it would cut off any upload longer than it. Requests with a body therefore go
//! through a client without it, watched instead by a timer reset each time the connection takes
//! the next body chunk (and bounded by the same idle time while waiting for the answer).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::header::{AUTHORIZATION, CONTENT_LENGTH, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use tokio::time::Instant;
use url::Url;

use super::super::auth::{AuthError, Scope};
use super::super::limiter::RequestPermit;
use super::super::retry::retry;
use super::super::{ByteStream, ErrorKind, RegistryError, Result};
use super::HttpRegistry;
use super::response::{display_url, error_from_response, request_error};

/// Slices of a byte body handed to the connection, so that its progress can be watched.
const BODY_SLICE: usize = 64 * 1024;

/// One API call, rebuildable for each attempt.
pub(super) struct Call<'a> {
    /// What is being done, for errors and logs: `GET manifest`.
    pub op: &'static str,
    pub method: Method,
    pub url: Url,
    /// The access the call needs (empty for `/v2/`).
    pub scopes: &'a [Scope],
    pub headers: HeaderMap,
}

impl<'a> Call<'a> {
    pub(super) fn new(op: &'static str, method: Method, url: Url, scopes: &'a [Scope]) -> Self {
        Call {
            op,
            method,
            url,
            scopes,
            headers: HeaderMap::new(),
        }
    }

    /// Adds a header (values here are ours: media types, ranges, lengths).
    pub(super) fn header(mut self, name: HeaderName, value: &str) -> Self {
        let value = HeaderValue::from_str(value).expect("header values crossdock builds are valid");
        self.headers.insert(name, value);
        self
    }
}

/// A request body: bytes can be sent again, a stream only once.
pub(super) enum Body {
    Bytes(Bytes),
    Stream(ByteStream),
}

/// A response with the concurrency permit it was sent under.
pub(super) struct Answer {
    pub response: reqwest::Response,
    pub permit: RequestPermit,
}

impl Answer {
    pub(super) fn status(&self) -> u16 {
        self.response.status().as_u16()
    }

    /// A response header as text, if present and readable.
    pub(super) fn header(&self, name: impl reqwest::header::AsHeaderName) -> Option<&str> {
        self.response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    }
}

/// When the body of a request last moved.
#[derive(Clone)]
struct Progress(Arc<Mutex<Instant>>);

impl Progress {
    fn new() -> Self {
        Progress(Arc::new(Mutex::new(Instant::now())))
    }
    fn touch(&self) {
        *self.0.lock().expect("progress lock") = Instant::now();
    }
    fn last(&self) -> Instant {
        *self.0.lock().expect("progress lock")
    }
}

impl HttpRegistry {
    /// Sends `call` (with a replayable `body`) until it gets an expected status, retrying
    /// retryable failures under the retry policy.
    pub(super) async fn send(
        &self,
        call: &Call<'_>,
        body: Option<Bytes>,
        expect: &[u16],
    ) -> Result<Answer> {
        retry(&self.opts.retry, call.op, || {
            self.send_once(call, body.clone().map(Body::Bytes), expect)
        })
        .await
    }

    /// One attempt at `call`, including the 401 handshake, checked against `expect`.
    pub(super) async fn send_once(
        &self,
        call: &Call<'_>,
        body: Option<Body>,
        expect: &[u16],
    ) -> Result<Answer> {
        let cached = self.auth.cached_header(call.scopes);
        let replay = match &body {
            None => Some(None),
            Some(Body::Bytes(b)) => Some(Some(Body::Bytes(b.clone()))),
            Some(Body::Stream(_)) => None,
        };
        let mut answer = self.attempt(call, cached.as_ref(), body).await?;
        // A 401 from object storage after a redirect is not ours to answer with credentials.
        if answer.response.status() == StatusCode::UNAUTHORIZED
            && self.is_own_origin(answer.response.url())
            && let Some(replay) = replay
        {
            let challenge = answer
                .response
                .headers()
                .get(reqwest::header::WWW_AUTHENTICATE)
                .cloned();
            drop(answer);
            let header = self
                .auth
                .on_unauthorized(challenge.as_ref(), call.scopes, cached.as_ref())
                .await
                .map_err(|e| self.auth_error(call, e))?;
            answer = self.attempt(call, Some(&header), replay).await?;
        }
        self.expect(call, answer, expect).await
    }

    /// Sends the request once: permit, pace, credentials, metrics, log.
    async fn attempt(
        &self,
        call: &Call<'_>,
        auth: Option<&HeaderValue>,
        body: Option<Body>,
    ) -> Result<Answer> {
        let permit = self.limiter.request().await;
        if let Some(pacer) = &self.pacer {
            pacer.wait().await;
        }
        // The time to an upload's answer is the upload's, not the registry's latency.
        let timed = body.is_none();
        let client = if body.is_some() {
            &self.upload_client
        } else {
            &self.client
        };
        let mut req = client
            .request(call.method.clone(), call.url.clone())
            .headers(call.headers.clone());
        if let Some(h) = auth
            && self.is_own_origin(&call.url)
        {
            req = req.header(AUTHORIZATION, h.clone());
        }
        let result = match body {
            None => req
                .send()
                .await
                .map_err(|e| request_error(call.op, &call.url, e)),
            Some(body) => self.send_watched(call, req, body).await,
        };
        let status = result.as_ref().ok().map(|r| r.status().as_u16());
        crate::metrics::record_request(&self.name, call.method.as_str(), status);
        self.limiter.record(&permit, status, timed);
        match result {
            Ok(response) => {
                tracing::debug!(
                    registry = %self.name,
                    method = %call.method,
                    url = %display_url(response.url()),
                    status = response.status().as_u16(),
                    "registry request"
                );
                self.note_ratelimit(response.headers());
                Ok(Answer { response, permit })
            }
            Err(err) => {
                let err = self.network.explain(&self.opts, &call.url, err).await;
                tracing::debug!(
                    registry = %self.name,
                    method = %call.method,
                    url = %display_url(&call.url),
                    error = %err,
                    "registry request failed"
                );
                Err(err)
            }
        }
    }

    /// Sends a request with a body, failing when the body stops moving (or, once sent, the
    /// answer does not come) for longer than the read timeout.
    async fn send_watched(
        &self,
        call: &Call<'_>,
        mut req: reqwest::RequestBuilder,
        body: Body,
    ) -> Result<reqwest::Response> {
        let progress = Progress::new();
        let stream: ByteStream = match body {
            Body::Bytes(b) => {
                req = req.header(CONTENT_LENGTH, b.len());
                let slices: Vec<Bytes> = (0..b.len())
                    .step_by(BODY_SLICE)
                    .map(|at| b.slice(at..b.len().min(at + BODY_SLICE)))
                    .collect();
                Box::pin(futures_util::stream::iter(slices.into_iter().map(Ok)))
            }
            Body::Stream(s) => s,
        };
        let watched = {
            let progress = progress.clone();
            stream.inspect(move |_| progress.touch())
        };
        let send = req.body(reqwest::Body::wrap_stream(watched)).send();
        tokio::pin!(send);
        let idle = self.opts.read_timeout;
        loop {
            let deadline = progress.last() + idle;
            tokio::select! {
                result = &mut send => {
                    return result.map_err(|e| request_error(call.op, &call.url, e));
                }
                _ = tokio::time::sleep_until(deadline) => {
                    if progress.last() + idle <= Instant::now() {
                        return Err(stalled(call, idle));
                    }
                }
            }
        }
    }

    /// Passes an expected answer, turns any other into its error.
    async fn expect(&self, call: &Call<'_>, answer: Answer, expect: &[u16]) -> Result<Answer> {
        if expect.contains(&answer.status()) {
            return Ok(answer);
        }
        let Answer { response, permit } = answer;
        let mut err = error_from_response(call.op, response, self.opts.read_timeout).await;
        drop(permit);
        // A forwarding proxy (plain-HTTP registries) answers 407 itself.
        if err.status == Some(407) {
            return Err(self.network.explain(&self.opts, &call.url, err).await);
        }
        if err.kind == ErrorKind::Unauthorized && err.message.is_empty() {
            err.message = if self.opts.credentials.is_some() {
                format!("registry {} refused the configured credentials", self.name)
            } else {
                format!(
                    "registry {} requires credentials and none are configured",
                    self.name
                )
            };
        }
        Err(err)
    }

    /// The error for a failed authentication handshake.
    fn auth_error(&self, call: &Call<'_>, e: AuthError) -> RegistryError {
        // A token endpoint we could not reach is a transport fault (retryable), not a refusal.
        let mut unreachable = false;
        let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(inner) = cur {
            if inner
                .downcast_ref::<reqwest::Error>()
                .is_some_and(|r| r.is_connect() || r.is_timeout() || r.is_request())
            {
                unreachable = true;
            }
            cur = inner.source();
        }
        let kind = if unreachable || e.kind() == ErrorKind::Transport {
            ErrorKind::Transport
        } else {
            ErrorKind::Unauthorized
        };
        let err = RegistryError::new(kind, call.op, display_url(&call.url))
            .with_status(401)
            .with_message(e.to_string());
        match e {
            // The cloud's own error, not the transparent wrapper: `crossdock`'s hint looks for
            // it. Its text is in the message already, and the chain printers say a cause once.
            AuthError::Cloud(c) => err.with_source(c),
            e => err.with_source(e),
        }
    }

    /// Records Docker Hub's `ratelimit-remaining: 100;w=21600`.
    fn note_ratelimit(&self, headers: &HeaderMap) {
        let remaining = headers
            .get("ratelimit-remaining")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_ratelimit_remaining);
        if let Some(n) = remaining {
            self.ratelimit_remaining
                .store(n, std::sync::atomic::Ordering::Relaxed);
            crate::metrics::record_ratelimit_remaining(&self.name, n);
        }
    }
}

fn stalled(call: &Call<'_>, idle: Duration) -> RegistryError {
    RegistryError::new(ErrorKind::Transport, call.op, display_url(&call.url))
        .with_message(format!("no progress for {idle:?}"))
}

/// The count in a `ratelimit-remaining` value (`100;w=21600` → 100).
fn parse_ratelimit_remaining(value: &str) -> Option<i64> {
    value.split(';').next()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_docker_hub_ratelimit_headers() {
        assert_eq!(parse_ratelimit_remaining("100;w=21600"), Some(100));
        assert_eq!(parse_ratelimit_remaining(" 0 "), Some(0));
        assert_eq!(parse_ratelimit_remaining("many"), None);
    }
}
