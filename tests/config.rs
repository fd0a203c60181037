//! The daemon's configuration as a user meets it: good files become the expected plan, the
//! environment overrides what it should, bad files are refused with every problem at once (key
//! path, line and column, nearest valid key), secrets stay out of errors and Debug output, shards
//! split the rules exactly, and tag selection works against a real registry with many tags.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crossdock::config::{self, ConfigErrors, Origin, Plan, Shard};
use crossdock::manifest::Platform;
use crossdock::reference::Reference;
use crossdock::registry::auth::Credentials;
use crossdock::registry::http::HttpRegistry;
use crossdock::rule::OnConflict;
use crossdock::schedule::Schedule;
use support::TestRegistry;
use support::fixtures::{Format, ImageSpec};

/// A folder with a config file (and whatever else a test puts next to it).
struct Dir {
    dir: tempfile::TempDir,
}

impl Dir {
    fn new() -> Dir {
        Dir {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

fn load(text: &str, vars: &[(&str, &str)]) -> Result<Plan, ConfigErrors> {
    let d = Dir::new();
    let p = d.write("crossdock.toml", text);
    config::load_with_env(&p, env(vars))
}

fn errors(text: &str, vars: &[(&str, &str)]) -> Vec<String> {
    match load(text, vars) {
        Ok(_) => panic!("expected configuration errors"),
        Err(e) => e.iter().map(|e| e.to_string()).collect(),
    }
}

const MINIMAL: &str = r#"
[[rules]]
name = "alpine"
source = "localhost:5000/library/alpine"
target = "localhost:5001/mirror/{repo}"
tags = ["latest"]
"#;

#[test]
fn example_config_loads_cleanly() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml");
    let plan = config::load_with_env(&path, env(&[]))
        .unwrap_or_else(|e| panic!("config.example.toml:\n{e}"));
    assert_eq!(plan.server.listen.to_string(), "127.0.0.1:9090");
    let names: Vec<&str> = plan.rules.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["hello", "alpine", "tools", "pinned-releases"]);
    // The first rule runs with nothing installed: the example image, from and into layout
    // folders beside the file (tests/example.rs runs it).
    let dir = path.parent().unwrap();
    let hello = &plan.rules[0];
    assert_eq!(
        hello.sources[0].layout_path(),
        Some(&*dir.join("examples/hello"))
    );
    let target = hello.target_for(&hello.sources[0], "1.0").unwrap();
    assert_eq!(target.layout_path(), Some(&*dir.join("mirror")));
    // The others are runnable next to two local registries: no public registry is named.
    for r in &plan.rules[1..] {
        for s in &r.sources {
            assert_eq!(s.registry(), "localhost:5000", "{}", r.name);
            assert_eq!(
                r.target_for(s, "x").unwrap().registry(),
                "localhost:5001",
                "{}",
                r.name
            );
        }
    }
    let summary = config::check(&path).unwrap();
    assert_eq!((summary.rules, summary.sources), (4, 5));
    assert!(summary.to_string().contains("4 rules"), "{summary}");
}

#[test]
fn good_file_becomes_the_expected_plan() {
    let d = Dir::new();
    d.write("hub-password", "s3cret-from-file\n");
    d.write(
        "ca.pem",
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    );
    let text = r#"
[server]
listen = "0.0.0.0:9191"

[daemon]
max_concurrent_images = 7
run_on_start = false
shutdown_grace = "45s"
jitter = "2m"

[defaults]
platforms = ["linux/amd64"]
referrers = false
on_conflict = "keep"
schedule = "@every 2h"
timeout = "20m"

[registries."docker.io"]
username = "hubuser"
password_file = "hub-password"
requests_per_second = 2.5
ratelimit_reserve = 10

[registries."ghcr.io"]
username = "gh"
password_env = "GH_TOKEN"
ca_file = "ca.pem"
chunk_size = "8MiB"
max_concurrency = 3

[[rules]]
name = "alpine"
source = "alpine"
target = "localhost:5001/hub/{repo}"
tags = ["3.20", "latest"]

[[rules]]
name = "tools"
source = ["docker.io/library/busybox", "ghcr.io/org/tool"]
target = "localhost:5001/{registry}/{repo}"
platforms = []
referrers = true
on_conflict = "overwrite"
schedule = "0 9 * * 1-5"
timeout = "5m"
[rules.tags]
list = ["stable"]
include = ['^v?\d']
exclude = ["rc"]
semver = ">=1.2"
newest = 2
"#;
    let p = d.write("crossdock.toml", text);
    let plan = config::load_with_env(&p, env(&[("GH_TOKEN", "ghp_token_value")]))
        .unwrap_or_else(|e| panic!("{e}"));

    assert_eq!(plan.path, p);
    assert_eq!(plan.server.listen.to_string(), "0.0.0.0:9191");
    assert_eq!(plan.daemon.max_concurrent_images, 7);
    assert!(!plan.daemon.run_on_start);
    assert_eq!(plan.daemon.shutdown_grace, Duration::from_secs(45));
    assert_eq!(plan.daemon.jitter, Duration::from_secs(120));

    // Defaults resolved into the first rule.
    let alpine = plan.rule("alpine").unwrap();
    assert_eq!(
        alpine.sources,
        [Reference::parse("docker.io/library/alpine").unwrap()]
    );
    assert_eq!(alpine.tags.list, ["3.20", "latest"]);
    assert!(!alpine.tags.needs_tag_list());
    assert_eq!(alpine.platforms, [Platform::parse("linux/amd64").unwrap()]);
    assert!(!alpine.referrers);
    assert_eq!(alpine.on_conflict, OnConflict::Keep);
    assert_eq!(alpine.schedule, Schedule::Every(Duration::from_secs(7200)));
    assert_eq!(alpine.timeout, Duration::from_secs(1200));
    assert_eq!(
        alpine
            .target_for(&alpine.sources[0], "3.20")
            .unwrap()
            .to_string(),
        "localhost:5001/hub/library/alpine:3.20"
    );

    // The rule's own values win, including an explicitly empty platform list.
    let tools = plan.rule("tools").unwrap();
    assert_eq!(tools.sources.len(), 2);
    assert!(tools.platforms.is_empty());
    assert!(tools.referrers);
    assert_eq!(tools.on_conflict, OnConflict::Overwrite);
    assert_eq!(tools.schedule.to_string(), "0 9 * * 1-5");
    assert_eq!(tools.timeout, Duration::from_secs(300));
    assert!(tools.tags.needs_tag_list());
    let available: Vec<String> = [
        "1.0", "1.2", "v1.3.0", "1.4-rc1", "2.0.1", "latest", "stable",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(tools.tags.select(&available), ["stable", "2.0.1", "v1.3.0"]);
    assert_eq!(
        tools
            .target_for(&tools.sources[1], "v1")
            .unwrap()
            .to_string(),
        "localhost:5001/ghcr.io/org/tool:v1"
    );

    // Registries: by name or Docker Hub's API host; credentials read and wrapped.
    let hub = plan.registry_options("registry-1.docker.io");
    assert_eq!(hub, plan.registry_options("docker.io"));
    match &hub.credentials {
        Some(Credentials::Basic { username, password }) => {
            assert_eq!(username, "hubuser");
            // The file's trailing newline is not part of the password.
            assert_eq!(password.expose(), "s3cret-from-file");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(hub.requests_per_second, Some(2.5));
    assert_eq!(hub.ratelimit_reserve, 10);
    assert_eq!(hub.max_concurrency, config::DEFAULT_MAX_CONCURRENCY);
    let gh = plan.registry_options("ghcr.io");
    match &gh.credentials {
        Some(Credentials::Basic { password, .. }) => {
            assert_eq!(password.expose(), "ghp_token_value")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        gh.ca_file.as_deref(),
        Some(d.path().join("ca.pem").as_path())
    );
    assert_eq!(gh.chunk_size, Some(8 << 20));
    assert_eq!(gh.max_concurrency, 3);
    let opts = gh.http_options("ghcr.io");
    assert!(!opts.plain_http);
    assert_eq!(opts.max_concurrent_requests, 3);
    // A registry the file does not name gets defaults; loopback speaks plain HTTP.
    let local = plan.registry_options("localhost:5001");
    assert_eq!(local, config::RegistrySettings::default());
    assert!(local.http_options("localhost:5001").plain_http);
    assert_eq!(
        plan.configured_registries().collect::<Vec<_>>(),
        ["docker.io", "ghcr.io"]
    );
}

#[test]
fn environment_overrides_file_values() {
    let text = r#"
[server]
listen = "127.0.0.1:9090"
[registries."localhost:5000"]
max_concurrency = 2
[[rules]]
name = "my-rule"
source = "localhost:5000/a"
target = "localhost:5001/{repo}"
tags = ["latest"]
schedule = "@hourly"
[[rules]]
name = "other"
source = "localhost:5000/b"
target = "localhost:5001/{repo}"
tags = ["latest"]
"#;
    let plan = load(
        text,
        &[
            ("CROSSDOCK_SERVER__LISTEN", "0.0.0.0:9999"),
            ("CROSSDOCK_DAEMON__MAX_CONCURRENT_IMAGES", "12"),
            ("CROSSDOCK_REGISTRIES__LOCALHOST_5000__MAX_CONCURRENCY", "5"),
            ("CROSSDOCK_RULES__MY_RULE__SCHEDULE", "30 1 * * 0"),
            ("CROSSDOCK_RULES__1__TIMEOUT", "7m"),
            ("CROSSDOCK_RULES__1__PLATFORMS", r#"["linux/arm64"]"#),
            // Not configuration keys: left to the command line.
            ("CROSSDOCK_SHARD", "0/2"),
            ("CROSSDOCK_LOG_FORMAT", "json"),
        ],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(plan.server.listen.to_string(), "0.0.0.0:9999");
    assert_eq!(plan.daemon.max_concurrent_images, 12);
    assert_eq!(plan.registry_options("localhost:5000").max_concurrency, 5);
    assert_eq!(plan.rules[0].schedule.to_string(), "30 1 * * 0");
    assert_eq!(plan.rules[1].timeout, Duration::from_secs(420));
    assert_eq!(
        plan.rules[1].platforms,
        [Platform::parse("linux/arm64").unwrap()]
    );

    // A bad value from the environment is reported as coming from its variable.
    let errs = errors(
        text,
        &[
            ("CROSSDOCK_SERVER__LISTEN", "nowhere"),
            ("CROSSDOCK_SERVR__LISTEN", "0.0.0.0:1"),
            ("CROSSDOCK_RULES__NOSUCH__SCHEDULE", "@daily"),
        ],
    );
    assert_eq!(errs.len(), 3, "{errs:#?}");
    assert!(
        errs.iter().any(|e| e.starts_with("environment variable CROSSDOCK_SERVER__LISTEN: server.listen: invalid address \"nowhere\"")),
        "{errs:#?}"
    );
    assert!(
        errs.iter().any(|e| e.contains("CROSSDOCK_SERVR__LISTEN")
            && e.contains("servr: unknown key `servr`; did you mean `server`?")),
        "{errs:#?}"
    );
    assert!(
        errs.iter()
            .any(|e| e.contains("CROSSDOCK_RULES__NOSUCH__SCHEDULE")
                && e.contains("no entry named \"nosuch\"")),
        "{errs:#?}"
    );
}

#[test]
fn every_problem_is_reported_with_its_key_path_and_position() {
    let d = Dir::new();
    let text = r#"[server]
listen = "localhost"

[daemon]
max_concurrent_images = "many"
shutdown_grace = "soon"

[registries."docker.io"]
username = "me"
password_file = "no-such-file"

[[rules]]
name = "one"
source = "docker.io/library/alpine:3.20"
target = "localhost:5001/{repo}"
tags = ["latest"]
shedule = "@daily"

[[rules]]
name = "two"
source = "localhost:5000/two"
target = "localhost:5001/{repo}"
schedule = "61 * * * *"
platforms = ["linux"]
[rules.tags]
include = ["(unclosed"]
semver = ">>1"

[[rules]]
name = "one"
source = ["localhost:5000/a/x", "localhost:5000/b/x"]
target = "localhost:5001/{name}"
tags = ["ok", "bad tag"]
on_conflict = "overwite"
timeout = "1 fortnight"

[[rules]]
source = "Localhost:5000/UPPER"
"#;
    let p = d.write("bad.toml", text);
    let err = config::load_with_env(&p, env(&[])).unwrap_err();
    let lines: Vec<String> = err.iter().map(|e| e.to_string()).collect();
    let file = p.display().to_string();
    let expect = [
        // (line:column, key path, part of the message)
        ("2:10", "server.listen", "invalid address \"localhost\""),
        (
            "5:25",
            "daemon.max_concurrent_images",
            "found string \"many\"",
        ),
        ("6:18", "daemon.shutdown_grace", "invalid duration \"soon\""),
        (
            "10:17",
            "registries.\"docker.io\".password_file",
            "no-such-file",
        ),
        ("14:10", "rules[0].source", "names a tag or digest"),
        (
            "17:1",
            "rules[0].shedule",
            "unknown key `shedule`; did you mean `schedule`?",
        ),
        (
            "23:12",
            "rules[1].schedule",
            "invalid cron line \"61 * * * *\"",
        ),
        (
            "24:14",
            "rules[1].platforms[0]",
            "invalid platform \"linux\"",
        ),
        (
            "26:12",
            "rules[1].tags.include[0]",
            "invalid regex \"(unclosed\"",
        ),
        (
            "27:10",
            "rules[1].tags.semver",
            "invalid semver range \">>1\"",
        ),
        (
            "30:8",
            "rules[2].name",
            "duplicate rule name \"one\" (also rules[0])",
        ),
        ("32:10", "rules[2].target", "both land on localhost:5001/x"),
        ("33:15", "rules[2].tags[1]", "invalid tag \"bad tag\""),
        (
            "34:15",
            "rules[2].on_conflict",
            "unknown value \"overwite\"; did you mean `overwrite`?",
        ),
        (
            "35:11",
            "rules[2].timeout",
            "invalid duration \"1 fortnight\"",
        ),
        (
            "38:10",
            "rules[3].source",
            "repository names must be lowercase",
        ),
        // Missing keys are placed at their table's header.
        ("37:1", "rules[3].name", "missing"),
        ("37:1", "rules[3].target", "missing"),
        ("37:1", "rules[3].tags", "missing"),
    ];
    for (pos, key, msg) in expect {
        let prefix = format!("{file}:{pos}: {key}: ");
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&prefix) && l.contains(msg)),
            "no line starting {prefix:?} containing {msg:?} in:\n{err}"
        );
    }
    assert_eq!(
        lines.len(),
        expect.len(),
        "unexpected extra problems:\n{err}"
    );
    // Display prints one problem per line.
    assert_eq!(err.to_string().lines().count(), expect.len());
}

#[test]
fn malformed_toml_reports_line_and_column() {
    let d = Dir::new();
    let p = d.write(
        "c.toml",
        "[server]\nlisten = \"127.0.0.1:9090\"\n\n[[rules]]\nname = \"x\"\ntags = [\"a\" \"b\"]\n",
    );
    let err = config::load_with_env(&p, env(&[])).unwrap_err();
    let first = err.iter().next().unwrap();
    match &first.origin {
        Some(Origin::File { line, column, .. }) => assert_eq!((*line, *column), (6, 13), "{err}"),
        other => panic!("{other:?}: {err}"),
    }
    assert!(err.to_string().contains("malformed TOML"), "{err}");
    // Duplicate keys too.
    let errs = errors("[server]\nlisten = \"a\"\nlisten = \"b\"\n", &[]);
    assert!(
        errs.iter().any(|e| e.contains(":3:1: malformed TOML")),
        "{errs:#?}"
    );
    // A file that is not there.
    let e = config::load_with_env(&d.path().join("absent.toml"), env(&[])).unwrap_err();
    assert!(
        e.to_string()
            .contains("absent.toml: cannot read the configuration file"),
        "{e}"
    );
}

#[test]
fn unknown_keys_suggest_the_nearest_valid_one() {
    let text = format!(
        "{MINIMAL}\n[sever]\nlisten = \"x\"\n[daemon]\nrun_on_strat = true\n[defaults]\nplatform = []\n[registries.\"docker.io\"]\nusername = \"u\"\npasword_env = \"X\"\nwhatever_this_is = 1\n"
    );
    let errs = errors(&text, &[("X", "y")]);
    for want in [
        "sever: unknown key `sever`; did you mean `server`?",
        "daemon.run_on_strat: unknown key `run_on_strat`; did you mean `run_on_start`?",
        "defaults.platform: unknown key `platform`; did you mean `platforms`?",
        "registries.\"docker.io\".pasword_env: unknown key `pasword_env`; did you mean `password_env`?",
    ] {
        assert!(errs.iter().any(|e| e.contains(want)), "{want}\n{errs:#?}");
    }
    // Nothing near: the valid keys are listed instead.
    assert!(
        errs.iter().any(|e| e
            .contains("unknown key `whatever_this_is`; expected one of `username`, `password`")),
        "{errs:#?}"
    );
    let tags = MINIMAL.replace("tags = [\"latest\"]", "[rules.tags]\nnewst = 3");
    let errs = errors(&tags, &[]);
    assert!(
        errs.iter().any(|e| e.contains("rules[0].tags.newst: unknown key `newst`; did you mean `newest`?")),
        "{errs:#?}"
    );
}

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

#[test]
fn templates_must_keep_sources_apart() {
    let text = r#"
[[rules]]
name = "many"
source = ["localhost:5000/a", "localhost:5000/b"]
target = "localhost:5001/all-in-one"
tags = ["latest"]
[[rules]]
name = "self"
source = "localhost:5001/x"
target = "localhost:5001/{repo}"
tags = ["latest"]
[[rules]]
name = "tagged"
source = "localhost:5000/x"
target = "localhost:5001/{repo}:v1"
tags = ["latest"]
[[rules]]
name = "unknown"
source = "localhost:5000/x"
target = "localhost:5001/{tag}"
tags = ["latest"]
[[rules]]
name = "port-in-path"
source = "localhost:5000/x"
target = "localhost:5001/{registry}/{repo}"
tags = ["latest"]
"#;
    let errs = errors(text, &[]);
    let want = [
        "rules[0].target: sources localhost:5000/a and localhost:5000/b both land on localhost:5001/all-in-one; use {repo} or {name}",
        "rules[1].target: source localhost:5001/x would be copied onto itself",
        "rules[2].target: names a tag or digest",
        "rules[3].target: invalid template \"localhost:5001/{tag}\": unknown placeholder {tag}",
        "rules[4].target: for source localhost:5000/x: invalid repository path component \"localhost:5000\"",
    ];
    for w in want {
        assert!(errs.iter().any(|e| e.contains(w)), "{w}\n{errs:#?}");
    }
    assert_eq!(errs.len(), want.len(), "{errs:#?}");
}

#[test]
fn shards_cover_every_rule_exactly_once() {
    let mut text = String::new();
    for i in 0..40 {
        text.push_str(&format!(
            "[[rules]]\nname = \"rule-{i}\"\nsource = \"localhost:5000/r{i}\"\ntarget = \"localhost:5001/{{repo}}\"\ntags = [\"latest\"]\n"
        ));
    }
    let plan = load(&text, &[]).unwrap();
    for count in 1..=8u32 {
        let mut seen = BTreeSet::new();
        for index in 0..count {
            let shard = Shard::new(index, count).unwrap();
            for r in plan.rules_for_shard(shard) {
                assert!(seen.insert(r.name.clone()), "{} twice with {count}", r.name);
                assert_eq!(config::shard_of(&r.name, count), index);
            }
        }
        assert_eq!(seen.len(), 40, "count {count}");
    }
    assert_eq!(plan.rules_for_shard(Shard::ALL).len(), 40);
}

/// Tag selection against a real registry with many tags, and the request it costs: an explicit
/// list costs no tag listing, a filter costs one.
#[tokio::test]
async fn tag_selection_against_a_real_registry() {
    let reg = TestRegistry::start();
    let image = ImageSpec::single(Format::Oci, "linux/amd64")
        .layers(1)
        .build();
    let client = reg.client();
    let tags = [
        "1.0.0",
        "1.1.0",
        "1.2.0",
        "1.2.1",
        "1.3.0-rc1",
        "1.3.0",
        "1.3",
        "v1.4.0",
        "2.0.0-beta",
        "2.0.0",
        "2.1.0",
        "2.1.1",
        "latest",
        "edge",
        "nightly-20240101",
        "1.4.0-alpine",
        "0.9.0",
        "3.0.0",
    ];
    for t in tags {
        client.push_image("app", t, &image).await;
    }
    let host = reg.host();
    let text = format!(
        r#"
[[rules]]
name = "listed"
source = "{host}/app"
target = "localhost:5999/mirror/{{repo}}"
tags = ["latest", "1.2.1"]

[[rules]]
name = "filtered"
source = "{host}/app"
target = "localhost:5999/mirror/{{repo}}"
[rules.tags]
list = ["edge"]
exclude = ["^0\\."]
semver = ">=1.2, <3"
newest = 4

[[rules]]
name = "regex"
source = "{host}/app"
target = "localhost:5999/{{name}}"
[rules.tags]
include = ["^v?1\\.\\d+$", "^nightly-"]
"#
    );
    let plan = load(&text, &[]).unwrap_or_else(|e| panic!("{e}"));
    let transport = HttpRegistry::new(&host, plan.registry_options(&host).http_options(&host))
        .expect("transport");

    let resolve = |name: &'static str| {
        let plan = &plan;
        let transport = &transport;
        let reg = &reg;
        async move {
            let rule = plan.rule(name).unwrap();
            let mark = reg.request_mark();
            let pairs = rule.resolve(&rule.sources[0], transport).await.unwrap();
            let listings = reg
                .requests_since(mark)
                .iter()
                .filter(|r| r.kind().is_tag_list())
                .count();
            (pairs, listings)
        }
    };

    let (pairs, listings) = resolve("listed").await;
    assert_eq!(listings, 0, "an explicit list needs no tag listing");
    let shown: Vec<String> = pairs.iter().map(|(s, t)| format!("{s} -> {t}")).collect();
    assert_eq!(
        shown,
        [
            format!("{host}/app:latest -> localhost:5999/mirror/app:latest"),
            format!("{host}/app:1.2.1 -> localhost:5999/mirror/app:1.2.1"),
        ]
    );

    let (pairs, listings) = resolve("filtered").await;
    assert_eq!(listings, 1);
    let tags_of = |pairs: &[(Reference, Reference)]| -> Vec<String> {
        pairs
            .iter()
            .map(|(s, t)| {
                assert_eq!(s.tag(), t.tag());
                s.tag().unwrap().to_string()
            })
            .collect()
    };
    // In range and released: 1.2.0 1.2.1 1.3.0 1.3 v1.4.0 2.0.0 2.1.0 2.1.1; the newest four.
    assert_eq!(
        tags_of(&pairs),
        ["edge", "2.0.0", "2.1.0", "2.1.1", "v1.4.0"]
    );

    let (pairs, _) = resolve("regex").await;
    assert_eq!(tags_of(&pairs), ["1.3", "nightly-20240101"]);
    assert_eq!(
        pairs[0].1.to_string(),
        "localhost:5999/app:1.3",
        "{{name}} is the last path component"
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
