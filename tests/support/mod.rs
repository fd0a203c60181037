//! End-to-end test harness shared by every file in `tests/` (each does `mod support;`).
//!
//! It owns the *peer* side of every end-to-end test: real CNCF distribution 2.8 registries
//! (`docker-registry`) started as child processes on free loopback ports ([`TestRegistry`]),
//! deterministic image fixtures ([`fixtures`]), a deliberately independent raw HTTP client for
//! seeding and checking registries ([`raw`]), a wrapper around the peer tool `skopeo`
//! ([`skopeo`]), the one launcher of the crossdock binary ([`cli`]) and the one harness for its
//! daemon ([`daemon`]). None of it uses crossdock's own transport: a test that seeds or checks a
//! registry with the code under test would prove nothing.
//!
//! Why real registries and not mocks: distribution has quirks (Accept negotiation, upload
//! Location tokens, unsorted tag lists, …; bench/regbench holds the scripts that measured them)
//! that a mock would only reproduce if we already knew them.
#![allow(dead_code, unused_imports)]

pub(crate) mod cli;
pub(crate) mod config_keys;
pub(crate) mod daemon;
pub(crate) mod fixtures;
pub(crate) mod form;
pub(crate) mod moto;
pub(crate) mod pki;
pub(crate) mod proxy;
pub(crate) mod prune;
pub(crate) mod raw;
pub(crate) mod registry;
pub(crate) mod skopeo;
pub(crate) mod tinyproxy;
pub(crate) mod token_realm;

pub(crate) use fixtures::{BuiltImage, Format, ImageSpec, RawManifest, sha256_digest};
pub(crate) use raw::{FetchedManifest, RawClient};
pub(crate) use registry::{
    LoggedRequest, RequestKind, RequestMark, TestRegistry, TestRegistryBuilder,
};
