//! Registry authentication (placeholder: being written; see the interface below).
//!
//! Interface the HTTP backend relies on:
//! - `Secret`: a string whose Debug/Display print `***`; `expose()` gives the value.
//! - `Credentials`: `Basic { username, password: Secret }`, `IdentityToken(Secret)` (OAuth2
//!   refresh token from `docker login`), `RegistryToken(Secret)` (a static bearer token).
//! - `Scope`: `repository:<name>:<actions>`; helpers `Scope::pull(repo)`, `Scope::push_pull(repo)`.
//! - `Auth::new(client, registry, credentials)`: per registry host;
//!   `Auth::cached_header(&[Scope]) -> Option<HeaderValue>` (no I/O);
//!   `Auth::on_unauthorized(challenge, &[Scope]) -> Result<HeaderValue, AuthError>` after a 401.
