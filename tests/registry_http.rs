//! The HTTP transport against a real registry (CNCF distribution 2.8, `docker-registry`).
//!
//! What is pinned down here is what only a real registry can show: that streamed uploads and
//! downloads of a large blob work without holding it, that every manifest media type comes back
//! byte for byte under the same digest (with distribution's Accept negotiation in play), that
//! mounts answer 201 or 202 and both are handled, that chunked uploads follow distribution's
//! moving `Location`, that a corrupt body never becomes a blob, and that basic auth works and
//! fails clearly. Seeding and checking go through the harness's independent raw client.

mod support;

use std::io;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt, stream};
use sha2::Digest as _;

use crossdock::digest::{Digest, VerifyingStream};
use crossdock::manifest::{Manifest, media_type};
use crossdock::registry::auth::{Credentials, Secret};
use crossdock::registry::http::{HttpOptions, HttpRegistry};
use crossdock::registry::retry::RetryPolicy;
use crossdock::registry::{ByteStream, ErrorKind, MountOutcome, Transport};
use support::fixtures::{self, Format, ImageSpec};
use support::{RequestKind, TestRegistry};

const MIB: u64 = 1024 * 1024;

fn options() -> HttpOptions {
    HttpOptions {
        retry: RetryPolicy {
            max_attempts: 2,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(50),
            max_elapsed: Duration::from_secs(10),
        },
        ..HttpOptions::for_registry("127.0.0.1")
    }
}

fn transport(reg: &TestRegistry, opts: HttpOptions) -> HttpRegistry {
    HttpRegistry::new(&reg.host(), opts).expect("build transport")
}

fn bytes_stream(data: Vec<u8>) -> ByteStream {
    Box::pin(stream::iter(
        data.chunks(7000)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect::<Vec<_>>(),
    ))
}

/// `size` pseudo-random bytes in 1 MiB chunks, generated as they are pulled: never held whole.
fn generated(seed: u64, size: u64) -> impl Stream<Item = Result<Bytes, io::Error>> + Send {
    let chunks = size.div_ceil(MIB);
    stream::iter(0..chunks).map(move |i| {
        let len = (size - i * MIB).min(MIB) as usize;
        let mut x = seed ^ (i.wrapping_mul(0x9e37_79b9_7f4a_7c15)) | 1;
        let mut chunk = Vec::with_capacity(len);
        while chunk.len() < len {
            // xorshift64: fast, and enough to make every chunk different.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.extend_from_slice(&x.to_le_bytes());
        }
        chunk.truncate(len);
        Ok(Bytes::from(chunk))
    })
}

/// Peak resident memory of this process so far, in bytes (Linux).
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

#[tokio::test]
async fn a_100_mib_blob_streams_up_and_down_without_being_held() {
    let reg = TestRegistry::start();
    let t = transport(&reg, options());
    let size = 100 * MIB;
    // The digest, computed while generating (the upload needs it first, like any copy).
    let mut hasher = sha2::Sha256::new();
    let mut gen_stream = Box::pin(generated(42, size));
    while let Some(chunk) = gen_stream.next().await {
        hasher.update(chunk.unwrap());
    }
    let digest = Digest::parse(&format!("sha256:{}", hex::encode(hasher.finalize()))).unwrap();
    let rss_before = peak_rss();

    let body = VerifyingStream::new(generated(42, size), digest.clone(), Some(size));
    t.blob_put("big/blob", &digest, size, Box::pin(body), None)
        .await
        .expect("upload");
    assert_eq!(t.blob_head("big/blob", &digest).await.unwrap(), Some(size));

    let blob = t.blob_get("big/blob", &digest).await.expect("download");
    assert_eq!(blob.size, Some(size));
    let mut verified = VerifyingStream::new(blob.stream, digest.clone(), Some(size));
    let mut hasher = sha2::Sha256::new();
    let mut seen = 0u64;
    while let Some(chunk) = verified.next().await {
        let chunk = chunk.expect("download chunk");
        seen += chunk.len() as u64;
        hasher.update(&chunk);
    }
    assert_eq!(seen, size);
    assert_eq!(
        format!("sha256:{}", hex::encode(hasher.finalize())),
        digest.to_string()
    );
    let grew = peak_rss().saturating_sub(rss_before);
    assert!(
        grew < 64 * MIB,
        "peak memory grew by {} MiB while moving a 100 MiB blob",
        grew / MIB
    );
    // One monolithic PUT, no chunks.
    let reqs = reg.requests();
    assert!(!reqs.iter().any(|r| r.method == "PATCH"), "{reqs:?}");
}

