//! ECR token renewal in a long-running process (issue 15), with an injected clock: the
//! [`Auth`] of a registry with ECR identity asks the ECR API (moto, a real implementation of it)
//! once, serves every request from that token while it is fresh, and asks again before the
//! token expires. moto's request log counts the `GetAuthorizationToken` calls.
//!
//! A file of its own because it sets the AWS variables in its own process environment, which
//! no other test may share.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossdock::registry::auth::cloud::{CloudAuth, CloudCredentials, EcrSettings};
use crossdock::registry::auth::{Auth, Clock};
use crossdock::registry::http::ProxySetting;
use http::HeaderValue;
use support::moto::Moto;

#[tokio::test]
async fn ecr_token_is_renewed_before_it_expires() {
    let moto = Moto::start();
    for (k, v) in moto.env() {
        // SAFETY: the only test of this binary, set before any other thread reads the
        // environment.
        unsafe { std::env::set_var(k, v) };
    }
    let client = reqwest::Client::new();
    let registry = "ecr.stand-in.test";
    let cloud = Arc::new(CloudCredentials::new(
        registry,
        &CloudAuth::Ecr(EcrSettings::default()),
        client.clone(),
        &ProxySetting::Environment,
    ));
    let start = Instant::now();
    let offset = Arc::new(Mutex::new(Duration::ZERO));
    let o = offset.clone();
    let clock: Clock = Arc::new(move || start + *o.lock().unwrap());
    let auth = Auth::new(client, registry, None)
        .with_cloud(cloud)
        .with_clock(clock);
    let challenge = HeaderValue::from_static("Basic realm=\"ecr\"");

    let first = auth
        .on_unauthorized(Some(&challenge), &[], None)
        .await
        .unwrap();
    assert_eq!(moto.calls(), 1);
    assert_eq!(auth.cached_header(&[]), Some(first.clone()));
    // moto's expiresAt lies in the past (2015), which crossdock takes as a skewed clock: the
    // token is then taken to live one hour, renewed after 45 minutes.
    *offset.lock().unwrap() = Duration::from_secs(44 * 60);
    assert_eq!(auth.cached_header(&[]), Some(first.clone()), "still fresh");
    *offset.lock().unwrap() = Duration::from_secs(46 * 60);
    assert_eq!(
        auth.cached_header(&[]),
        None,
        "due for renewal: not served from cache"
    );
    let renewed = auth
        .on_unauthorized(Some(&challenge), &[], None)
        .await
        .unwrap();
    assert_eq!(moto.calls(), 2, "a new GetAuthorizationToken call");
    assert_eq!(renewed, first, "moto issues the same token again");
    assert!(!format!("{auth:?}").contains("auth-token"));
}
