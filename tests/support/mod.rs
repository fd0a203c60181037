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

pub mod cli;
pub mod daemon;
pub mod fixtures;
pub mod pki;
pub mod proxy;
pub mod raw;
pub mod registry;
pub mod skopeo;
pub mod tinyproxy;

pub use fixtures::{BuiltImage, Format, ImageSpec, RawManifest, sha256_digest};
pub use raw::{FetchedManifest, RawClient};
pub use registry::{LoggedRequest, RequestKind, RequestMark, TestRegistry, TestRegistryBuilder};
