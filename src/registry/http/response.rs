//! From what came back (or did not) to a classified [`RegistryError`], and reading bodies safely.
//!
//! A registry's answer to a request we did not expect it to answer that way becomes an error
//! carrying the status, the URL, the spec error entries (`{"errors":[{code,message,detail}]}`)
//! and, when the body is not that JSON (a proxy's HTML page, distribution's `404 page not
//! found`), a short excerpt of it. Bodies are read with a cap: an error body, a manifest or a tag
//! list that never ends must not exhaust memory.
//!
//! URLs in errors and logs lose their query string: upload locations carry distribution's
//! `_state` token there, and object-storage redirects carry pre-signed credentials.

use std::error::Error as StdError;
use std::io;
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use url::Url;

use super::super::error::RegistryErrorBody;
use super::super::retry::parse_retry_after;
use super::super::{ErrorKind, RegistryError};
use crate::digest::{DigestError, VerifyError};

/// The most of an error body we read.
pub(super) const ERROR_BODY_LIMIT: usize = 64 * 1024;
/// The most of a non-JSON error body we quote.
const EXCERPT_CHARS: usize = 300;

/// `url` without userinfo and query, fit for errors and logs.
pub(super) fn display_url(url: &Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.set_fragment(None);
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.to_string()
}

/// The kind of a spec error code, when the code alone decides it.
fn code_kind(code: &str) -> Option<ErrorKind> {
    Some(match code {
        "BLOB_UNKNOWN" | "MANIFEST_UNKNOWN" | "NAME_UNKNOWN" | "BLOB_UPLOAD_UNKNOWN" => {
            ErrorKind::NotFound
        }
        "UNAUTHORIZED" => ErrorKind::Unauthorized,
        "DENIED" => ErrorKind::Denied,
        "TOOMANYREQUESTS" => ErrorKind::RateLimited,
        "DIGEST_INVALID" | "SIZE_INVALID" => ErrorKind::DigestInvalid,
        "MANIFEST_BLOB_UNKNOWN" => ErrorKind::ManifestBlobUnknown,
        "UNSUPPORTED" => ErrorKind::Unsupported,
        _ => return None,
    })
}

/// Classifies an unexpected status with the registry's error codes. 429 and 5xx decide alone
/// (they must stay retryable whatever the body says); otherwise MANIFEST_BLOB_UNKNOWN anywhere,
/// then the first code with a meaning, then the status.
pub(super) fn classify(status: u16, errors: &[RegistryErrorBody]) -> ErrorKind {
    match status {
        429 => return ErrorKind::RateLimited,
        500..=599 => return ErrorKind::ServerError,
        _ => {}
    }
    // A missing child decides over the codes around it: distribution 2.8 reports a child it
    // could not read (its link file read while another PUT rewrote it) as DIGEST_INVALID
    // followed by MANIFEST_BLOB_UNKNOWN, and that race is what a manifest retry settles.
    if errors.iter().any(|e| e.code == "MANIFEST_BLOB_UNKNOWN") {
        return ErrorKind::ManifestBlobUnknown;
    }
    if let Some(kind) = errors.iter().find_map(|e| code_kind(&e.code)) {
        return kind;
    }
    match status {
        401 => ErrorKind::Unauthorized,
        403 => ErrorKind::Denied,
        404 => ErrorKind::NotFound,
        405 => ErrorKind::Unsupported,
        _ => ErrorKind::Invalid,
    }
}

/// The entries of a spec error body; empty when the body is not one.
pub(super) fn parse_error_body(body: &[u8]) -> Vec<RegistryErrorBody> {
    #[derive(serde::Deserialize)]
    struct Errors {
        #[serde(default)]
        errors: Vec<RegistryErrorBody>,
    }
    serde_json::from_slice::<Errors>(body)
        .map(|e| e.errors)
        .unwrap_or_default()
}

/// A short one-line quote of a body for humans.
pub(super) fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out: String = text
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(EXCERPT_CHARS + 1)
        .collect();
    if out.chars().count() > EXCERPT_CHARS {
        out = out.chars().take(EXCERPT_CHARS).collect();
        out.push('…');
    }
    out
}

/// A body read up to a limit.
pub(super) struct Bounded {
    /// At most `limit` bytes.
    pub bytes: Bytes,
    /// The body had more than `limit` bytes (the rest was not read).
    pub over_limit: bool,
}

