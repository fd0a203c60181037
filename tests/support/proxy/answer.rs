//! Answers the [`super::FaultProxy`] writes itself rather than relaying the registry's: the
//! injected status, 429 and redirect faults, and the small helpers to drain a request body and
//! write a whole short answer. Kept apart from forwarding so what the proxy *invents* sits in one
//! place.

use std::time::SystemTime;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::connection::InFlight;
use super::rule::{Fault, RetryAfter};
use super::wire::{BodyReader, Framing, Head, Reader};

/// Whether the proxy answers a request with this fault itself, without asking the registry.
pub(super) fn answers_itself(fault: &Fault) -> bool {
    matches!(
        fault,
        Fault::Status(_) | Fault::TooManyRequests(_) | Fault::Redirect { .. }
    )
}

/// The answer to a request `head` for a fault [`answers_itself`] says the proxy gives:
/// status, headers, body. Built once the request body has been drained (a `Retry-After` date
/// counts from then).
pub(super) fn for_fault(fault: &Fault, head: &Head) -> (u16, Vec<(String, String)>, Vec<u8>) {
    match fault {
        Fault::Status(code) => {
            let body = format!(
                r#"{{"errors":[{{"code":"UNKNOWN","message":"injected {code} by the test proxy"}}]}}"#
            );
            let headers = vec![("content-type".into(), "application/json".into())];
            (*code, headers, body.into_bytes())
        }
        Fault::TooManyRequests(after) => {
            let value = match after {
                RetryAfter::Seconds(s) => s.to_string(),
                RetryAfter::DateIn(d) => httpdate::fmt_http_date(SystemTime::now() + *d),
            };
            let headers = vec![
                ("retry-after".into(), value),
                ("content-type".into(), "application/json".into()),
            ];
            let body = br#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}"#;
            (429, headers, body.to_vec())
        }
        Fault::Redirect { base } => {
            let headers = vec![("location".into(), format!("{base}{}", head.second))];
            (307, headers, Vec::new())
        }
        _ => unreachable!("the proxy answers only status, 429 and redirect faults itself"),
    }
}

/// Reads and discards a request body.
pub(super) async fn drain<R: AsyncRead + Unpin>(
    r: &mut Reader<R>,
    framing: Framing,
) -> std::io::Result<()> {
    let mut b = BodyReader::new(framing);
    while b.next(r).await?.is_some() {}
    Ok(())
}

/// Writes a whole small answer.
pub(super) async fn respond<W: AsyncWrite + Unpin>(
    w: &mut W,
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
    flight: &mut InFlight,
) -> std::io::Result<()> {
    let head = Head {
        first: "HTTP/1.1".into(),
        second: status.to_string(),
        third: reason(status).into(),
        headers: headers.to_vec(),
    };
    let mut out = head.encode(Framing::Length(body.len() as u64));
    out.extend_from_slice(body);
    flight.end();
    w.write_all(&out).await?;
    w.flush().await
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        307 => "Temporary Redirect",
        401 => "Unauthorized",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Injected",
    }
}
