//! Paginated listings: tags and OCI referrers.
//!
//! Both follow `Link: <url>; rel="next"` until it is absent (RFC 8288, as the distribution spec
//! says). distribution 2.8 ignores `n` and `last` on tag lists and sends every tag, unsorted, with
//! no `Link`: one page, which is fine. Pagination is guarded so that a broken or hostile registry
//! cannot keep us busy forever: a `next` URL seen before, pages that bring nothing new, or more
//! than [`MAX_PAGES`] pages end the listing with an error. Each page is read with a cap.
//!
//! The Referrers API is optional: distribution 2.8 answers `404 page not found` (plain text) for
//! it, others 405. Both mean "not implemented" (`Ok(None)`), and the caller falls back to the
//! `sha256-<hex>` tag scheme. That answer is remembered per repository for a while
//! ([`ReferrersMemo`]): a sync of 1,000 tags of one repository otherwise asks 1,000 times for an
//! API the registry has already said it lacks.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::Method;
use reqwest::header::{ACCEPT, LINK};
use url::Url;

use super::exchange::Call;
use super::response::{display_url, parse_error_body, read_bounded};
use super::{HttpRegistry, pull};
use crate::digest::Digest;
use crate::manifest::{Descriptor, ImageIndex, media_type};
use crate::registry::retry::retry;
use crate::registry::{ErrorKind, RegistryError, Result};

/// Most pages one listing may take.
const MAX_PAGES: usize = 10_000;
/// Most bytes of one page.
const PAGE_LIMIT: usize = 16 * 1024 * 1024;
/// Most entries (tags, referrers) one listing may bring. Without it, a registry paginating
/// forever with ever-new entries (each page under [`PAGE_LIMIT`], never a repeated link) kept
/// crossdock reading and growing for [`MAX_PAGES`] pages: up to 160 GiB. A million tags is far
/// beyond any real repository.
const MAX_ITEMS: usize = 1_000_000;
/// Most page bytes one listing may read in all (a million tags of ~40 characters).
const LISTING_LIMIT: usize = 64 * 1024 * 1024;
/// Consecutive pages with nothing new (but a `next` link) tolerated.
const MAX_EMPTY_PAGES: usize = 2;
/// Page size asked of registries that paginate.
const TAGS_PAGE_SIZE: &str = "1000";

/// How long a "no Referrers API" answer is trusted: long enough to cover a sync run, short
/// enough that a daemon notices a registry upgraded under it.
const NO_REFERRERS_TTL: Duration = Duration::from_secs(15 * 60);
/// Most repositories remembered (the memo is cleared past this).
const NO_REFERRERS_MAX: usize = 10_000;

/// Repositories that answered "no such API" to a referrers request, with when they did.
#[derive(Debug, Default)]
pub(super) struct ReferrersMemo(Mutex<HashMap<String, Instant>>);

impl ReferrersMemo {
    fn lacks_api(&self, repo: &str) -> bool {
        let memo = self.0.lock().expect("referrers memo lock");
        memo.get(repo)
            .is_some_and(|at| at.elapsed() < NO_REFERRERS_TTL)
    }

    fn note_no_api(&self, repo: &str) {
        let mut memo = self.0.lock().expect("referrers memo lock");
        if memo.len() >= NO_REFERRERS_MAX {
            memo.clear();
        }
        memo.insert(repo.to_string(), Instant::now());
    }
}

/// One page of a listing.
struct Page {
    status: u16,
    body: Bytes,
    next: Option<Url>,
}

/// Guards a pagination against loops and endless listings.
struct Pager {
    op: &'static str,
    seen: HashSet<Url>,
    empty_pages: usize,
    bytes: usize,
}

impl Pager {
    fn new(op: &'static str, first: &Url) -> Self {
        Pager {
            op,
            seen: HashSet::from([first.clone()]),
            empty_pages: 0,
            bytes: 0,
        }
    }

    /// Counts a page of `page_bytes` read from `url`, after which the listing holds `items`
    /// entries: an error once the listing is larger than any real one.
    fn account(&mut self, url: &Url, page_bytes: usize, items: usize) -> Result<()> {
        self.bytes += page_bytes;
        let too_large = if items > MAX_ITEMS {
            format!("more than {MAX_ITEMS} entries")
        } else if self.bytes > LISTING_LIMIT {
            format!("more than {LISTING_LIMIT} bytes of pages")
        } else {
            return Ok(());
        };
        Err(
            RegistryError::new(ErrorKind::Invalid, self.op, display_url(url))
                .with_message(format!("the listing never ends: {too_large}")),
        )
    }

    /// Accepts `next` after a page that brought `new_items` items not seen before.
    fn next(&mut self, next: Option<Url>, new_items: usize) -> Result<Option<Url>> {
        let Some(next) = next else {
            return Ok(None);
        };
        let fail = |message: String| {
            Err(
                RegistryError::new(ErrorKind::Invalid, self.op, display_url(&next))
                    .with_message(message),
            )
        };
        if !self.seen.insert(next.clone()) {
            return fail("pagination loops: the registry sent a next page already read".into());
        }
        self.empty_pages = if new_items == 0 {
            self.empty_pages + 1
        } else {
            0
        };
        if self.empty_pages > MAX_EMPTY_PAGES {
            return fail(format!(
                "pagination makes no progress: {} pages in a row brought nothing new",
                self.empty_pages
            ));
        }
        if self.seen.len() > MAX_PAGES {
            return fail(format!("more than {MAX_PAGES} pages"));
        }
        Ok(Some(next))
    }
}

