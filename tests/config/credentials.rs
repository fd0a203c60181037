//! Registry credentials and authentication in the configuration: a problem with a password file,
//! variable or Docker config names it, secrets never reach Debug output or errors, and the cloud
//! `auth` tables resolve into the registry's settings or are refused with their key.

use crossdock::config;
use crossdock::registry::auth::Credentials;

use crate::{Dir, MINIMAL, env, errors, load};

#[test]
fn credential_problems_name_the_file_or_variable() {
    let d = Dir::new();
    let text = r#"
[registries."docker.io"]
username = "me"
password_file = "secrets/hub"
[registries."ghcr.io"]
username = "me"
password_env = "GHCR_TOKEN_UNSET"
[registries."quay.io"]
password = "only-a-password"
[registries."example.com"]
username = "me"
password = "x"
password_file = "y"
[registries."registry.local:5000"]
docker_config = "docker/config.json"
[registries."https://bad.example"]
insecure = true
"#;
    std::fs::create_dir(d.path().join("docker")).unwrap();
    d.write(
        "docker/config.json",
        r#"{"auths": {"other.io": {"auth": "dTpw"}}}"#,
    );
    let p = d.write("c.toml", &format!("{text}{MINIMAL}"));
    let err = config::load_with_env(&p, env(&[])).unwrap_err();
    let text = err.to_string();
    let missing = d.path().join("secrets/hub");
    assert!(
        text.contains(&format!(
            "registries.\"docker.io\".password_file: cannot read {}",
            missing.display()
        )),
        "{text}"
    );
    assert!(
        text.contains(
            "registries.\"ghcr.io\".password_env: environment variable GHCR_TOKEN_UNSET is not set"
        ),
        "{text}"
    );
    assert!(
        text.contains("registries.\"quay.io\".username: missing"),
        "{text}"
    );
    assert!(
        text.contains("registries.\"example.com\".password_file: give one of password, password_file, password_env"),
        "{text}"
    );
    assert!(
        text.contains("registries.\"registry.local:5000\".docker_config: ")
            && text.contains("holds no credentials for registry.local:5000"),
        "{text}"
    );
    assert!(
        text.contains(
            "registries.\"https://bad.example\": \"https://bad.example\" is not a registry name"
        ),
        "{text}"
    );
    assert_eq!(err.len(), 6, "{text}");
}

#[test]
fn secrets_stay_out_of_debug_and_errors() {
    let d = Dir::new();
    d.write("pw", "file-secret-123");
    let text = format!(
        r#"
[registries."docker.io"]
username = "me"
password = "inline-secret-456"
[registries."ghcr.io"]
username = "me"
password_file = "pw"
[registries."quay.io"]
username = "me"
password_env = "QUAY_PW"
[registries."localhost:5000"]
docker_config = "config.json"
{MINIMAL}"#
    );
    d.write(
        "config.json",
        // base64("robot:json-secret-789")
        r#"{"auths": {"localhost:5000": {"auth": "cm9ib3Q6anNvbi1zZWNyZXQtNzg5"}}}"#,
    );
    let p = d.write("c.toml", &text);
    let plan = config::load_with_env(&p, env(&[("QUAY_PW", "env-secret-000")])).unwrap();
    let debug = format!("{plan:?} {:?}", plan.registry_options("localhost:5000"));
    for secret in [
        "inline-secret-456",
        "file-secret-123",
        "env-secret-000",
        "json-secret-789",
    ] {
        assert!(!debug.contains(secret), "{secret} in {debug}");
    }
    // The secrets did arrive.
    match plan.registry_options("localhost:5000").credentials {
        Some(Credentials::Basic { username, password }) => {
            assert_eq!(
                (username.as_str(), password.expose()),
                ("robot", "json-secret-789")
            )
        }
        other => panic!("{other:?}"),
    }

    // A password of the wrong type, from the file or the environment, is not quoted.
    let bad = MINIMAL.to_string()
        + "[registries.\"docker.io\"]\nusername = \"me\"\npassword = 987654321\n";
    let errs = errors(&bad, &[]);
    assert!(
        errs.iter()
            .any(|e| e.contains("registries.\"docker.io\".password: invalid value (not shown")),
        "{errs:#?}"
    );
    assert!(!errs.iter().any(|e| e.contains("987654321")), "{errs:#?}");
    let errs = errors(
        MINIMAL,
        &[("CROSSDOCK_RULES__0__PASSWORD", "env-secret-111")],
    );
    assert!(
        !errs.iter().any(|e| e.contains("env-secret-111")),
        "{errs:#?}"
    );
    assert!(
        errs.iter()
            .any(|e| e.contains("rules[0].password: unknown key `password`")),
        "{errs:#?}"
    );
    // A syntax error on a password line shows no excerpt of it.
    let errs = errors(
        "[registries.\"docker.io\"]\npassword = \"unterminated-secret-222\n",
        &[],
    );
    assert!(
        !errs.iter().any(|e| e.contains("unterminated-secret-222")),
        "{errs:#?}"
    );
}

/// Issue 15: `auth` and the cloud tables resolve into the registry's settings; contradictions
/// are reported with their key.
#[test]
fn cloud_auth_keys_resolve_and_contradictions_are_reported() {
    use crossdock::registry::auth::cloud::{AuthChoice, CloudAuth, TagMutability};
    let text = format!(
        r#"{MINIMAL}
[registries."123456789012.dkr.ecr.eu-west-1.amazonaws.com".ecr]
create_repositories = true
image_tag_mutability = "immutable"
role_arn = "arn:aws:iam::210987654321:role/pusher"

[registries."myreg.azurecr.io"]
auth = "acr"

[registries."gcr.io"]
auth = "static"
username = "_json_key"
password = "x"
"#
    );
    let plan = load(&text, &[]).unwrap_or_else(|e| panic!("{e}"));
    let ecr = plan.registry_options("123456789012.dkr.ecr.eu-west-1.amazonaws.com");
    match ecr.auth {
        AuthChoice::Cloud(CloudAuth::Ecr(s)) => {
            assert!(s.create_repositories);
            assert_eq!(s.image_tag_mutability, Some(TagMutability::Immutable));
            assert_eq!(
                s.role_arn.as_deref(),
                Some("arn:aws:iam::210987654321:role/pusher")
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        plan.registry_options("myreg.azurecr.io").auth,
        AuthChoice::Cloud(CloudAuth::Acr(_))
    ));
    assert_eq!(plan.registry_options("gcr.io").auth, AuthChoice::Static);
    assert_eq!(plan.registry_options("docker.io").auth, AuthChoice::Detect);

    let bad = format!(
        r#"{MINIMAL}
[registries."a.example"]
auth = "aws"
[registries."b.example"]
auth = "ecr"
username = "AWS"
password = "x"
[registries."c.example"]
auth = "acr"
[registries."c.example".gcp]
credentials_file = "key.json"
[registries."d.example".ecr]
role_arn = "pusher"
scan_on_push = true
"#
    );
    let errs = errors(&bad, &[]).join("\n");
    for wanted in [
        "registries.\"a.example\".auth",
        "unknown auth \"aws\": expected one of static, ecr, acr, gcp",
        "registries.\"b.example\".auth",
        "takes credentials from the cloud identity",
        "registries.\"c.example\".gcp",
        "applies to auth = \"gcp\", but auth is \"acr\"",
        "registries.\"d.example\".ecr.role_arn",
        "not a role ARN",
        "registries.\"d.example\".ecr.create_repositories",
    ] {
        assert!(errs.contains(wanted), "{wanted:?} not in:\n{errs}");
    }
}
