//! Manifest HEAD, GET, PUT and DELETE.
//!
//! Every manifest request sends the full `Accept` list
//! ([`crate::manifest::media_type::ACCEPT`]): distribution 2.8 answers 404 for an OCI index
//! unless the Accept names it, and silently swaps a Docker manifest list for its linux/amd64
//! image manifest when only the v2 manifest type is accepted — either would make a mirror copy
//! the wrong thing. A GET reads at most [`MAX_MANIFEST_SIZE`] + 1 bytes whatever
//! `Content-Length` claims, verifies the bytes against the digest asked for, and checks
//! `Docker-Content-Digest` against the bytes: the header is never trusted alone. A DELETE of a
//! tag that the registry refuses because it deletes by digest only (distribution 2.8 answers 400
//! `DIGEST_INVALID`; others 405 or 400 `UNSUPPORTED`) is [`ErrorKind::Unsupported`], for the caller to fall back on.

use reqwest::Method;
use reqwest::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE};

use super::exchange::{Answer, Call};
use super::response::{display_url, read_bounded};
use super::{HttpRegistry, pull, push};
use crate::digest::Digest;
use crate::manifest::{MAX_MANIFEST_SIZE, Manifest, ManifestError, media_type};
use crate::registry::{ErrorKind, ManifestHead, RegistryError, Result};

/// The header registries name a manifest's or blob's digest in.
pub(super) const DOCKER_CONTENT_DIGEST: &str = "docker-content-digest";

/// What a manifest reference is: a digest (content-addressed, verifiable) or a tag.
fn digest_reference(op: &'static str, url: &str, reference: &str) -> Result<Option<Digest>> {
    if !reference.contains(':') {
        return Ok(None);
    }
    // Tags cannot hold ':', so this was meant as a digest: refuse one we could not verify.
    Digest::parse(reference).map(Some).map_err(|e| {
        RegistryError::from_digest(op, url, e).with_message("invalid digest reference")
    })
}

/// The `Docker-Content-Digest` of an answer, if it sent one.
pub(super) fn content_digest(op: &'static str, answer: &Answer) -> Result<Option<Digest>> {
    let Some(value) = answer.header(DOCKER_CONTENT_DIGEST) else {
        return Ok(None);
    };
    Digest::parse(value).map(Some).map_err(|e| {
        RegistryError::new(ErrorKind::Invalid, op, display_url(answer.response.url()))
            .with_message(format!("unreadable Docker-Content-Digest header: {e}"))
            .with_source(e)
    })
}

/// The media type in a `Content-Type` value, parameters dropped.
fn media_type_of(content_type: &str) -> &str {
    content_type.split(';').next().unwrap_or("").trim()
}

