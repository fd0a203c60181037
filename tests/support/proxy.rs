//! [`FaultProxy`]: an HTTP/1.1 proxy in front of a real [`TestRegistry`] that breaks chosen
//! requests on purpose, and records every request it saw.
//!
//! The real registry cannot be made to fail on demand, and a scripted server would only fail
//! the way its author imagined a registry works. So faults are injected *between* crossdock and
//! a real distribution: the proxy forwards everything byte for byte except the requests a
//! [`Rule`] picks (by method, path pattern and occurrence), which get a [`Fault`] instead —
//! a reset in the middle of a body (either direction), a 5xx, a 429 with `Retry-After`, a body
//! that stalls, crawls, ends early, is cut short or has one byte flipped, a response lost after
//! the registry committed a PUT, a redirect elsewhere, or a hook run at that moment (to move a
//! tag mid-copy).
//!
//! It is written on raw tokio TCP (with `httparse` for heads) rather than a server framework,
//! because the faults need control that frameworks hide: resetting (RST, not FIN) at a chosen
//! byte, keeping a connection open while sending nothing. It also measures how many requests
//! are in flight at once, which is how the load test checks crossdock's per-registry limits from
//! the outside, and can put a bearer-token challenge (with its own token endpoint) in front of a
//! registry that has no token auth.
//!
//! The proxy runs on its own thread and tokio runtime, so tests may block (run the crossdock
//! binary with `std::process`) while it serves. Each request is forwarded on a fresh upstream
//! connection, which keeps a reset or stall on one request from leaking into the next.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use regex::Regex;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

use super::registry::TestRegistry;
use wire::{BodyReader, Framing, Head, Reader, encode_piece};

mod wire;

/// A hook run by [`Fault::Before`] or [`Fault::After`].
pub(crate) type Hook = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// When a `Retry-After` says to come back.
#[derive(Clone, Debug)]
pub(crate) enum RetryAfter {
    /// Delta-seconds.
    Seconds(u64),
    /// An HTTP-date this far in the future (rounded down to whole seconds by the format).
    DateIn(Duration),
}

/// What happens to a request a [`Rule`] picked.
#[derive(Clone)]
pub(crate) enum Fault {
    /// Answer with this status (and a spec error body) without asking the registry.
    Status(u16),
    /// Answer 429 with this `Retry-After`.
    TooManyRequests(RetryAfter),
    /// Forward, send the response head and `after` bytes of its body, then reset (RST).
    ResetResponse { after: usize },
    /// Forward the request head and `after` bytes of the request body, then reset both sides:
    /// an upload cut off mid-body.
    ResetRequest { after: usize },
    /// Forward, send the head and `after` bytes of the body, then send nothing for `stall`
    /// (keeping the connection open), then reset.
    Stall { after: usize, stall: Duration },
    /// Forward, sending the body in pieces of `piece` bytes with `every` between them.
    Slow { piece: usize, every: Duration },
    /// Forward, send the head unchanged and only `keep` bytes of the body, then close (FIN):
    /// the body is shorter than its `Content-Length` says.
    Truncate { keep: usize },
    /// Forward, but serve only the first `keep` bytes of the body with a `Content-Length` that
    /// matches: a complete HTTP answer with the wrong content.
    Shorten { keep: usize },
    /// Forward with the body byte at offset `at` flipped (xor 0xff).
    FlipByte { at: usize },
    /// Forward the whole request and read the registry's whole answer (so a PUT is committed),
    /// then reset instead of answering.
    LoseResponse,
    /// Answer 307 to `base` + the request's path and query (another origin).
    Redirect { base: String },
    /// Forward without the query string (a mount `POST ?mount=&from=` becomes a plain upload
    /// start, as on a registry that does not mount).
    StripQuery,
    /// Run the hook, then forward.
    Before(Hook),
    /// Forward, run the hook once the registry has answered, then deliver the answer.
    After(Hook),
}

impl Fault {
    /// [`Fault::Before`] from an async closure.
    pub(crate) fn before<F, Fut>(f: F) -> Fault
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        Fault::Before(Arc::new(move || Box::pin(f())))
    }

    /// [`Fault::After`] from an async closure.
    pub(crate) fn after<F, Fut>(f: F) -> Fault
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        Fault::After(Arc::new(move || Box::pin(f())))
    }

    fn name(&self) -> &'static str {
        match self {
            Fault::Status(_) => "status",
            Fault::TooManyRequests(_) => "429",
            Fault::ResetResponse { .. } => "reset-response",
            Fault::ResetRequest { .. } => "reset-request",
            Fault::Stall { .. } => "stall",
            Fault::Slow { .. } => "slow",
            Fault::Truncate { .. } => "truncate",
            Fault::Shorten { .. } => "shorten",
            Fault::FlipByte { .. } => "flip",
            Fault::LoseResponse => "lose-response",
            Fault::Redirect { .. } => "redirect",
            Fault::StripQuery => "strip-query",
            Fault::Before(_) => "before",
            Fault::After(_) => "after",
        }
    }
}

