//! A raw registry client for seeding and checking test registries, built on plain `reqwest`.
//!
//! It is deliberately independent of crossdock's transport (which is what the tests test) and
//! deliberately dumb: one request per call, statuses checked against the distribution spec,
//! any surprise is a panic with the response body. Methods are async because tests run under
//! tokio; a blocking client would panic inside a runtime.

use reqwest::{Client, Method, RequestBuilder, StatusCode};

use super::fixtures::{ACCEPT_ALL, BuiltImage, RawManifest, sha256_digest};

/// A manifest as a registry served it.
#[derive(Clone, Debug)]
pub(crate) struct FetchedManifest {
    pub bytes: Vec<u8>,
    pub content_type: String,
    /// The `Docker-Content-Digest` header, if sent.
    pub digest: Option<String>,
}

/// A registry at one base URL, optionally with basic-auth credentials.
#[derive(Clone)]
pub(crate) struct RawClient {
    base: String,
    auth: Option<(String, String)>,
    http: Client,
}

impl std::fmt::Debug for RawClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The password never appears in test output.
        f.debug_struct("RawClient")
            .field("base", &self.base)
            .field("user", &self.auth.as_ref().map(|(u, _)| u))
            .finish()
    }
}

impl RawClient {
    /// `target` is `127.0.0.1:PORT` or `http://127.0.0.1:PORT`.
    pub(crate) fn new(target: &str) -> RawClient {
        let base = if target.contains("://") {
            target.trim_end_matches('/').to_owned()
        } else {
            format!("http://{}", target.trim_end_matches('/'))
        };
        RawClient {
            base,
            auth: None,
            http: Client::builder()
                .user_agent("crossdock-test-raw")
                // No keep-alive pool: a test that restarts a registry would otherwise get
                // `IncompleteMessage` from a pooled connection to the dead process.
                .pool_max_idle_per_host(0)
                .build()
                .expect("build reqwest client"),
        }
    }

    pub(crate) fn with_auth(mut self, user: &str, pass: &str) -> RawClient {
        self.auth = Some((user.to_owned(), pass.to_owned()));
        self
    }

    /// The same registry without credentials.
    pub(crate) fn anonymous(&self) -> RawClient {
        RawClient {
            auth: None,
            ..self.clone()
        }
    }