impl HttpRegistry {
    fn manifest_call<'a>(
        &self,
        op: &'static str,
        method: Method,
        repo: &str,
        reference: &str,
        scopes: &'a [crate::registry::auth::Scope],
    ) -> Call<'a> {
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        Call::new(op, method, url, scopes).header(ACCEPT, media_type::ACCEPT)
    }

    pub(super) async fn head_manifest(
        &self,
        repo: &str,
        reference: &str,
    ) -> Result<Option<ManifestHead>> {
        let scopes = pull(repo);
        let call = self.manifest_call("HEAD manifest", Method::HEAD, repo, reference, &scopes);
        let expected = digest_reference(call.op, &display_url(&call.url), reference)?;
        let answer = self.send(&call, None, &[200, 404]).await?;
        if answer.status() == 404 {
            return Ok(None);
        }
        let digest = content_digest(call.op, &answer)?;
        let media_type = answer
            .header(CONTENT_TYPE)
            .map(media_type_of)
            .filter(|m| media_type::is_manifest(m))
            .map(str::to_string);
        let size = answer
            .header(CONTENT_LENGTH)
            .and_then(|v| v.parse::<u64>().ok());
        drop(answer);
        match (digest.or(expected.clone()), media_type, size) {
            (Some(digest), Some(media_type), Some(size)) => {
                if let Some(want) = &expected
                    && *want != digest
                {
                    return Err(RegistryError::new(
                        ErrorKind::DigestInvalid,
                        call.op,
                        display_url(&call.url),
                    )
                    .with_message(format!("asked for {want}, the registry answered {digest}")));
                }
                Ok(Some(ManifestHead {
                    digest,
                    media_type,
                    size,
                }))
            }
            // Some registries leave out Docker-Content-Digest (or send a generic Content-Type)
            // on HEAD: fetch the manifest and compute what HEAD should have said.
            _ => match self.get_manifest(repo, reference).await {
                Ok(m) => Ok(Some(ManifestHead {
                    digest: m.digest().clone(),
                    media_type: m.media_type().to_string(),
                    size: m.size(),
                })),
                Err(e) if e.is_not_found() => Ok(None),
                Err(e) => Err(e),
            },
        }
    }

    pub(super) async fn get_manifest(&self, repo: &str, reference: &str) -> Result<Manifest> {
        let scopes = pull(repo);
        let call = self.manifest_call("GET manifest", Method::GET, repo, reference, &scopes);
        let url = display_url(&call.url);
        let expected = digest_reference(call.op, &url, reference)?;
        // The whole exchange is retried, body included: a reset mid-body is as transient as one
        // before the headers.
        let (bytes, content_type, header_digest) =
            crate::registry::retry::retry(&self.opts.retry, call.op, || async {
                let mut answer = self.send_once(&call, None, &[200]).await?;
                let too_large = |size| {
                    RegistryError::from_manifest(call.op, &url, ManifestError::TooLarge { size })
                };
                if let Some(len) = answer.response.content_length()
                    && len > MAX_MANIFEST_SIZE as u64
                {
                    return Err(too_large(usize::try_from(len).unwrap_or(usize::MAX)));
                }
                let content_type = answer.header(CONTENT_TYPE).map(str::to_string);
                let header_digest = content_digest(call.op, &answer)?;
                let body = read_bounded(
                    call.op,
                    &mut answer.response,
                    MAX_MANIFEST_SIZE + 1,
                    self.opts.read_timeout,
                )
                .await?;
                if body.over_limit {
                    return Err(too_large(MAX_MANIFEST_SIZE + 1));
                }
                Ok((body.bytes, content_type, header_digest))
            })
            .await?;
        let ct = content_type.as_deref();
        let manifest = match &expected {
            Some(d) => Manifest::from_bytes_expecting(bytes, ct, d),
            None => Manifest::from_bytes(bytes, ct),
        }
        .map_err(|e| RegistryError::from_manifest(call.op, &url, e))?;
        if let Some(announced) = header_digest {
            announced.verify(manifest.bytes()).map_err(|e| {
                RegistryError::from_digest(call.op, &url, e).with_message(format!(
                    "Docker-Content-Digest says {announced}, the manifest bytes hash otherwise"
                ))
            })?;
        }
        Ok(manifest)
    }

    pub(super) async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        manifest: &Manifest,
    ) -> Result<()> {
        let scopes = push(repo);
        let call = self
            .manifest_call("PUT manifest", Method::PUT, repo, reference, &scopes)
            .header(CONTENT_TYPE, manifest.media_type());
        let url = display_url(&call.url);
        if let Some(d) = digest_reference(call.op, &url, reference)?
            && d != *manifest.digest()
        {
            return Err(RegistryError::new(ErrorKind::DigestInvalid, call.op, url)
                .with_message(format!("manifest is {}, not {d}", manifest.digest())));
        }
        let answer = self
            .send(&call, Some(manifest.bytes().clone()), &[201])
            .await?;
        if let Some(announced) = content_digest(call.op, &answer)? {
            announced.verify(manifest.bytes()).map_err(|e| {
                RegistryError::from_digest(call.op, &url, e).with_message(format!(
                    "the registry stored the manifest as {announced}, not {}",
                    manifest.digest()
                ))
            })?;
        }
        Ok(())
    }

    pub(super) async fn delete_manifest(&self, repo: &str, reference: &str) -> Result<bool> {
        let scopes = [crate::registry::auth::Scope::delete(repo)];
        let call = self.manifest_call("DELETE manifest", Method::DELETE, repo, reference, &scopes);
        let by_tag = digest_reference(call.op, &display_url(&call.url), reference)?.is_none();
        match self.send(&call, None, &[200, 202, 204, 404]).await {
            Ok(answer) => Ok(answer.status() != 404),
            // distribution 2.8 reads the tag as a digest and answers 400 DIGEST_INVALID.
            Err(mut e) if by_tag && matches!(e.status, Some(400 | 405)) => {
                e.kind = ErrorKind::Unsupported;
                e.message = "the registry deletes manifests by digest only".to_string();
                Err(e)
            }
            Err(e) => Err(e),
        }
    }
}
