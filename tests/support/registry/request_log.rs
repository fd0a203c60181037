//! The registry's access log read back as the test's request log: [`LoggedRequest`] (one
//! parsed line), [`RequestKind`] (which API route it hit), [`RequestMark`] (a position), and
//! the [`TestRegistry`] methods that read it after making sure the log has caught up with
//! everything answered so far. It is what the server actually saw, independent of any
//! client-side counting.

use std::fs;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::TestRegistry;
use super::process::http_status;

/// Path prefix of the harness's own marker requests in the access log; never reported.
const SYNC_PATH: &str = "/_crossdock_harness_sync/";

static SYNC_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A position in the request log; see [`TestRegistry::request_mark`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RequestMark(pub(super) usize);

/// One line of the registry's access log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LoggedRequest {
    pub method: String,
    /// Request path without the query string, e.g. `/v2/app/manifests/latest`.
    pub path: String,
    /// The query string without `?`, if any.
    pub query: Option<String>,
    pub status: u16,
    /// Response body bytes the server wrote (0 for HEAD).
    pub bytes: u64,
    pub user_agent: String,
}

/// What a logged request was, by route of the distribution API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum RequestKind {
    /// `/v2/` (API version check / auth probe).
    Base,
    Catalog,
    /// `/v2/<repo>/tags/list`.
    TagList {
        repo: String,
    },
    /// `/v2/<repo>/manifests/<reference>`.
    Manifest {
        repo: String,
        reference: String,
    },
    /// `/v2/<repo>/blobs/uploads/...` (POST start/mount, PATCH, PUT finish, GET, DELETE).
    Upload {
        repo: String,
    },
    /// `/v2/<repo>/blobs/<digest>`.
    Blob {
        repo: String,
        digest: String,
    },
    Other,
}

impl LoggedRequest {
    /// Parse one combined-log-format line as distribution writes it:
    /// `127.0.0.1 - - [26/Nov/2026:15:11:23 +0000] "GET /v2/ HTTP/1.1" 200 2 "" "ua"`.
    pub(crate) fn parse(line: &str) -> Option<LoggedRequest> {
        let (_, rest) = line.split_once("] \"")?;
        let (request, rest) = rest.split_once("\" ")?;
        let mut request = request.split(' ');
        let method = request.next()?.to_owned();
        let uri = request.next()?;
        let mut rest_fields = rest.split(' ');
        let status = rest_fields.next()?.parse().ok()?;
        let bytes = rest_fields.next()?.parse().unwrap_or(0);
        // The user agent is the last quoted field.
        let user_agent = rest
            .trim_end()
            .strip_suffix('"')
            .and_then(|s| s.rsplit_once('"'))
            .map(|(_, ua)| ua.to_owned())
            .unwrap_or_default();
        let (path, query) = match uri.split_once('?') {
            Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
            None => (uri.to_owned(), None),
        };
        Some(LoggedRequest {
            method,
            path,
            query,
            status,
            bytes,
            user_agent,
        })
    }

    /// Which API route this request hit. Repository names may contain `/`, so the route is
    /// recognised from the end of the path.
    pub(crate) fn kind(&self) -> RequestKind {
        let Some(rest) = self.path.strip_prefix("/v2/") else {
            return RequestKind::Other;
        };
        if rest.is_empty() {
            return RequestKind::Base;
        }
        if rest == "_catalog" {
            return RequestKind::Catalog;
        }
        if let Some(repo) = rest.strip_suffix("/tags/list") {
            return RequestKind::TagList {
                repo: repo.to_owned(),
            };
        }
        if let Some((repo, _)) = rest.split_once("/blobs/uploads") {
            return RequestKind::Upload {
                repo: repo.to_owned(),
            };
        }
        if let Some((repo, reference)) = rest.rsplit_once("/manifests/") {
            return RequestKind::Manifest {
                repo: repo.to_owned(),
                reference: reference.to_owned(),
            };
        }
        if let Some((repo, digest)) = rest.rsplit_once("/blobs/") {
            return RequestKind::Blob {
                repo: repo.to_owned(),
                digest: digest.to_owned(),
            };
        }
        RequestKind::Other
    }

    /// Shorthand for assertions: `r.is("HEAD", RequestKind::is_manifest)`.
    pub(crate) fn is(&self, method: &str, kind: impl Fn(&RequestKind) -> bool) -> bool {
        self.method == method && kind(&self.kind())
    }
}

impl RequestKind {
    pub(crate) fn is_manifest(&self) -> bool {
        matches!(self, RequestKind::Manifest { .. })
    }
    pub(crate) fn is_blob(&self) -> bool {
        matches!(self, RequestKind::Blob { .. })
    }
    pub(crate) fn is_upload(&self) -> bool {
        matches!(self, RequestKind::Upload { .. })
    }
    pub(crate) fn is_tag_list(&self) -> bool {
        matches!(self, RequestKind::TagList { .. })
    }
}

impl TestRegistry {
    /// Every request since start (or since [`clear_requests`](Self::clear_requests)), in log
    /// order. Waits until the log has caught up with everything answered so far.
    pub(crate) fn requests(&self) -> Vec<LoggedRequest> {
        let baseline = *self.baseline.lock().unwrap();
        self.requests_since(baseline)
    }

    /// Forget the requests logged so far (for [`requests`](Self::requests)).
    pub(crate) fn clear_requests(&self) {
        let mark = self.request_mark();
        *self.baseline.lock().unwrap() = mark;
    }

    /// The current end of the request log; pass it to [`requests_since`](Self::requests_since)
    /// to see what one operation did.
    pub(crate) fn request_mark(&self) -> RequestMark {
        RequestMark(self.synced_log_lines().len())
    }

    /// Requests logged after `mark`, without the harness's own marker requests.
    ///
    /// The access log is written by the server after each handler returns, so a request the
    /// client has seen answered may not be logged yet. To catch up, the harness sends a
    /// marker request of its own and waits for its line (plus a short grace period).
    pub(crate) fn requests_since(&self, mark: RequestMark) -> Vec<LoggedRequest> {
        self.synced_log_lines()
            .iter()
            .skip(mark.0)
            .filter_map(|l| LoggedRequest::parse(l))
            .filter(|r| !r.path.starts_with(SYNC_PATH))
            .collect()
    }

    fn synced_log_lines(&self) -> Vec<String> {
        let n = SYNC_COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = format!("{SYNC_PATH}{}-{n}", std::process::id());
        let needle = format!(" {path} ");
        if let Err(e) = http_status(self.port, &path) {
            panic!(
                "registry {} did not answer a log-sync request: {e}\n{}",
                self.host(),
                self.log_tail(20)
            );
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let text = fs::read_to_string(self.access_log_path()).unwrap_or_default();
            if text.contains(&needle) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "access log never showed the sync request {path}\n{}",
                self.log_tail(20)
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        // Grace for handlers that answered before the marker but log after it (large
        // responses are flushed before the access-log line is written).
        std::thread::sleep(Duration::from_millis(20));
        fs::read_to_string(self.access_log_path())
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}
