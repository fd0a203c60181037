//! What the [`super::FaultProxy`] does to which request: a [`Rule`] picks requests (by method,
//! path pattern and occurrence) and names the [`Fault`] they get; [`RuleStats`] count what it
//! matched and fired on. Kept apart from the wire so a test reads the whole vocabulary of faults
//! in one place, and so the choice of a fault is one function ([`pick`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use regex::Regex;

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

    pub(super) fn name(&self) -> &'static str {
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

/// The fault for a request with `method` and `target`: every matching rule counts the match,
/// the first that fires wins (and counts the firing).
pub(super) fn pick(rules: &[(Rule, RuleStats)], method: &str, target: &str) -> Option<Fault> {
    let mut chosen = None;
    for (rule, stats) in rules {
        if !rule.matches(method, target) {
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
}