/// The `rel="next"` target of `Link` header values, if any.
pub(super) fn next_link<'a>(values: impl Iterator<Item = &'a str>) -> Option<String> {
    for value in values {
        let mut rest = value;
        while let Some(open) = rest.find('<') {
            let after = &rest[open + 1..];
            let close = after.find('>')?;
            let target = &after[..close];
            let params_end = after[close..].find('<').map_or(after.len(), |i| close + i);
            let params = &after[close + 1..params_end];
            let is_next = params.split(';').any(|p| {
                let Some((name, val)) = p.split_once('=') else {
                    return false;
                };
                name.trim().eq_ignore_ascii_case("rel")
                    && val
                        .trim()
                        .trim_matches('"')
                        .split_whitespace()
                        .any(|r| r.eq_ignore_ascii_case("next"))
            });
            if is_next {
                return Some(target.to_string());
            }
            rest = &after[params_end..];
        }
    }
    None
}

impl HttpRegistry {
    /// Fetches one page (retried as a whole), with its `next` link resolved.
    async fn fetch_page(&self, call: &Call<'_>, expect: &[u16]) -> Result<Page> {
        retry(&self.opts.retry, call.op, || async {
            let mut answer = self.send_once(call, None, expect).await?;
            let status = answer.status();
            let url = answer.response.url().clone();
            let next = next_link(
                answer
                    .response
                    .headers()
                    .get_all(LINK)
                    .iter()
                    .filter_map(|v| v.to_str().ok()),
            )
            .and_then(|n| url.join(&n).ok());
            let body = read_bounded(
                call.op,
                &mut answer.response,
                PAGE_LIMIT,
                self.opts.read_timeout,
            )
            .await?;
            if body.over_limit {
                return Err(
                    RegistryError::new(ErrorKind::Invalid, call.op, display_url(&url))
                        .with_message(format!("page larger than {PAGE_LIMIT} bytes")),
                );
            }
            Ok(Page {
                status,
                body: body.bytes,
                next,
            })
        })
        .await
    }

