//! One request through the [`super::FaultProxy`], step by step: the bearer gate, the choice of
//! a fault, the answers the proxy gives itself, then forwarding to the registry
//! ([`super::forward`]) and relaying its answer ([`super::relay`]). [`Exchange`] carries what
//! every step needs (the client's two halves, the in-flight count, the request's record) so
//! that each step is one small method.

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};

use super::Shared;
use super::answer::{self, drain, respond};
use super::connection::{InFlight, Next, Record};
use super::rule::{self, Fault};
use super::wire::{Framing, Head, Reader};

/// Handles one request whose `head` has been read (its `path` is the target without query),
/// and says what to do with the client connection afterwards.
pub(super) async fn handle<R, W>(
    shared: &Arc<Shared>,
    client_r: &mut Reader<R>,
    client_w: &mut W,
    head: Head,
    path: &str,
    flight: &mut InFlight,
    record: &Record<'_>,
) -> std::io::Result<Next>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    Exchange {
        shared,
        client_r,
        client_w,
        flight,
        record,
    }
    .run(head, path)
    .await
}

/// One request being handled: where it came from and what is recorded about it.
pub(super) struct Exchange<'a, R, W> {
    pub(super) shared: &'a Arc<Shared>,
    pub(super) client_r: &'a mut Reader<R>,
    pub(super) client_w: &'a mut W,
    pub(super) flight: &'a mut InFlight,
    pub(super) record: &'a Record<'a>,
}

impl<R, W> Exchange<'_, R, W>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    async fn run(&mut self, mut head: Head, path: &str) -> std::io::Result<Next> {
        let method = head.first.clone();
        let request_framing = head.framing(false, &method);
        if let Some(next) = self.gate(&mut head, path, request_framing).await? {
            return Ok(next);
        }

        let fault = rule::pick(&self.shared.rules.lock().unwrap(), &method, &head.second);
        let fault_name = fault.as_ref().map(Fault::name);

        // Faults answered by the proxy itself, and those that act before forwarding.
        match &fault {
            Some(f) if answer::answers_itself(f) => {
                drain(self.client_r, request_framing).await?;
                let (status, headers, body) = answer::for_fault(f, &head);
                return self.reply(status, &headers, &body, fault_name).await;
            }
            Some(Fault::Before(hook)) => hook().await,
            Some(Fault::StripQuery) => head.second = path.to_string(),
            _ => {}
        }

        // Bodyless requests reuse idle upstream connections (the load test sends thousands);
        // the others, and any a fault may cut, get a fresh one.
        let pool_ok = matches!(request_framing, Framing::None | Framing::Length(0))
            && matches!(
                &fault,
                None | Some(Fault::Before(_) | Fault::After(_) | Fault::StripQuery)
            );
        let Some(answered) = self
            .forward(&head, request_framing, fault.as_ref(), fault_name, pool_ok)
            .await?
        else {
            return Ok(Next::Reset);
        };
        self.relay(answered, &method, fault.as_ref(), fault_name, pool_ok)
            .await
    }

    /// The bearer gate and its realm: answers a request the gate stops (or the realm serves)
    /// and takes the token off one it lets through. `None`: go on.
    async fn gate(
        &mut self,
        head: &mut Head,
        path: &str,
        request_framing: Framing,
    ) -> std::io::Result<Option<Next>> {
        let gate_answer = {
            let gate = self.shared.gate.lock().unwrap();
            gate.as_ref()
                .and_then(|g| g.answer(path, head, &self.shared.token_requests))
        };
        let gated = self.shared.gate.lock().unwrap().is_some();
        if let Some((status, headers, body)) = gate_answer {
            drain(self.client_r, request_framing).await?;
            return self
                .reply(status, &headers, body.as_bytes(), None)
                .await
                .map(Some);
        }
        if gated {
            head.remove("authorization");
        }
        Ok(None)
    }

    /// Records and writes an answer the proxy gives itself; the connection stays open.
    async fn reply(
        &mut self,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
        fault_name: Option<&'static str>,
    ) -> std::io::Result<Next> {
        (self.record)(Some(status), fault_name);
        respond(self.client_w, status, headers, body, self.flight).await?;
        Ok(Next::KeepAlive)
    }
}
