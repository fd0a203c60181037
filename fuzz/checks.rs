//! What each fuzz target checks, in one file that two builds include with `#[path]`: the
//! cargo-fuzz crate (`fuzz/fuzz_targets/*.rs`, nightly flags, libFuzzer) and the main package's
//! replay test (`tests/fuzz_corpus.rs`, stable, no cargo-fuzz), so that CI runs exactly the
//! properties the fuzzers ran over the committed corpus.
//!
//! Each function takes one raw input and panics when a property breaks; a panic is how
//! libFuzzer, and the replay test, learn of a finding. Besides "never panics", each checks what
//! is cheap to state: a reference prints as text that parses back to it, a manifest's digest is
//! the sha256 of its exact bytes and filtering an index keeps entries and the rest of the
//! document untouched, a parsed challenge re-rendered parses to the same challenges, and a
//! configuration's problems point inside the text and never quote a secret.

use std::path::Path;

use bytes::Bytes;
use crossdock::config::{Origin, load_str};
use crossdock::manifest::{Descriptor, Manifest, ManifestView, media_type};
use crossdock::reference::{MAX_NAME_LEN, MAX_TAG_LEN, Reference};
use crossdock::registry::auth::challenge::{RawChallenge, parse_challenges};
use crossdock::registry::auth::{Challenge, ChallengeError, parse_challenge};
use sha2::{Digest as _, Sha256};

/// `Reference::parse`: no panic; a parsed reference prints as text that parses to an equal
/// reference (and prints the same again), rebuilds from its parts, and respects the limits.
pub(crate) fn reference(data: &[u8]) {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(r) = Reference::parse(input) else {
        return;
    };
    let shown = r.to_string();
    let again = Reference::parse(&shown)
        .unwrap_or_else(|e| panic!("{input:?} prints as {shown:?}, which does not parse: {e}"));
    assert_eq!(
        again, r,
        "{input:?} prints as {shown:?}, which parses differently"
    );
    assert_eq!(again.to_string(), shown, "printing {input:?} is not stable");
    let rebuilt = Reference::from_parts(r.registry(), r.repository(), r.tag(), r.digest())
        .unwrap_or_else(|e| panic!("{input:?} does not rebuild from its parts: {e}"));
    assert_eq!(rebuilt, r, "{input:?} rebuilt from its parts differs");
    if let Some(tag) = r.tag() {
        assert!(tag.len() <= MAX_TAG_LEN, "{input:?}: tag over the limit");
        Reference::validate_tag(tag)
            .unwrap_or_else(|e| panic!("{input:?} kept a tag that does not validate: {e}"));
    }
    if r.layout_path().is_some() {
        assert_eq!(r.repository(), "", "{input:?}: a layout has no repository");
    } else {
        let repo = r.repository();
        assert!(
            repo.len() <= MAX_NAME_LEN,
            "{input:?}: repository over the limit"
        );
        for c in repo.split('/') {
            assert!(
                !c.is_empty() && c != "." && c != "..",
                "{input:?}: component {c:?}"
            );
            assert!(
                !c.bytes().any(|b| b.is_ascii_uppercase()),
                "{input:?}: uppercase component {c:?}"
            );
        }
        assert!(!r.registry().is_empty(), "{input:?}: empty registry");
    }
    let _ = (r.api_host(), r.is_loopback(), r.manifest_reference());
    let defaulted = r.with_default_tag();
    assert!(defaulted.tag().is_some() || defaulted.digest().is_some());
}

/// The `Content-Type` values every manifest input is tried with: none (the body must say), each
/// manifest type, one with a parameter, and a type that names no manifest.
const CONTENT_TYPES: [Option<&str>; 7] = [
    None,
    Some(media_type::OCI_MANIFEST),
    Some(media_type::OCI_INDEX),
    Some(media_type::DOCKER_MANIFEST),
    Some(media_type::DOCKER_MANIFEST_LIST),
    Some("application/vnd.oci.image.index.v1+json; charset=utf-8"),
    Some("application/json"),
];

/// `Manifest::from_bytes` with each of [`CONTENT_TYPES`], then `filter_index` on what parses:
/// no panic; a manifest keeps its exact bytes, its digest is their sha256, its media type is a
/// manifest type that agrees with the header; the media type it reads without a header is
/// accepted when given as the header.
pub(crate) fn manifest(data: &[u8]) {
    let sha256 = format!("sha256:{}", hex::encode(Sha256::digest(data)));
    for content_type in CONTENT_TYPES {
        let Ok(m) = Manifest::from_bytes(Bytes::copy_from_slice(data), content_type) else {
            continue;
        };
        check_manifest(&m, data, &sha256);
        let header = content_type.map(|c| c.split(';').next().unwrap_or("").trim());
        if let Some(h) = header.filter(|h| media_type::is_manifest(h)) {
            assert_eq!(
                m.media_type(),
                h,
                "a manifest served as {h} was read as another"
            );
        }
        let expecting =
            Manifest::from_bytes_expecting(Bytes::copy_from_slice(data), content_type, m.digest())
                .unwrap_or_else(|e| panic!("from_bytes_expecting refused its own digest: {e}"));
        assert_eq!(expecting.media_type(), m.media_type());
        if content_type.is_none() {
            let again = Manifest::from_bytes(Bytes::copy_from_slice(data), Some(m.media_type()))
                .unwrap_or_else(|e| {
                    panic!(
                        "read as {} without a header, refused with it: {e}",
                        m.media_type()
                    )
                });
            assert_eq!(again.media_type(), m.media_type());
        }
    }
}