    pub(super) async fn list_tags(&self, repo: &str) -> Result<Vec<String>> {
        #[derive(serde::Deserialize)]
        struct TagList {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        let scopes = pull(repo);
        let plain = self.url(&format!("/v2/{repo}/tags/list"));
        let mut url = plain.clone();
        url.query_pairs_mut().append_pair("n", TAGS_PAGE_SIZE);
        let mut pager = Pager::new("GET tags", &url);
        let mut tags = Vec::new();
        let mut known = HashSet::new();
        let mut first = true;
        loop {
            let call = Call::new("GET tags", Method::GET, url.clone(), &scopes);
            let page = match self.fetch_page(&call, &[200]).await {
                // A registry that caps `n` lower may refuse ours; ask for its default page size.
                Err(e)
                    if first
                        && e.status == Some(400)
                        && e.errors
                            .iter()
                            .any(|x| x.code == "PAGINATION_NUMBER_INVALID") =>
                {
                    url = plain.clone();
                    first = false;
                    continue;
                }
                other => other?,
            };
            first = false;
            let list: TagList = serde_json::from_slice(&page.body).map_err(|e| {
                RegistryError::new(ErrorKind::Invalid, call.op, display_url(&url))
                    .with_message(format!("unreadable tag list: {e}"))
                    .with_source(e)
            })?;
            let mut new_items = 0;
            for tag in list.tags.unwrap_or_default() {
                if known.insert(tag.clone()) {
                    tags.push(tag);
                    new_items += 1;
                }
            }
            pager.account(&url, page.body.len(), tags.len())?;
            match pager.next(page.next, new_items)? {
                Some(next) => url = next,
                None => return Ok(tags),
            }
        }
    }

    /// Whether `repo` has a tag, from one page of at most one tag (`n=1`): a registry that
    /// paginates answers with one tag whatever the repository holds. distribution 2.8 ignores
    /// `n` and sends every tag — still one request. A registry refusing `n=1` is asked for its
    /// default page instead.
    pub(super) async fn any_tag(&self, repo: &str) -> Result<bool> {
        #[derive(serde::Deserialize)]
        struct TagList {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        let scopes = pull(repo);
        let plain = self.url(&format!("/v2/{repo}/tags/list"));
        let mut one = plain.clone();
        one.query_pairs_mut().append_pair("n", "1");
        let call = Call::new("GET tags", Method::GET, one, &scopes);
        let page = match self.fetch_page(&call, &[200]).await {
            Err(e)
                if e.status == Some(400)
                    && e.errors
                        .iter()
                        .any(|x| x.code == "PAGINATION_NUMBER_INVALID") =>
            {
                let call = Call::new("GET tags", Method::GET, plain, &scopes);
                self.fetch_page(&call, &[200]).await?
            }
            other => other?,
        };
        let list: TagList = serde_json::from_slice(&page.body).map_err(|e| {
            RegistryError::new(ErrorKind::Invalid, call.op, display_url(&call.url))
                .with_message(format!("unreadable tag list: {e}"))
                .with_source(e)
        })?;
        Ok(list.tags.is_some_and(|t| !t.is_empty()))
    }

    pub(super) async fn list_referrers(
        &self,
        repo: &str,
        digest: &Digest,
    ) -> Result<Option<Vec<Descriptor>>> {
        if self.no_referrers_api.lacks_api(repo) {
            return Ok(None);
        }
        let scopes = pull(repo);
        let mut url = self.url(&format!("/v2/{repo}/referrers/{digest}"));
        let mut pager = Pager::new("GET referrers", &url);
        let mut referrers: Vec<Descriptor> = Vec::new();
        let mut known: HashSet<Digest> = HashSet::new();
        loop {
            let call = Call::new("GET referrers", Method::GET, url.clone(), &scopes)
                .header(ACCEPT, media_type::OCI_INDEX);
            let page = self.fetch_page(&call, &[200, 404, 405]).await?;
            if page.status != 200 {
                let errors = parse_error_body(&page.body);
                // A registry that has the API says NAME_UNKNOWN for a missing repository; any
                // other 404 (distribution 2.8: "404 page not found") or a 405 is "no such API".
                if errors.iter().any(|e| e.code == "NAME_UNKNOWN") {
                    let mut err =
                        RegistryError::new(ErrorKind::NotFound, call.op, display_url(&url))
                            .with_status(page.status);
                    err.errors = errors.into();
                    return Err(err);
                }
                self.no_referrers_api.note_no_api(repo);
                return Ok(None);
            }
            let index: ImageIndex = serde_json::from_slice(&page.body).map_err(|e| {
                RegistryError::new(ErrorKind::Invalid, call.op, display_url(&url))
                    .with_message(format!("unreadable referrers index: {e}"))
                    .with_source(e)
            })?;
            let before = referrers.len();
            for d in index.manifests {
                // A set, not a scan of the list: a listing may hold up to MAX_ITEMS entries.
                if known.insert(d.digest.clone()) {
                    referrers.push(d);
                }
            }
            pager.account(&url, page.body.len(), referrers.len())?;
            match pager.next(page.next, referrers.len() - before)? {
                Some(next) => url = next,
                None => return Ok(Some(referrers)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_referrers_api_is_remembered_per_repository() {
        let memo = ReferrersMemo::default();
        assert!(!memo.lacks_api("app"));
        memo.note_no_api("app");
        assert!(memo.lacks_api("app"));
        assert!(
            !memo.lacks_api("other"),
            "another repository is asked again"
        );
        // An old answer is not trusted any more (when the clock goes back that far).
        if let Some(old) = Instant::now().checked_sub(NO_REFERRERS_TTL + Duration::from_secs(1)) {
            memo.0.lock().unwrap().insert("app".into(), old);
            assert!(!memo.lacks_api("app"));
        }
    }

    #[test]
    fn finds_the_next_link() {
        let one = [r#"</v2/a/tags/list?last=t99&n=100>; rel="next""#];
        assert_eq!(
            next_link(one.into_iter()).as_deref(),
            Some("/v2/a/tags/list?last=t99&n=100")
        );
        let several = [r#"<https://x/prev>; rel="prev", <https://x/p?a=1,2>; rel=next"#];
        assert_eq!(
            next_link(several.into_iter()).as_deref(),
            Some("https://x/p?a=1,2")
        );
        let spaced = [r#"<https://x/first>; title="a"; REL="first next""#];
        assert_eq!(
            next_link(spaced.into_iter()).as_deref(),
            Some("https://x/first")
        );
        assert_eq!(
            next_link([r#"<https://x/p>; rel="prev""#].into_iter()),
            None
        );
        assert_eq!(next_link(["garbage"].into_iter()), None);
        assert_eq!(next_link(["<unterminated; rel=next"].into_iter()), None);
    }

    #[test]
    fn pager_refuses_loops_and_stalls() {
        let u = |s: &str| Url::parse(&format!("http://r/v2/a/tags/list?{s}")).unwrap();
        let mut p = Pager::new("GET tags", &u("n=1"));
        assert_eq!(p.next(Some(u("last=a")), 1).unwrap(), Some(u("last=a")));
        assert!(p.next(Some(u("n=1")), 1).is_err(), "first page again");

        let mut p = Pager::new("GET tags", &u("n=1"));
        for i in 0..MAX_EMPTY_PAGES {
            assert!(p.next(Some(u(&format!("last={i}"))), 0).is_ok());
        }
        let e = p.next(Some(u("last=x")), 0).unwrap_err();
        assert!(e.to_string().contains("no progress"), "{e}");
        assert_eq!(p.next(None, 0).unwrap(), None);
    }
}