/// Reads `resp`'s body, at most `limit` bytes, waiting at most `idle` for each chunk.
pub(super) async fn read_bounded(
    op: &'static str,
    resp: &mut reqwest::Response,
    limit: usize,
    idle: Duration,
) -> Result<Bounded, RegistryError> {
    let url = resp.url().clone();
    let mut buf = BytesMut::new();
    loop {
        let chunk = tokio::time::timeout(idle, resp.chunk())
            .await
            .map_err(|_| {
                RegistryError::new(ErrorKind::Transport, op, display_url(&url))
                    .with_message(format!("response body stalled for {idle:?}"))
            })?
            .map_err(|e| request_error(op, &url, e))?;
        let Some(chunk) = chunk else {
            return Ok(Bounded {
                bytes: buf.freeze(),
                over_limit: false,
            });
        };
        if buf.len() + chunk.len() > limit {
            let room = limit - buf.len();
            buf.extend_from_slice(&chunk[..room]);
            return Ok(Bounded {
                bytes: buf.freeze(),
                over_limit: true,
            });
        }
        buf.extend_from_slice(&chunk);
    }
}

/// The error for a response whose status the call did not expect. Reads at most
/// [`ERROR_BODY_LIMIT`] of the body.
pub(super) async fn error_from_response(
    op: &'static str,
    mut resp: reqwest::Response,
    idle: Duration,
) -> RegistryError {
    let status = resp.status().as_u16();
    let url = display_url(resp.url());
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()));
    // A body we cannot read still leaves the status to classify by.
    let body = read_bounded(op, &mut resp, ERROR_BODY_LIMIT, idle)
        .await
        .map(|b| b.bytes)
        .unwrap_or_default();
    let errors = parse_error_body(&body);
    let mut err = RegistryError::new(classify(status, &errors), op, url).with_status(status);
    err.retry_after = retry_after;
    if errors.is_empty() && !body.is_empty() {
        err.message = excerpt(&body);
    }
    err.errors = errors.into();
    err
}

/// The content error behind a failed request body, if a [`crate::digest::VerifyingStream`]
/// refused it: searched through the whole source chain (reqwest → hyper → our `io::Error`).
pub(super) fn find_digest_error(err: &(dyn StdError + 'static)) -> Option<DigestError> {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<io::Error>()
            && let Some(d) = VerifyError::digest_error(io)
        {
            return Some(d.clone());
        }
        if let Some(VerifyError::Content(d)) = e.downcast_ref::<VerifyError>() {
            return Some(d.clone());
        }
        cur = e.source();
    }
    None
}

/// `err` and its causes, joined, for a message.
fn chain_text(err: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur = Some(err);
    while let Some(e) = cur {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = e.source();
    }
    parts.join(": ")
}

/// The error for a request that got no usable response: a content error when our own body
/// stream refused the content, else a transport error (connect, TLS, reset, timeout).
pub(super) fn request_error(op: &'static str, url: &Url, e: reqwest::Error) -> RegistryError {
    // reqwest's Display would print the full URL, query included.
    let e = e.without_url();
    if let Some(d) = find_digest_error(&e) {
        return RegistryError::new(ErrorKind::DigestInvalid, op, display_url(url))
            .with_message(d.to_string())
            .with_source(d);
    }
    let kind = if e.is_builder() {
        ErrorKind::Invalid
    } else {
        ErrorKind::Transport
    };
    let mut message = chain_text(&e);
    if e.is_timeout() && !message.contains("timed out") {
        message.push_str(" (timed out)");
    }
    RegistryError::new(kind, op, display_url(url))
        .with_message(message)
        .with_source(e)
}