#[tokio::test]
async fn every_manifest_media_type_round_trips_byte_for_byte() {
    let reg = TestRegistry::start();
    let t = transport(&reg, options());
    let raw = reg.client();
    let platforms = ["linux/amd64", "linux/arm64/v8"];
    let cases = [
        (
            "oci-image",
            ImageSpec::single(Format::Oci, "linux/amd64").seed(1),
        ),
        (
            "docker-image",
            ImageSpec::single(Format::Docker, "linux/amd64").seed(2),
        ),
        (
            "oci-index",
            ImageSpec::multi(Format::Oci, &platforms).seed(3),
        ),
        (
            "docker-list",
            ImageSpec::multi(Format::Docker, &platforms).seed(4),
        ),
    ];
    let mut types_seen = Vec::new();
    for (repo, spec) in cases {
        let image = spec.build();
        // Everything goes up through the transport under test: blobs, children, then the top.
        for (d, data) in &image.blobs {
            let digest = Digest::parse(d).unwrap();
            t.blob_put(
                repo,
                &digest,
                data.len() as u64,
                bytes_stream(data.clone()),
                None,
            )
            .await
            .expect("blob upload");
        }
        let mut pushed = Vec::new();
        for m in image.manifests.iter().chain(image.index.iter()) {
            let manifest =
                Manifest::from_bytes(Bytes::from(m.bytes.clone()), Some(&m.media_type)).unwrap();
            assert_eq!(manifest.digest().to_string(), m.digest);
            t.manifest_put(repo, &m.digest, &manifest)
                .await
                .expect("PUT by digest");
            pushed.push(manifest);
        }
        let top = pushed.last().unwrap().clone();
        t.manifest_put(repo, "v1", &top).await.expect("PUT by tag");

        // Read back by tag and by digest: same bytes, type and digest.
        for reference in ["v1".to_string(), image.digest().to_string()] {
            let got = t
                .manifest_get(repo, &reference)
                .await
                .expect("GET manifest");
            assert_eq!(got.bytes(), top.bytes(), "{repo} {reference}");
            assert_eq!(got.media_type(), image.top().media_type, "{repo}");
            assert_eq!(got.digest().to_string(), image.digest(), "{repo}");
            let head = t
                .manifest_head(repo, &reference)
                .await
                .unwrap()
                .expect("HEAD");
            assert_eq!(head.digest.to_string(), image.digest());
            assert_eq!(head.media_type, image.top().media_type);
            assert_eq!(head.size, image.top().bytes.len() as u64);
        }
        // And the registry, asked independently, holds exactly those bytes.
        let fetched = raw.get_manifest(repo, "v1").await.expect("raw GET");
        assert_eq!(fetched.bytes, image.top().bytes);
        assert_eq!(fetched.digest.as_deref(), Some(image.digest()));
        types_seen.push(top.media_type().to_string());
    }
    assert_eq!(
        types_seen,
        [
            media_type::OCI_MANIFEST,
            media_type::DOCKER_MANIFEST,
            media_type::OCI_INDEX,
            media_type::DOCKER_MANIFEST_LIST
        ]
    );
}

