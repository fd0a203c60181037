//! Unit tests of the authentication handshake (Basic, static tokens, refusals, realms).
use super::*;
use crate::registry::ErrorKind;

fn auth(credentials: Option<Credentials>) -> Auth {
    Auth::new(reqwest::Client::new(), "r.example", credentials)
}

fn hv(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap()
}

#[test]
fn secrets_never_print() {
    let s = Secret::new("hunter2");
    assert_eq!(format!("{s:?}"), "***");
    assert_eq!(s.to_string(), "***");
    assert_eq!(s.expose(), "hunter2");
    for c in [
        Credentials::basic("alice", "hunter2"),
        Credentials::IdentityToken(Secret::new("hunter2")),
        Credentials::RegistryToken(Secret::new("hunter2")),
    ] {
        let debug = format!("{c:?}");
        assert!(
            !debug.contains("hunter2") && debug.contains("***"),
            "{debug}"
        );
        let a = auth(Some(c));
        let debug = format!("{a:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
    }
    assert!(format!("{:?}", Credentials::basic("alice", "x")).contains("alice"));
}

#[tokio::test]
async fn basic_flow() {
    let a = auth(Some(Credentials::basic("alice", "s3cret")));
    assert_eq!(
        a.cached_header(&[]),
        None,
        "nothing known before a challenge"
    );
    let challenge = hv(r#"Basic realm="Registry Realm""#);
    let h = a
        .on_unauthorized(Some(&challenge), &[], None)
        .await
        .unwrap();
    assert!(h.is_sensitive());
    // base64("alice:s3cret")
    assert_eq!(h, hv("Basic YWxpY2U6czNjcmV0"));
    assert_eq!(a.cached_header(&[Scope::pull("x")]), Some(h.clone()));
    // The same header refused again: the password is wrong, say so.
    let err = a
        .on_unauthorized(Some(&challenge), &[], Some(&h))
        .await
        .unwrap_err();
    assert!(matches!(err, AuthError::Refused { .. }), "{err}");
    assert!(err.to_string().contains("r.example"), "{err}");
    assert_eq!(err.kind(), ErrorKind::Unauthorized);
    // A 401 without a challenge still gets the password when there is one.
    assert_eq!(a.on_unauthorized(None, &[], None).await.unwrap(), h);
}

#[tokio::test]
async fn basic_without_or_with_unsuitable_credentials() {
    let challenge = hv(r#"Basic realm="x""#);
    let err = auth(None)
        .on_unauthorized(Some(&challenge), &[], None)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, AuthError::CredentialsRequired { registry } if registry == "r.example"),
        "{err}"
    );
    let err = auth(Some(Credentials::IdentityToken(Secret::new("tok"))))
        .on_unauthorized(Some(&challenge), &[], None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, AuthError::UnsuitableCredentials { .. }),
        "{err}"
    );
    let err = auth(None)
        .on_unauthorized(None, &[], None)
        .await
        .unwrap_err();
    assert!(matches!(err, AuthError::InvalidChallenge { .. }), "{err}");
    let err = auth(None)
        .on_unauthorized(Some(&hv("Negotiate")), &[], None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("negotiate"), "{err}");
}

#[tokio::test]
async fn static_registry_token() {
    let a = auth(Some(Credentials::RegistryToken(Secret::new("static-tok"))));
    let challenge = hv(r#"Bearer realm="https://auth.invalid/token",service="s""#);
    let h = a
        .on_unauthorized(Some(&challenge), &[Scope::pull("x")], None)
        .await
        .unwrap();
    assert_eq!(h, hv("Bearer static-tok"));
    assert!(h.is_sensitive());
    assert_eq!(a.cached_header(&[Scope::push_pull("y")]), Some(h.clone()));
    let err = a
        .on_unauthorized(Some(&challenge), &[Scope::pull("x")], Some(&h))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            AuthError::Refused {
                kind: "registry token",
                ..
            }
        ),
        "{err}"
    );
    assert!(!format!("{err:?}{err}").contains("static-tok"));
}

#[tokio::test]
async fn bad_realm_is_a_clear_error() {
    let a = auth(None);
    let err = a
        .on_unauthorized(Some(&hv(r#"Bearer realm="file:///etc/passwd""#)), &[], None)
        .await
        .unwrap_err();
    assert!(matches!(err, AuthError::InvalidRealm { .. }), "{err}");
    assert_eq!(err.kind(), ErrorKind::Invalid);
}

#[test]
fn auth_is_shareable() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Auth>();
}