fn check_manifest(m: &Manifest, data: &[u8], sha256: &str) {
    assert_eq!(
        m.bytes().as_ref(),
        data,
        "the manifest's bytes are not the input"
    );
    assert_eq!(
        m.digest().to_string(),
        sha256,
        "digest is not sha256 of the bytes"
    );
    assert_eq!(m.size(), data.len() as u64);
    assert!(
        media_type::is_manifest(m.media_type()),
        "{}",
        m.media_type()
    );
    assert_eq!(m.is_index(), media_type::is_index(m.media_type()));
    let d = m.descriptor();
    assert_eq!((&d.digest, d.size), (m.digest(), m.size()));
    let _ = m.subject();
    let ManifestView::Index(index) = m.view() else {
        assert!(
            m.filter_index(|_| true).is_none(),
            "filtered an image manifest"
        );
        return;
    };
    let original = json_object(data);
    for (name, keep) in [
        ("all", (|_: &Descriptor| true) as fn(&Descriptor) -> bool),
        ("none", |_| false),
        ("even sizes", |d| d.size % 2 == 0),
    ] {
        let filtered = m
            .filter_index(keep)
            .unwrap_or_else(|| panic!("filter_index ({name}) gave nothing for an index"));
        let f_sha = format!("sha256:{}", hex::encode(Sha256::digest(filtered.bytes())));
        assert_eq!(filtered.digest().to_string(), f_sha);
        assert_eq!(filtered.media_type(), m.media_type());
        let ManifestView::Index(f_index) = filtered.view() else {
            panic!("filtering an index gave an image manifest");
        };
        let want: Vec<&Descriptor> = index.manifests.iter().filter(|d| keep(d)).collect();
        let got: Vec<&Descriptor> = f_index.manifests.iter().collect();
        assert_eq!(got, want, "filter_index ({name}) kept other entries");
        // Entries are kept verbatim and every other field of the document is untouched.
        let mut before = original.clone();
        let mut after = json_object(filtered.bytes());
        let raw_before = before.remove("manifests");
        let raw_after = after.remove("manifests");
        assert_eq!(after, before, "filter_index ({name}) changed other fields");
        if let (Some(serde_json::Value::Array(b)), Some(serde_json::Value::Array(a))) =
            (raw_before, raw_after)
        {
            let kept: Vec<_> = b
                .into_iter()
                .zip(&index.manifests)
                .filter(|(_, d)| keep(d))
                .map(|(v, _)| v)
                .collect();
            assert_eq!(a, kept, "filter_index ({name}) rewrote an entry");
        }
        // Filtering is a fixed point: keeping everything again changes no byte.
        let twice = filtered
            .filter_index(|_| true)
            .unwrap_or_else(|| panic!("a filtered index ({name}) cannot be filtered"));
        assert_eq!(twice.bytes(), filtered.bytes(), "filtering is not stable");
    }
}

fn json_object(bytes: &[u8]) -> serde_json::Map<String, serde_json::Value> {
    serde_json::from_slice(bytes).expect("a parsed manifest is a JSON object")
}

/// `parse_challenges` and `parse_challenge` on a `WWW-Authenticate` value: no panic; the two
/// agree; names are lowercase tokens, values hold no control characters (RFC 7230 allows only
/// HTAB); and the challenges rendered back to a header parse to the same challenges.
pub(crate) fn challenge(data: &[u8]) {
    let Ok(header) = std::str::from_utf8(data) else {
        return;
    };
    let all = parse_challenges(header);
    let chosen = parse_challenge(header);
    let all = match all {
        Err(e) => {
            assert_eq!(
                chosen,
                Err(e.clone()),
                "{header:?}: the two parsers disagree"
            );
            if let ChallengeError::Syntax { at, .. } = e {
                assert!(
                    at <= header.len(),
                    "{header:?}: error offset {at} past the end"
                );
            }
            return;
        }
        Ok(all) => all,
    };
    for c in &all {
        assert!(
            is_lower_token(&c.scheme),
            "{header:?}: scheme {:?}",
            c.scheme
        );
        assert!(
            c.token68.is_none() || c.params.is_empty(),
            "{header:?}: token68 and parameters"
        );
        for (k, v) in &c.params {
            assert!(is_lower_token(k), "{header:?}: parameter name {k:?}");
            assert!(
                !v.chars().any(|ch| ch.is_ascii_control() && ch != '\t'),
                "{header:?}: control character in the value of {k}: {v:?}"
            );
        }
    }
    match (&chosen, all.iter().find(|c| c.scheme == "bearer")) {
        (Ok(Challenge::Bearer { realm, .. }), Some(_)) => {
            assert!(
                !realm.is_empty() && realm.trim() == realm,
                "{header:?}: realm {realm:?}"
            )
        }
        (Err(ChallengeError::MissingRealm), Some(_)) => {}
        (Ok(Challenge::Basic { .. }), None) => {
            assert!(all.iter().any(|c| c.scheme == "basic"))
        }
        (Err(ChallengeError::Unsupported { .. }), None) => {
            assert!(!all.iter().any(|c| c.scheme == "basic"))
        }
        (other, bearer) => panic!("{header:?}: chose {other:?} (a bearer offered: {bearer:?})"),
    }
    let rendered = render(&all);
    let reparsed = parse_challenges(&rendered)
        .unwrap_or_else(|e| panic!("{header:?} rendered as {rendered:?}, which fails: {e}"));
    assert_eq!(
        reparsed, all,
        "{header:?} rendered as {rendered:?} parses differently"
    );
}