#[tokio::test]
async fn absent_things_are_none_or_not_found() {
    let reg = TestRegistry::start();
    let t = transport(&reg, options());
    let image = ImageSpec::single(Format::Oci, "linux/amd64")
        .seed(9)
        .build();
    reg.client().push_image("present", "v1", &image).await;
    let nowhere = Digest::sha256_of(b"nowhere");

    assert_eq!(t.manifest_head("present", "v2").await.unwrap(), None);
    assert_eq!(t.manifest_head("absent", "v1").await.unwrap(), None);
    assert_eq!(t.blob_head("present", &nowhere).await.unwrap(), None);
    let e = t.manifest_get("present", "v2").await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound, "{e}");
    assert_eq!(e.status, Some(404));
    assert_eq!(e.errors[0].code, "MANIFEST_UNKNOWN", "{e}");
    assert!(e.url.ends_with("/v2/present/manifests/v2"), "{e}");
    let e = t
        .blob_get("present", &nowhere)
        .await
        .err()
        .expect("no blob");
    assert_eq!(e.kind, ErrorKind::NotFound, "{e}");
    let e = t.tags("absent").await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound, "{e}");
    // distribution 2.8 has no Referrers API: "404 page not found" means "not implemented".
    let subject = Digest::parse(image.digest()).unwrap();
    assert_eq!(t.referrers("present", &subject).await.unwrap(), None);
    t.ping().await.expect("ping");
}

/// distribution 2.8 deletes by digest only: a tag is refused as `Unsupported` (the caller's cue
/// to fall back), a digest goes with every tag on it (the test registries enable
/// `storage.delete`).
#[tokio::test]
async fn manifest_delete_by_digest_and_a_refused_tag() {
    let reg = TestRegistry::start();
    let t = transport(&reg, options());
    let image = ImageSpec::single(Format::Oci, "linux/amd64")
        .seed(21)
        .build();
    reg.client().push_image("del", "v1", &image).await;
    reg.client().push_image("del", "v1-again", &image).await;
    let e = t.manifest_delete("del", "v1").await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unsupported, "{e}");
    assert!(t.manifest_head("del", "v1").await.unwrap().is_some());
    assert!(t.manifest_delete("del", image.digest()).await.unwrap());
    assert_eq!(t.manifest_head("del", "v1").await.unwrap(), None);
    assert_eq!(t.manifest_head("del", "v1-again").await.unwrap(), None);
    assert!(!t.manifest_delete("del", image.digest()).await.unwrap());
}

#[tokio::test]
async fn an_index_naming_a_missing_child_is_manifest_blob_unknown() {
    let reg = TestRegistry::start();
    let t = transport(&reg, options());
    let image = ImageSpec::multi(Format::Oci, &["linux/amd64"])
        .seed(5)
        .build();
    let index = image.index.as_ref().unwrap();
    let m =
        Manifest::from_bytes(Bytes::from(index.bytes.clone()), Some(&index.media_type)).unwrap();
    let e = t.manifest_put("repo", "v1", &m).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::ManifestBlobUnknown, "{e}");
    assert!(!e.is_retryable());
}

#[tokio::test]
async fn mount_answers_201_or_opens_a_session_on_202() {
    let reg = TestRegistry::start();
    let t = transport(&reg, options());
    let raw = reg.client();
    let data = fixtures::random_bytes(77, 5000);
    let digest = Digest::parse(&raw.push_blob("src/repo", &data).await).unwrap();
    let mark = reg.request_mark();

    // Known in `from`: mounted, no bytes sent.
    let out = t.blob_mount("dst/repo", &digest, "src/repo").await.unwrap();
    assert!(matches!(out, MountOutcome::Mounted), "{out:?}");
    assert_eq!(t.blob_head("dst/repo", &digest).await.unwrap(), Some(5000));

    // Unknown in `from`: distribution opens an ordinary upload session instead.
    let other = fixtures::random_bytes(78, 3000);
    let other_digest = Digest::sha256_of(&other);
    let out = t
        .blob_mount("dst/repo", &other_digest, "src/repo")
        .await
        .unwrap();
    let MountOutcome::Upload(session) = out else {
        panic!("expected an upload session, got {out:?}");
    };
    assert!(
        session.location.contains("/v2/dst/repo/blobs/uploads/"),
        "{session:?}"
    );
    t.blob_put(
        "dst/repo",
        &other_digest,
        3000,
        bytes_stream(other.clone()),
        Some(session),
    )
    .await
    .expect("upload into the mount's session");
    assert_eq!(
        raw.get_blob("dst/repo", &other_digest.to_string()).await,
        Some(other)
    );
    // Only one session was opened for that blob: the mount's.
    let posts = reg
        .requests_since(mark)
        .iter()
        .filter(|r| r.method == "POST" && r.kind().is_upload())
        .count();
    assert_eq!(posts, 2);
}

