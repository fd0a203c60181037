//! The [`super::FaultProxy`]'s client side: accepting connections, reading request heads one
//! after another on each (keep-alive), recording every request as [`super::Seen`], counting
//! requests in flight ([`InFlight`]), and ending the connection the way the handled request
//! says ([`Next`]: keep alive, close with FIN, or reset with RST).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use super::handle::handle;
use super::wire::{Head, Reader};
use super::{Seen, Shared};

pub(super) async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let _ = serve_connection(stream, shared).await;
        });
    }
}

/// Counts a request as in flight until dropped or [`InFlight::end`].
pub(super) struct InFlight {
    shared: Arc<Shared>,
    live: bool,
}

impl InFlight {
    fn start(shared: &Arc<Shared>) -> InFlight {
        let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        shared.peak.fetch_max(now, Ordering::SeqCst);
        InFlight {
            shared: shared.clone(),
            live: true,
        }
    }

    pub(super) fn end(&mut self) {
        if std::mem::take(&mut self.live) {
            self.shared.in_flight.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.end();
    }
}

/// What to do with the client connection after a request.
pub(super) enum Next {
    KeepAlive,
    Close,
    Reset,
}

/// Sets the status sent and the fault applied on the request's [`Seen`] record.
pub(super) type Record<'a> = dyn Fn(Option<u16>, Option<&'static str>) + Send + Sync + 'a;

async fn serve_connection(client: TcpStream, shared: Arc<Shared>) -> std::io::Result<()> {
    client.set_nodelay(true)?;
    let (r, mut w) = client.into_split();
    let mut reader = Reader::new(r);
    loop {
        let Some(head_bytes) = reader.head().await? else {
            return Ok(());
        };
        let head = Head::request(&head_bytes)?;
        let mut flight = InFlight::start(&shared);
        let (path, query) = match head.second.split_once('?') {
            Some((p, q)) => (p.to_string(), Some(q.to_string())),
            None => (head.second.clone(), None),
        };
        let index = {
            let mut seen = shared.seen.lock().unwrap();
            seen.push(Seen {
                method: head.first.clone(),
                path: path.clone(),
                query: query.clone(),
                headers: head.headers.clone(),
                at: Instant::now(),
                status: None,
                fault: None,
            });
            seen.len() - 1
        };
        let record = |status: Option<u16>, fault: Option<&'static str>| {
            let mut seen = shared.seen.lock().unwrap();
            seen[index].status = status;
            seen[index].fault = fault;
        };
        let wants_close = head
            .get("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let next = handle(
            &shared,
            &mut reader,
            &mut w,
            head,
            &path,
            &mut flight,
            &record,
        )
        .await;
        flight.end();
        match next {
            Ok(Next::KeepAlive) if !wants_close => {}
            Ok(Next::Reset) => {
                let client = reader.inner.reunite(w).expect("halves of one stream");
                reset(client);
                return Ok(());
            }
            Ok(_) => {
                let _ = w.shutdown().await;
                return Ok(());
            }
            Err(e) => return Err(e),
        }
    }
}

/// Closes with RST rather than FIN.
pub(super) fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}