fn is_lower_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&b)
        })
}

/// Challenges written back as a header, every value as a quoted-string.
fn render(all: &[RawChallenge]) -> String {
    let mut out = Vec::new();
    for c in all {
        let mut s = c.scheme.clone();
        if let Some(t) = &c.token68 {
            s.push(' ');
            s.push_str(t);
        }
        let params: Vec<String> = c
            .params
            .iter()
            .map(|(k, v)| {
                let escaped: String = v
                    .chars()
                    .flat_map(|ch| match ch {
                        '"' | '\\' => vec!['\\', ch],
                        _ => vec![ch],
                    })
                    .collect();
                format!("{k}=\"{escaped}\"")
            })
            .collect();
        if !params.is_empty() {
            s.push(' ');
            s.push_str(&params.join(", "));
        }
        out.push(s);
    }
    out.join(", ")
}

/// Where the configuration under test claims to live: a folder that does not exist, so that
/// relative `password_file`, `ca_file` and `docker_config` paths read nothing.
const CONFIG_PATH: &str = "/nonexistent/crossdock-fuzz/crossdock.toml";

/// Replaces every secret value; chosen so that no configuration message could hold it by chance.
const SECRET_MARKER: &str = "fuzz-secret-7Qz3K";

/// `config::load_str` with an empty environment: no panic; a refused configuration has at least
/// one problem, each placed inside the text; and the same configuration with every value under
/// a `password` or `notifications_token` key replaced by a marker never shows the marker, in
/// its problems or in the plan's Debug output.
pub(crate) fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new(CONFIG_PATH);
    match load_str(path, text, std::iter::empty()) {
        Ok(plan) => {
            let _ = (plan.summary(), format!("{plan:?}"));
        }
        Err(errors) => {
            assert!(!errors.is_empty(), "refused without a problem");
            let lines: Vec<&str> = text.split('\n').collect();
            for e in errors.iter() {
                if let Some(Origin::File {
                    path: p,
                    line,
                    column,
                }) = &e.origin
                {
                    assert_eq!(p, path);
                    assert!(
                        (1..=lines.len()).contains(line),
                        "{e}: line {line} of {}",
                        lines.len()
                    );
                    let width = lines[line - 1].chars().count();
                    assert!(
                        (1..=width + 1).contains(column),
                        "{e}: line is {width} wide"
                    );
                }
                assert!(!e.message.is_empty());
            }
            let _ = errors.to_string();
        }
    }
    secrets_stay_hidden(text, path);
}

fn secrets_stay_hidden(text: &str, path: &Path) {
    if text.contains(SECRET_MARKER) {
        return;
    }
    let Ok(mut table) = text.parse::<toml::Table>() else {
        return;
    };
    let replaced = hide_secrets(&mut table, false);
    if replaced == 0 {
        return;
    }
    let Ok(redacted) = toml::to_string(&table) else {
        return;
    };
    // A key or another value could spell the marker through escapes: then it proves nothing.
    if redacted.matches(SECRET_MARKER).count() != replaced {
        return;
    }
    let shown = match load_str(path, &redacted, std::iter::empty()) {
        Ok(plan) => format!("{plan:?}"),
        Err(errors) => format!("{errors}\n{errors:?}"),
    };
    assert!(
        !shown.contains(SECRET_MARKER),
        "a secret is shown:\n{redacted}\n---\n{shown}"
    );
}

/// Replaces every string under a secret key (as `KeyPath::is_secret` defines them); returns
/// how many.
fn hide_secrets(table: &mut toml::Table, secret: bool) -> usize {
    table
        .iter_mut()
        .map(|(k, v)| hide_value(v, secret || k == "password" || k == "notifications_token"))
        .sum()
}

fn hide_value(v: &mut toml::Value, secret: bool) -> usize {
    match v {
        toml::Value::String(s) if secret => {
            *s = SECRET_MARKER.to_string();
            1
        }
        toml::Value::Table(t) => hide_secrets(t, secret),
        toml::Value::Array(a) => a.iter_mut().map(|v| hide_value(v, secret)).sum(),
        _ => 0,
    }
}