#[tokio::test]
async fn chunked_upload_follows_the_latest_location() {
    let reg = TestRegistry::start();
    let t = transport(
        &reg,
        HttpOptions {
            chunk_size: Some(64 * 1024),
            ..options()
        },
    );
    let data = fixtures::random_bytes(5, MIB as usize + 1000);
    let digest = Digest::sha256_of(&data);
    let mark = reg.request_mark();
    t.blob_put(
        "chunked",
        &digest,
        data.len() as u64,
        bytes_stream(data.clone()),
        None,
    )
    .await
    .expect("chunked upload");
    assert_eq!(
        reg.client().get_blob("chunked", &digest.to_string()).await,
        Some(data)
    );
    let reqs = reg.requests_since(mark);
    let patches = reqs.iter().filter(|r| r.method == "PATCH").count();
    assert_eq!(
        patches, 17,
        "16 full chunks of 64 KiB and one of 1000 bytes"
    );
    let put = reqs.iter().find(|r| r.method == "PUT").expect("final PUT");
    assert!(
        put.query.as_deref().unwrap_or("").contains("digest=sha256"),
        "{put:?}"
    );
    assert_eq!(put.status, 201);
}

async fn assert_corrupt_body_refused(t: &HttpRegistry, reg: &TestRegistry, repo: &str) {
    let good = fixtures::random_bytes(31, 300 * 1024);
    let digest = Digest::sha256_of(&good);
    let mut bad = good.clone();
    bad[200 * 1024] ^= 0xff;
    let body = VerifyingStream::new(bytes_stream(bad), digest.clone(), Some(good.len() as u64));
    let mark = reg.request_mark();
    let e = t
        .blob_put(repo, &digest, good.len() as u64, Box::pin(body), None)
        .await
        .expect_err("corrupt content must be refused");
    assert_eq!(e.kind, ErrorKind::DigestInvalid, "{e}");
    assert!(e.to_string().contains(&digest.to_string()), "{e}");
    assert_eq!(t.blob_head(repo, &digest).await.unwrap(), None);
    assert!(!reg.client().blob_exists(repo, &digest.to_string()).await);
    let reqs = reg.requests_since(mark);
    assert!(
        reqs.iter()
            .any(|r| r.method == "DELETE" && r.kind().is_upload()),
        "the session is cancelled: {reqs:?}"
    );
    assert!(
        !reqs.iter().any(|r| r.method == "PUT" && r.status == 201),
        "nothing committed: {reqs:?}"
    );
}

#[tokio::test]
async fn a_corrupt_body_is_never_committed_monolithic() {
    let reg = TestRegistry::start();
    let t = transport(&reg, options());
    assert_corrupt_body_refused(&t, &reg, "corrupt/mono").await;
}

#[tokio::test]
async fn a_corrupt_body_is_never_committed_chunked() {
    let reg = TestRegistry::start();
    let t = transport(
        &reg,
        HttpOptions {
            chunk_size: Some(64 * 1024),
            ..options()
        },
    );
    assert_corrupt_body_refused(&t, &reg, "corrupt/chunked").await;
}

