//! Unit tests of reference parsing: examples, then properties (proptest).

use super::*;

const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

#[test]
fn docker_hub_normalisation() {
    let r = Reference::parse("alpine").unwrap().with_default_tag();
    assert_eq!(r.to_string(), "docker.io/library/alpine:latest");
    assert_eq!(r.api_host(), "registry-1.docker.io");
    let r = Reference::parse("bitnami/redis:7").unwrap();
    assert_eq!(r.to_string(), "docker.io/bitnami/redis:7");
    let r = Reference::parse("index.docker.io/library/alpine").unwrap();
    assert_eq!(r.registry(), "docker.io");
}

#[test]
fn registries_with_ports_and_localhost() {
    let r = Reference::parse("localhost:5000/a/b/c:v1").unwrap();
    assert_eq!(
        (r.registry(), r.repository(), r.tag()),
        ("localhost:5000", "a/b/c", Some("v1"))
    );
    assert!(r.is_loopback());
    let r = Reference::parse("localhost/foo").unwrap();
    assert_eq!(r.registry(), "localhost");
    let r = Reference::parse("127.0.0.1:5201/x").unwrap();
    assert!(r.is_loopback());
    let r = Reference::parse("[::1]:5000/x:t").unwrap();
    assert_eq!(r.registry(), "[::1]:5000");
    assert!(r.is_loopback());
    let r = Reference::parse("myhost:5000/x").unwrap();
    assert_eq!(r.registry(), "myhost:5000");
    assert!(!r.is_loopback());
    let r = Reference::parse("ghcr.io/org/img").unwrap();
    assert_eq!(r.api_host(), "ghcr.io");
}

#[test]
fn tag_and_digest_together() {
    let r = Reference::parse(&format!("quay.io/a/b:v1@{D}")).unwrap();
    assert_eq!(r.tag(), Some("v1"));
    assert_eq!(r.digest().unwrap().to_string(), D);
    assert_eq!(r.manifest_reference(), D);
    assert_eq!(r.to_string(), format!("quay.io/a/b:v1@{D}"));
}

#[test]
fn errors_name_the_bad_part() {
    let e = Reference::parse("Docker.io/Library/Alpine").unwrap_err();
    assert!(
        matches!(e, ReferenceError::Repository { ref component, .. } if component == "Library"),
        "{e}"
    );
    let long = "a".repeat(129);
    let e = Reference::parse(&format!("alpine:{long}")).unwrap_err();
    assert!(matches!(e, ReferenceError::Tag { .. }), "{e}");
    let e = Reference::parse("localhost:5000/../etc/passwd").unwrap_err();
    assert!(e.to_string().contains("traversal"), "{e}");
    let e = Reference::parse("alpine@sha256:abc").unwrap_err();
    assert!(matches!(e, ReferenceError::Digest { .. }), "{e}");
    let e = Reference::parse("host:99999/x").unwrap_err();
    assert!(matches!(e, ReferenceError::Registry { .. }), "{e}");
    assert!(Reference::parse("a//b").is_err());
    assert!(Reference::parse("a/b:").is_err());
    assert!(Reference::parse("a/-b").is_err());
    assert!(Reference::parse("a/b...c").is_err());
    assert!(Reference::parse("").is_err());
    assert!(Reference::parse(&format!("x/{}", "a".repeat(300))).is_err());
}

#[test]
fn url_schemes_are_named() {
    let e = Reference::parse("https://reg.example/x:1").unwrap_err();
    assert_eq!(
        e.to_string(),
        r#""https://reg.example/x:1" is a URL, not an image reference: drop the https:// and write "reg.example/x:1""#
    );
    let e = Reference::parse("docker://alpine").unwrap_err();
    assert!(
        matches!(e, ReferenceError::Scheme { ref scheme, .. } if scheme == "docker"),
        "{e}"
    );
}

#[test]
fn separators() {
    for ok in ["a/b.c", "a/b_c", "a/b__c", "a/b---c", "a0/9z"] {
        assert!(Reference::parse(ok).is_ok(), "{ok}");
    }
    for bad in ["a/b..c", "a/b___c", "a/b._c", "a/_b", "a/b-"] {
        assert!(Reference::parse(bad).is_err(), "{bad}");
    }
}

mod properties {
    use super::super::*;
    use proptest::prelude::*;

    fn component() -> impl Strategy<Value = String> {
        "[a-z0-9]{1,6}([._-][a-z0-9]{1,6}){0,2}"
    }

    fn registry() -> impl Strategy<Value = Option<String>> {
        prop_oneof![
            Just(None),
            Just(Some("localhost".to_string())),
            (1u16..65535).prop_map(|p| Some(format!("localhost:{p}"))),
            "[a-z]{1,8}\\.(io|com|example)".prop_map(Some),
            ("[a-z]{1,8}", 1u16..65535).prop_map(|(h, p)| Some(format!("{h}:{p}"))),
            (1u8..255).prop_map(|n| Some(format!("127.0.0.{n}:5000"))),
            Just(Some("[::1]:5000".to_string())),
        ]
    }

    fn reference() -> impl Strategy<Value = String> {
        (
            registry(),
            // Without a registry, a first component holding '.' would name one (as in docker).
            "[a-z0-9]{1,6}([_-][a-z0-9]{1,6}){0,2}",
            prop::collection::vec(component(), 0..3),
            prop::option::of("[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}"),
            prop::option::of("[0-9a-f]{64}"),
        )
            .prop_map(|(reg, first, rest, tag, digest)| {
                let path = std::iter::once(first)
                    .chain(rest)
                    .collect::<Vec<_>>()
                    .join("/");
                let mut s = match reg {
                    Some(r) => format!("{r}/{path}"),
                    None => path,
                };
                if let Some(t) = tag {
                    s.push(':');
                    s.push_str(&t);
                }
                if let Some(d) = digest {
                    s.push_str("@sha256:");
                    s.push_str(&d);
                }
                s
            })
    }

    proptest! {
        #[test]
        fn display_of_parse_round_trips(input in reference()) {
            let r = Reference::parse(&input).unwrap();
            let shown = r.to_string();
            let again = Reference::parse(&shown).unwrap();
            prop_assert_eq!(&again, &r);
            prop_assert_eq!(again.to_string(), shown);
        }

        #[test]
        fn parse_never_panics(input in "\\PC{0,80}") {
            let _ = Reference::parse(&input);
        }

        #[test]
        fn uppercase_paths_are_refused(input in "[a-z]{1,5}/[A-Z][a-z]{0,5}") {
            prop_assert!(Reference::parse(&input).is_err());
        }
    }
}
