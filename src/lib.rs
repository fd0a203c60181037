//! crossdock copies container images between registries without Docker.
//!
//! Layers, from the bottom: plain data types that do no I/O ([`reference`], [`digest`],
//! [`manifest`]); the transport ([`registry`]: a trait for "a place images live" and its
//! backends); the copy engine ([`copy`]) that uses only the trait; and on top the configuration
//! ([`config`], [`rule`]), scheduling ([`schedule`]), serving ([`server`],
//! [`metrics`]) and the command line ([`cli`]). Beside the copy: [`trust`] (the signature
//! policy checked before an image is copied) and [`audit`] (re-reading a mirror to prove it
//! intact).

pub mod audit;
pub mod cli;
pub mod config;
pub mod copy;
pub mod daemon;
pub mod digest;
pub mod manifest;
pub mod metrics;
pub mod reference;
pub mod registry;
pub mod rule;
pub mod schedule;
pub mod server;
pub mod trust;