    fn request(&self, method: Method, url: &str) -> RequestBuilder {
        let req = self.http.request(method, url);
        match &self.auth {
            Some((u, p)) => req.basic_auth(u, Some(p)),
            None => req,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Status of `GET /v2/` (200, or 401 when credentials are missing or wrong).
    pub(crate) async fn ping(&self) -> StatusCode {
        self.request(Method::GET, &self.url("/v2/"))
            .send()
            .await
            .expect("GET /v2/")
            .status()
    }

    /// Monolithic upload: `POST /blobs/uploads/` then `PUT <Location>&digest=`. Returns the
    /// digest.
    pub(crate) async fn push_blob(&self, repo: &str, bytes: &[u8]) -> String {
        let digest = sha256_digest(bytes);
        let start = self
            .request(
                Method::POST,
                &self.url(&format!("/v2/{repo}/blobs/uploads/")),
            )
            .send()
            .await
            .expect("POST blob upload");
        let start = expect_status(start, StatusCode::ACCEPTED, "start blob upload").await;
        let location = start
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .expect("upload Location header")
            .to_owned();
        // Location may be relative; distribution's carries `?_state=...`, so append with `&`.
        let mut put_url = url::Url::parse(&self.base)
            .and_then(|b| b.join(&location))
            .expect("resolve upload Location");
        put_url.query_pairs_mut().append_pair("digest", &digest);
        let done = self
            .request(Method::PUT, put_url.as_str())
            .header("content-type", "application/octet-stream")
            .body(bytes.to_vec())
            .send()
            .await
            .expect("PUT blob");
        expect_status(done, StatusCode::CREATED, "finish blob upload").await;
        digest
    }

    /// `PUT /v2/<repo>/manifests/<reference>` with the manifest's own media type.
    pub(crate) async fn put_manifest(&self, repo: &str, reference: &str, manifest: &RawManifest) {
        let resp = self
            .request(
                Method::PUT,
                &self.url(&format!("/v2/{repo}/manifests/{reference}")),
            )
            .header("content-type", &manifest.media_type)
            .body(manifest.bytes.clone())
            .send()
            .await
            .expect("PUT manifest");
        let resp = expect_status(resp, StatusCode::CREATED, "put manifest").await;
        let digest = header(&resp, "docker-content-digest");
        assert_eq!(
            digest.as_deref(),
            Some(manifest.digest.as_str()),
            "registry computed another digest for {repo}:{reference}"
        );
    }

    /// Push every blob, then the image manifests by digest, then the top manifest (index, or
    /// the single manifest) at `reference` (a tag or its digest). Children first: distribution
    /// refuses an index naming a manifest it does not have.
    pub(crate) async fn push_image(&self, repo: &str, reference: &str, image: &BuiltImage) {
        for bytes in image.blobs.values() {
            self.push_blob(repo, bytes).await;
        }
        if image.index.is_some() {
            for m in &image.manifests {
                self.put_manifest(repo, &m.digest, m).await;
            }
        }
        self.put_manifest(repo, reference, image.top()).await;
    }

    /// Asserts that `repo` holds the whole of `image`: every manifest and blob, byte for byte,
    /// and, given a `tag`, that it points at the image's top manifest. The check of a copy.
    pub(crate) async fn assert_holds_image(
        &self,
        repo: &str,
        tag: Option<&str>,
        image: &BuiltImage,
    ) {
        for m in image.manifests.iter().chain(image.index.iter()) {
            let got = self
                .get_manifest(repo, &m.digest)
                .await
                .unwrap_or_else(|| panic!("manifest {} missing in {repo}", m.digest));
            assert_eq!(
                got.bytes, m.bytes,
                "manifest {} differs in {repo}",
                m.digest
            );
        }
        for (d, bytes) in &image.blobs {
            let got = self
                .get_blob(repo, d)
                .await
                .unwrap_or_else(|| panic!("blob {d} missing in {repo}"));
            assert!(got == *bytes, "blob {d} differs in {repo}");
        }
        if let Some(tag) = tag {
            assert_eq!(
                self.head_manifest(repo, tag).await.as_deref(),
                Some(image.digest()),
                "{repo}:{tag}"
            );
        }
    }

    /// `GET` a manifest with the full Accept list; `None` on 404.
    pub(crate) async fn get_manifest(
        &self,
        repo: &str,
        reference: &str,
    ) -> Option<FetchedManifest> {
        let resp = self
            .request(
                Method::GET,
                &self.url(&format!("/v2/{repo}/manifests/{reference}")),
            )
            .header("accept", ACCEPT_ALL)
            .send()
            .await
            .expect("GET manifest");
        if resp.status() == StatusCode::NOT_FOUND {
            return None;
        }
        let resp = expect_status(resp, StatusCode::OK, "get manifest").await;
        let content_type = header(&resp, "content-type").unwrap_or_default();
        let digest = header(&resp, "docker-content-digest");
        let bytes = resp.bytes().await.expect("manifest body").to_vec();
        Some(FetchedManifest {
            bytes,
            content_type,
            digest,
        })
    }

    /// `HEAD` a manifest; its `Docker-Content-Digest`, or `None` on 404.
    pub(crate) async fn head_manifest(&self, repo: &str, reference: &str) -> Option<String> {
        let resp = self
            .request(
                Method::HEAD,
                &self.url(&format!("/v2/{repo}/manifests/{reference}")),
            )
            .header("accept", ACCEPT_ALL)
            .send()
            .await
            .expect("HEAD manifest");
        if resp.status() == StatusCode::NOT_FOUND {
            return None;
        }
        let resp = expect_status(resp, StatusCode::OK, "head manifest").await;
        Some(header(&resp, "docker-content-digest").expect("Docker-Content-Digest on HEAD"))
    }

    /// `HEAD` a manifest for a polling loop: the digest when it answers 200, `None` for anything
    /// else. distribution 2.8's filesystem storage briefly answers 500 for a tag that is being
    /// written at that moment (its link file is rewritten in place), which a poll must ride out.
    pub(crate) async fn poll_manifest(&self, repo: &str, reference: &str) -> Option<String> {
        let resp = self
            .request(
                Method::HEAD,
                &self.url(&format!("/v2/{repo}/manifests/{reference}")),
            )
            .header("accept", ACCEPT_ALL)
            .send()
            .await
            .ok()?;
        if resp.status() != StatusCode::OK {
            return None;
        }
        header(&resp, "docker-content-digest")
    }

    /// `GET` a manifest, riding out distribution's brief 500s on a tag being written (see
    /// [`RawClient::poll_manifest`]): up to 20 tries 50 ms apart; `None` on 404.
    pub(crate) async fn get_manifest_settled(
        &self,
        repo: &str,
        reference: &str,
    ) -> Option<FetchedManifest> {
        for _ in 0..20 {
            let resp = self
                .request(
                    Method::GET,
                    &self.url(&format!("/v2/{repo}/manifests/{reference}")),
                )
                .header("accept", ACCEPT_ALL)
                .send()
                .await
                .expect("GET manifest");
            match resp.status() {
                StatusCode::NOT_FOUND => return None,
                StatusCode::OK => {
                    let content_type = header(&resp, "content-type").unwrap_or_default();
                    let digest = header(&resp, "docker-content-digest");
                    let bytes = resp.bytes().await.expect("manifest body").to_vec();
                    return Some(FetchedManifest {
                        bytes,
                        content_type,
                        digest,
                    });
                }
                _ => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
            }
        }
        panic!("GET {repo}:{reference} kept failing");
    }

    /// `DELETE` a manifest by digest (the registry refuses deletes by tag).
    pub(crate) async fn delete_manifest(&self, repo: &str, digest: &str) {
        let resp = self
            .request(
                Method::DELETE,
                &self.url(&format!("/v2/{repo}/manifests/{digest}")),
            )
            .send()
            .await
            .expect("DELETE manifest");
        expect_status(resp, StatusCode::ACCEPTED, "delete manifest").await;
    }

    /// `HEAD` a blob: true on 200, false on 404.
    pub(crate) async fn blob_exists(&self, repo: &str, digest: &str) -> bool {
        let resp = self
            .request(
                Method::HEAD,
                &self.url(&format!("/v2/{repo}/blobs/{digest}")),
            )
            .send()
            .await
            .expect("HEAD blob");
        match resp.status() {
            StatusCode::OK => true,
            StatusCode::NOT_FOUND => false,
            s => panic!("HEAD blob {repo}@{digest}: unexpected {s}"),
        }
    }

    /// `GET` a blob's bytes; `None` on 404.
    pub(crate) async fn get_blob(&self, repo: &str, digest: &str) -> Option<Vec<u8>> {
        let resp = self
            .request(
                Method::GET,
                &self.url(&format!("/v2/{repo}/blobs/{digest}")),
            )
            .send()
            .await
            .expect("GET blob");
        if resp.status() == StatusCode::NOT_FOUND {
            return None;
        }
        let resp = expect_status(resp, StatusCode::OK, "get blob").await;
        Some(resp.bytes().await.expect("blob body").to_vec())
    }

    /// The repository's tags, sorted (distribution lists them in filesystem order). Empty when
    /// the repository does not exist.
    pub(crate) async fn tags(&self, repo: &str) -> Vec<String> {
        let resp = self
            .request(Method::GET, &self.url(&format!("/v2/{repo}/tags/list")))
            .send()
            .await
            .expect("GET tags");
        if resp.status() == StatusCode::NOT_FOUND {
            return Vec::new();
        }
        let resp = expect_status(resp, StatusCode::OK, "list tags").await;
        let body: serde_json::Value = resp.json().await.expect("tag list JSON");
        let mut tags: Vec<String> = body["tags"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        tags.sort();
        tags
    }
}

fn header(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

async fn expect_status(resp: reqwest::Response, want: StatusCode, what: &str) -> reqwest::Response {
    if resp.status() == want {
        return resp;
    }
    let status = resp.status();
    let url = resp.url().clone();
    let body = resp.text().await.unwrap_or_default();
    panic!("{what}: {url} answered {status}, wanted {want}: {body}");
}

/// Push `image` anonymously to `target` (`HOST:PORT` or URL) at `repo:reference`.
pub(crate) async fn push_image(target: &str, repo: &str, reference: &str, image: &BuiltImage) {
    RawClient::new(target)
        .push_image(repo, reference, image)
        .await
}

/// Anonymous manifest GET with the full Accept list; `None` on 404.
pub(crate) async fn get_manifest_raw(
    target: &str,
    repo: &str,
    reference: &str,
) -> Option<FetchedManifest> {
    RawClient::new(target).get_manifest(repo, reference).await
}

/// Anonymous blob HEAD.
pub(crate) async fn blob_exists(target: &str, repo: &str, digest: &str) -> bool {
    RawClient::new(target).blob_exists(repo, digest).await
}

/// Anonymous sorted tag list (empty if the repository does not exist).
pub(crate) async fn tags(target: &str, repo: &str) -> Vec<String> {
    RawClient::new(target).tags(repo).await
}