#[tokio::test]
async fn a_short_body_is_refused() {
    let reg = TestRegistry::start();
    let t = transport(&reg, options());
    let data = fixtures::random_bytes(8, 10_000);
    let digest = Digest::sha256_of(&data);
    // The caller announces more than the stream gives: the request cannot complete.
    let e = t
        .blob_put("short", &digest, 20_000, bytes_stream(data), None)
        .await
        .expect_err("short body");
    assert!(
        matches!(e.kind, ErrorKind::Transport | ErrorKind::DigestInvalid),
        "{e}"
    );
    assert_eq!(t.blob_head("short", &digest).await.unwrap(), None);
}

#[tokio::test]
async fn basic_auth_right_and_wrong() {
    let reg = TestRegistry::start_with_auth("alice", "s3cret-pw");
    let creds = |password: &str| {
        Some(Credentials::Basic {
            username: "alice".into(),
            password: Secret::new(password),
        })
    };
    let good = transport(
        &reg,
        HttpOptions {
            credentials: creds("s3cret-pw"),
            ..options()
        },
    );
    good.ping().await.expect("ping with credentials");
    let data = fixtures::random_bytes(3, 2048);
    let digest = Digest::sha256_of(&data);
    good.blob_put("private", &digest, 2048, bytes_stream(data.clone()), None)
        .await
        .expect("upload with credentials");
    let image = ImageSpec::single(Format::Docker, "linux/amd64")
        .seed(6)
        .build();
    reg.client().push_image("private", "v1", &image).await;
    let m = good
        .manifest_get("private", "v1")
        .await
        .expect("GET with credentials");
    assert_eq!(m.digest().to_string(), image.digest());
    assert_eq!(good.tags("private").await.unwrap(), vec!["v1".to_string()]);

    let wrong = transport(
        &reg,
        HttpOptions {
            credentials: creds("not-the-password"),
            ..options()
        },
    );
    for e in [
        wrong.ping().await.unwrap_err(),
        wrong.manifest_get("private", "v1").await.unwrap_err(),
    ] {
        assert_eq!(e.kind, ErrorKind::Unauthorized, "{e}");
        assert!(!e.is_retryable());
        let text = format!("{e} {e:?}");
        assert!(text.contains(&reg.host()), "names the registry: {text}");
        assert!(!text.contains("not-the-password"), "{text}");
    }

    let anonymous = transport(&reg, options());
    let e = anonymous.blob_head("private", &digest).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unauthorized, "{e}");
}

#[tokio::test]
async fn tag_list_has_every_tag() {
    let reg = TestRegistry::start();
    let t = transport(&reg, options());
    let raw = reg.client();
    let image = ImageSpec::single(Format::Oci, "linux/amd64")
        .seed(12)
        .build();
    raw.push_image("tagged", "v1", &image).await;
    let top = &image.top();
    let mut want: Vec<String> = (0..30).map(|i| format!("t{i:02}")).collect();
    for tag in &want {
        raw.put_manifest("tagged", tag, top).await;
    }
    want.push("v1".into());
    let mut got = t.tags("tagged").await.unwrap();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    // distribution 2.8 ignores `n` and answers in one page.
    let lists = reg
        .requests()
        .iter()
        .filter(|r| matches!(r.kind(), RequestKind::TagList { .. }))
        .count();
    assert_eq!(lists, 1);
}

#[tokio::test]
async fn requests_are_counted_in_metrics() {
    let reg = TestRegistry::start();
    let t = transport(&reg, options());
    t.ping().await.unwrap();
    let _ = t.blob_head("m", &Digest::sha256_of(b"m")).await.unwrap();
    let text = crossdock::metrics::global().render();
    let host = reg.host();
    assert!(
        text.contains(&format!(
            r#"registry="{host}",method="GET",status="2xx"}} 1"#
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            r#"registry="{host}",method="HEAD",status="4xx"}} 1"#
        )),
        "{text}"
    );
}