/// The error for a blob body stream (ours to upload) that failed: the digest or size mismatch
/// when a verifying stream refused it, else the read error (a transport fault at the source).
pub(super) fn body_error(op: &'static str, url: &Url, e: io::Error) -> RegistryError {
    if let Some(d) = find_digest_error(&e) {
        return RegistryError::new(ErrorKind::DigestInvalid, op, display_url(url))
            .with_message(d.to_string())
            .with_source(d);
    }
    RegistryError::new(ErrorKind::Transport, op, display_url(url))
        .with_message(format!("reading the blob to upload: {}", chain_text(&e)))
        .with_source(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;

    fn entry(code: &str) -> RegistryErrorBody {
        RegistryErrorBody {
            code: code.into(),
            message: String::new(),
            detail: None,
        }
    }

    #[test]
    fn classifies_by_code_then_status() {
        let table: &[(u16, &[&str], ErrorKind)] = &[
            (404, &["MANIFEST_UNKNOWN"], ErrorKind::NotFound),
            (404, &["NAME_UNKNOWN"], ErrorKind::NotFound),
            (404, &["BLOB_UNKNOWN"], ErrorKind::NotFound),
            (404, &[], ErrorKind::NotFound),
            (401, &["UNAUTHORIZED"], ErrorKind::Unauthorized),
            (401, &[], ErrorKind::Unauthorized),
            (403, &["DENIED"], ErrorKind::Denied),
            (403, &["TOOMANYREQUESTS"], ErrorKind::RateLimited),
            (429, &["DENIED"], ErrorKind::RateLimited),
            (400, &["DIGEST_INVALID"], ErrorKind::DigestInvalid),
            (400, &["SIZE_INVALID"], ErrorKind::DigestInvalid),
            (
                400,
                &["MANIFEST_BLOB_UNKNOWN"],
                ErrorKind::ManifestBlobUnknown,
            ),
            (400, &["MANIFEST_INVALID"], ErrorKind::Invalid),
            (
                400,
                &["MANIFEST_INVALID", "MANIFEST_BLOB_UNKNOWN"],
                ErrorKind::ManifestBlobUnknown,
            ),
            // distribution 2.8, an index PUT racing an identical one (seen in CI).
            (
                400,
                &["DIGEST_INVALID", "MANIFEST_BLOB_UNKNOWN"],
                ErrorKind::ManifestBlobUnknown,
            ),
            (405, &[], ErrorKind::Unsupported),
            (400, &["UNSUPPORTED"], ErrorKind::Unsupported),
            (500, &["UNKNOWN"], ErrorKind::ServerError),
            (503, &["NAME_UNKNOWN"], ErrorKind::ServerError),
            (418, &[], ErrorKind::Invalid),
        ];
        for (status, codes, want) in table {
            let errors: Vec<_> = codes.iter().map(|c| entry(c)).collect();
            assert_eq!(classify(*status, &errors), *want, "{status} {codes:?}");
        }
    }

    #[test]
    fn parses_spec_error_bodies_only() {
        let body = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"x"}}]}"#;
        let e = parse_error_body(body);
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].code, "MANIFEST_UNKNOWN");
        assert!(e[0].detail.is_some());
        assert!(parse_error_body(b"404 page not found\n").is_empty());
        assert!(parse_error_body(b"<html>").is_empty());
    }

    #[test]
    fn excerpts_are_short_and_on_one_line() {
        assert_eq!(excerpt(b"404 page not found\n"), "404 page not found");
        let long = "x ".repeat(1000);
        let e = excerpt(long.as_bytes());
        assert_eq!(e.chars().count(), EXCERPT_CHARS + 1);
        assert!(e.ends_with('…'));
        assert!(!excerpt(b"<html>\n<body>\tBad gateway</body>").contains('\n'));
    }

    #[test]
    fn display_url_drops_query_and_userinfo() {
        let u = Url::parse("https://u:p@r.example/v2/a/blobs/uploads/x?_state=SECRET&digest=d")
            .unwrap();
        assert_eq!(display_url(&u), "https://r.example/v2/a/blobs/uploads/x");
    }

    #[test]
    fn finds_a_digest_error_inside_wrapped_io_errors() {
        let d = Digest::sha256_of(b"a");
        let content = DigestError::SizeMismatch {
            digest: d,
            expected: 1,
            actual: 2,
        };
        let io = io::Error::other(VerifyError::Content(content.clone()));
        // As a streaming request body error reaches us: boxed, behind another error.
        #[derive(Debug, thiserror::Error)]
        #[error("body failed")]
        struct Outer(#[source] Box<dyn StdError + Send + Sync>);
        let outer = Outer(Box::new(io));
        assert_eq!(find_digest_error(&outer), Some(content));
        let plain = Outer(Box::new(io::Error::other("reset")));
        assert_eq!(find_digest_error(&plain), None);
    }
}