/// Which matching requests a rule fires on (counted from 1, per rule).
#[derive(Clone, Copy, Debug)]
enum When {
    Nth(usize),
    FirstN(usize),
    Always,
}

/// Picks requests by method and path (a regex over the request target: path and query as sent,
/// so `digest=sha256%3A<hex>` on an upload PUT can be matched) and says what to do to them.
/// Fires on the first match unless told otherwise.
#[derive(Clone)]
pub(crate) struct Rule {
    method: Option<String>,
    path: Regex,
    when: When,
    fault: Fault,
}

impl Rule {
    /// Requests with `method` (`"*"`: any) whose target matches the regex `path`, answered
    /// with `fault`.
    pub(crate) fn new(method: &str, path: &str, fault: Fault) -> Rule {
        Rule {
            method: (method != "*").then(|| method.to_ascii_uppercase()),
            path: Regex::new(path).unwrap_or_else(|e| panic!("bad rule path {path:?}: {e}")),
            when: When::Nth(1),
            fault,
        }
    }

    /// Fire on the `n`th matching request only.
    pub(crate) fn nth(mut self, n: usize) -> Rule {
        self.when = When::Nth(n);
        self
    }

    /// Fire on the first `n` matching requests.
    pub(crate) fn times(mut self, n: usize) -> Rule {
        self.when = When::FirstN(n);
        self
    }

    /// Fire on every matching request.
    pub(crate) fn always(mut self) -> Rule {
        self.when = When::Always;
        self
    }

    fn matches(&self, method: &str, target: &str) -> bool {
        self.method.as_deref().is_none_or(|m| m == method) && self.path.is_match(target)
    }
}

/// Counts for one installed rule.
#[derive(Clone, Default)]
pub(crate) struct RuleStats {
    matched: Arc<AtomicUsize>,
    fired: Arc<AtomicUsize>,
}

impl RuleStats {
    /// Requests the rule matched.
    pub(crate) fn matched(&self) -> usize {
        self.matched.load(Ordering::SeqCst)
    }
    /// Requests the fault was applied to.
    pub(crate) fn fired(&self) -> usize {
        self.fired.load(Ordering::SeqCst)
    }
}

/// One request the proxy saw.
#[derive(Clone, Debug)]
pub(crate) struct Seen {
    pub method: String,
    /// Path without query.
    pub path: String,
    pub query: Option<String>,
    /// Every header as received (names lowercase).
    pub headers: Vec<(String, String)>,
    /// When its head arrived.
    pub at: Instant,
    /// The status the client was sent, if an answer was sent.
    pub status: Option<u16>,
    /// The fault applied, if any.
    pub fault: Option<&'static str>,
}

impl Seen {
    /// A header's value (name in any case).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A bearer-token challenge in front of the registry, with the token endpoint served by the
/// proxy itself at `/token`.
struct Gate {
    user: String,
    password: String,
    token: String,
}

struct Shared {
    upstream: SocketAddr,
    rules: Mutex<Vec<(Rule, RuleStats)>>,
    seen: Mutex<Vec<Seen>>,
    in_flight: AtomicUsize,
    peak: AtomicUsize,
    gate: Mutex<Option<Gate>>,
    token_requests: AtomicUsize,
    /// Idle upstream connections.
    pool: Mutex<Vec<Upstream>>,
}

/// A running proxy; stops when dropped.
pub(crate) struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl FaultProxy {
    /// A proxy in front of `registry`.
    pub(crate) fn start(registry: &TestRegistry) -> FaultProxy {
        Self::to(
            format!("127.0.0.1:{}", registry.port())
                .parse()
                .expect("registry address"),
        )
    }

    /// A proxy in front of any HTTP server.
    pub(crate) fn to(upstream: SocketAddr) -> FaultProxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("proxy address");
        let shared = Arc::new(Shared {
            upstream,
            rules: Mutex::default(),
            seen: Mutex::default(),
            in_flight: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            gate: Mutex::default(),
            token_requests: AtomicUsize::new(0),
            pool: Mutex::default(),
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("fault-proxy-{}", addr.port()))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("proxy runtime");
                rt.block_on(async move {
                    let listener = TcpListener::from_std(listener).expect("tokio listener");
                    tokio::select! {
                        _ = accept_loop(listener, s) => {}
                        _ = stopped => {}
                    }
                });
                // Dropping the runtime cancels connections still open (stalls included).
                rt.shutdown_timeout(Duration::from_millis(100));
            })
            .expect("spawn proxy thread");
        FaultProxy {
            addr,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// `127.0.0.1:PORT`, the registry part of references through the proxy.
    pub(crate) fn host(&self) -> String {
        self.addr.to_string()
    }

    pub(crate) fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:PORT`.
    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `HOST/REPO:TAG` or `HOST/REPO@DIGEST` through the proxy.
    pub(crate) fn image_ref(&self, repo: &str, reference: &str) -> String {
        let sep = if reference.contains(':') { '@' } else { ':' };
        format!("{}/{repo}{sep}{reference}", self.host())
    }

    /// Installs a rule (after those already there; the first rule that fires wins).
    pub(crate) fn add(&self, rule: Rule) -> RuleStats {
        let stats = RuleStats::default();
        self.shared
            .rules
            .lock()
            .unwrap()
            .push((rule, stats.clone()));
        stats
    }

    /// Removes every rule.
    pub(crate) fn clear_rules(&self) {
        self.shared.rules.lock().unwrap().clear();
    }

    /// Every request seen so far.
    pub(crate) fn requests(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }

    /// The most requests that were in flight at once (head received, answer not yet handed
    /// over in full).
    pub(crate) fn peak_in_flight(&self) -> usize {
        self.shared.peak.load(Ordering::SeqCst)
    }

    /// Requires `Authorization: Bearer <token>` on every `/v2/` request (401 with a Bearer
    /// challenge otherwise; the header is removed before forwarding), and serves the realm at
    /// `/token`, which grants `token` to Basic `user:password` only.
    pub(crate) fn require_bearer(&self, user: &str, password: &str, token: &str) {
        *self.shared.gate.lock().unwrap() = Some(Gate {
            user: user.into(),
            password: password.into(),
            token: token.into(),
        });
    }

    /// Token requests the realm answered.
    pub(crate) fn token_requests(&self) -> usize {
        self.shared.token_requests.load(Ordering::SeqCst)
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
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
struct InFlight {
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

    fn end(&mut self) {
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
enum Next {
    KeepAlive,
    Close,
    Reset,
}

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
fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}

type Record<'a> = dyn Fn(Option<u16>, Option<&'static str>) + Send + Sync + 'a;

async fn handle<R, W>(
    shared: &Arc<Shared>,
    client_r: &mut Reader<R>,
    client_w: &mut W,
    mut head: Head,
    path: &str,
    flight: &mut InFlight,
    record: &Record<'_>,
) -> std::io::Result<Next>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let method = head.first.clone();
    let request_framing = head.framing(false, &method);

    // The bearer gate and its realm.
    let gate_answer = {
        let gate = shared.gate.lock().unwrap();
        gate.as_ref().and_then(|g| {
            if path == "/token" {
                shared.token_requests.fetch_add(1, Ordering::SeqCst);
                let want = format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD
                        .encode(format!("{}:{}", g.user, g.password))
                );
                return Some(if head.get("authorization") == Some(want.as_str()) {
                    (
                        200,
                        vec![("content-type".to_string(), "application/json".to_string())],
                        format!(r#"{{"token":"{}","expires_in":300}}"#, g.token),
                    )
                } else {
                    (401, Vec::new(), r#"{"details":"bad credentials"}"#.into())
                });
            }
            if head.get("authorization") == Some(format!("Bearer {}", g.token).as_str()) {
                return None;
            }
            let host = head.get("host").unwrap_or("127.0.0.1").to_string();
            Some((
                401,
                vec![(
                    "www-authenticate".to_string(),
                    format!(r#"Bearer realm="http://{host}/token",service="crossdock-test""#),
                )],
                r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#
                    .into(),
            ))
        })
    };
    let gated = shared.gate.lock().unwrap().is_some();
    if let Some((status, headers, body)) = gate_answer {
        drain(client_r, request_framing).await?;
        record(Some(status), None);
        respond(client_w, status, &headers, body.as_bytes(), flight).await?;
        return Ok(Next::KeepAlive);
    }
    if gated {
        head.remove("authorization");
    }

    let fault = {
        let rules = shared.rules.lock().unwrap();
        let mut chosen = None;
        for (rule, stats) in rules.iter() {
            if !rule.matches(&method, &head.second) {
                continue;
            }
            let n = stats.matched.fetch_add(1, Ordering::SeqCst) + 1;
            let fires = match rule.when {
                When::Nth(k) => n == k,
                When::FirstN(k) => n <= k,
                When::Always => true,
            };
            if fires && chosen.is_none() {
                stats.fired.fetch_add(1, Ordering::SeqCst);
                chosen = Some(rule.fault.clone());
            }
        }
        chosen
    };
    let fault_name = fault.as_ref().map(Fault::name);

    // Faults answered by the proxy itself.
    match &fault {
        Some(Fault::Status(code)) => {
            drain(client_r, request_framing).await?;
            record(Some(*code), fault_name);
            let body = format!(
                r#"{{"errors":[{{"code":"UNKNOWN","message":"injected {code} by the test proxy"}}]}}"#
            );
            let headers = vec![("content-type".into(), "application/json".into())];
            respond(client_w, *code, &headers, body.as_bytes(), flight).await?;
            return Ok(Next::KeepAlive);
        }
        Some(Fault::TooManyRequests(after)) => {
            drain(client_r, request_framing).await?;
            record(Some(429), fault_name);
            let value = match after {
                RetryAfter::Seconds(s) => s.to_string(),
                RetryAfter::DateIn(d) => httpdate::fmt_http_date(SystemTime::now() + *d),
            };
            let headers = vec![
                ("retry-after".into(), value),
                ("content-type".into(), "application/json".into()),
            ];
            let body = br#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}"#;
            respond(client_w, 429, &headers, body, flight).await?;
            return Ok(Next::KeepAlive);
        }
        Some(Fault::Redirect { base }) => {
            drain(client_r, request_framing).await?;
            record(Some(307), fault_name);
            let headers = vec![("location".into(), format!("{base}{}", head.second))];
            respond(client_w, 307, &headers, b"", flight).await?;
            return Ok(Next::KeepAlive);
        }
        Some(Fault::Before(hook)) => hook().await,
        Some(Fault::StripQuery) => head.second = path.to_string(),
        _ => {}
    }

    // Forward the request. Bodyless requests reuse idle upstream connections (the load test
    // sends thousands); the others, and any a fault may cut, get a fresh one.
    let out_framing = match request_framing {
        Framing::Close => Framing::None,
        f => f,
    };
    let head_bytes = head.encode(out_framing);
    let pool_ok = matches!(request_framing, Framing::None | Framing::Length(0))
        && matches!(
            &fault,
            None | Some(Fault::Before(_) | Fault::After(_) | Fault::StripQuery)
        );
    let pooled = if pool_ok {
        shared.pool.lock().unwrap().pop()
    } else {
        None
    };
    let (mut up, uw, resp_bytes) = match pooled {
        // A pooled connection the registry has closed since fails at once: try a fresh one.
        Some(conn) => match exchange_head(conn, &head_bytes).await {
            Ok(x) => x,
            Err(_) => exchange_head(connect(shared).await?, &head_bytes).await?,
        },
        None if pool_ok => exchange_head(connect(shared).await?, &head_bytes).await?,
        None => {
            let Upstream {
                r: mut up,
                w: mut uw,
            } = connect(shared).await?;
            uw.write_all(&head_bytes).await?;
            let mut body = BodyReader::new(request_framing);
            let mut sent = 0usize;
            while let Some(piece) = body.next(client_r).await? {
                if let Some(Fault::ResetRequest { after }) = &fault
                    && sent + piece.len() >= *after
                {
                    let n = after - sent;
                    uw.write_all(&encode_piece(out_framing, &piece[..n]))
                        .await?;
                    uw.flush().await?;
                    record(None, fault_name);
                    reset(up.inner.reunite(uw).expect("halves of one stream"));
                    return Ok(Next::Reset);
                }
                sent += piece.len();
                uw.write_all(&encode_piece(out_framing, &piece)).await?;
            }
            if out_framing == Framing::Chunked {
                uw.write_all(b"0\r\n\r\n").await?;
            }
            uw.flush().await?;
            let Some(resp_bytes) = up.head().await? else {
                return Err(std::io::Error::other("upstream closed without answering"));
            };
            (up, uw, resp_bytes)
        }
    };
    let resp = Head::response(&resp_bytes)?;
    let status = resp.status();
    let framing = resp.framing(true, &method);

    match &fault {
        Some(Fault::After(hook)) => hook().await,
        Some(Fault::LoseResponse) => {
            let mut b = BodyReader::new(framing);
            while b.next(&mut up).await?.is_some() {}
            record(None, fault_name);
            return Ok(Next::Reset);
        }
        _ => {}
    }
    record(Some(status), fault_name);

    // Relay the answer, applying a body fault if there is one.
    let client_framing = match (&fault, framing) {
        (Some(Fault::Shorten { keep }), Framing::Length(n)) => {
            Framing::Length((*keep as u64).min(n))
        }
        (_, f) => f,
    };
    let mut pending: Vec<u8> = resp.encode(client_framing);
    let mut b = BodyReader::new(framing);
    let mut offset = 0usize;
    loop {
        let piece = match b.next(&mut up).await? {
            Some(p) => p,
            None => break,
        };
        let mut piece = piece.to_vec();
        let start = offset;
        offset += piece.len();
        match &fault {
            Some(Fault::FlipByte { at }) if (start..offset).contains(at) => {
                piece[at - start] ^= 0xff;
            }
            Some(Fault::ResetResponse { after }) if offset >= *after => {
                pending.extend(encode_piece(client_framing, &piece[..after - start]));
                client_w.write_all(&pending).await?;
                client_w.flush().await?;
                return Ok(Next::Reset);
            }
            Some(Fault::Stall { after, stall }) if offset >= *after => {
                pending.extend(encode_piece(client_framing, &piece[..after - start]));
                client_w.write_all(&pending).await?;
                client_w.flush().await?;
                tokio::time::sleep(*stall).await;
                return Ok(Next::Reset);
            }
            Some(Fault::Truncate { keep }) if offset >= *keep => {
                pending.extend(encode_piece(client_framing, &piece[..keep - start]));
                client_w.write_all(&pending).await?;
                client_w.flush().await?;
                return Ok(Next::Close);
            }
            Some(Fault::Shorten { keep }) if offset >= *keep => {
                pending.extend(encode_piece(client_framing, &piece[..keep - start]));
                if client_framing == Framing::Chunked {
                    pending.extend_from_slice(b"0\r\n\r\n");
                }
                flight.end();
                client_w.write_all(&pending).await?;
                client_w.flush().await?;
                // The rest of the upstream body is not read: this upstream connection ends.
                return Ok(Next::KeepAlive);
            }
            Some(Fault::Slow { piece: size, every }) => {
                client_w.write_all(&std::mem::take(&mut pending)).await?;
                client_w.flush().await?;
                let mut rest: &[u8] = &piece;
                while !rest.is_empty() {
                    let n = rest.len().min(*size);
                    tokio::time::sleep(*every).await;
                    client_w
                        .write_all(&encode_piece(client_framing, &rest[..n]))
                        .await?;
                    client_w.flush().await?;
                    rest = &rest[n..];
                }
                continue;
            }
            _ => {}
        }
        // Hold back the newest piece so that the in-flight count ends before the last write.
        if !pending.is_empty() {
            client_w.write_all(&pending).await?;
        }
        pending = encode_piece(client_framing, &piece);
    }
    if client_framing == Framing::Chunked {
        pending.extend_from_slice(b"0\r\n\r\n");
    }
    flight.end();
    client_w.write_all(&pending).await?;
    client_w.flush().await?;
    let upstream_closes = resp
        .get("connection")
        .is_some_and(|v| v.eq_ignore_ascii_case("close"));
    if pool_ok && framing != Framing::Close && !upstream_closes {
        shared.pool.lock().unwrap().push(Upstream { r: up, w: uw });
    }
    Ok(if framing == Framing::Close {
        Next::Close
    } else {
        Next::KeepAlive
    })
}

/// A connection to the registry.
struct Upstream {
    r: Reader<OwnedReadHalf>,
    w: OwnedWriteHalf,
}

async fn connect(shared: &Shared) -> std::io::Result<Upstream> {
    let stream = TcpStream::connect(shared.upstream).await?;
    stream.set_nodelay(true)?;
    let (r, w) = stream.into_split();
    Ok(Upstream {
        r: Reader::new(r),
        w,
    })
}

/// Sends a bodyless request head and reads the answer's head.
async fn exchange_head(
    conn: Upstream,
    head: &[u8],
) -> std::io::Result<(Reader<OwnedReadHalf>, OwnedWriteHalf, bytes::Bytes)> {
    let Upstream { mut r, mut w } = conn;
    w.write_all(head).await?;
    w.flush().await?;
    match r.head().await? {
        Some(h) => Ok((r, w, h)),
        None => Err(std::io::Error::other("upstream closed without answering")),
    }
}

/// Reads and discards a request body.
async fn drain<R: AsyncRead + Unpin>(r: &mut Reader<R>, framing: Framing) -> std::io::Result<()> {
    let mut b = BodyReader::new(framing);
    while b.next(r).await?.is_some() {}
    Ok(())
}

/// Writes a whole small answer.
async fn respond<W: AsyncWrite + Unpin>(
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
