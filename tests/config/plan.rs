//! The plan a good configuration file becomes: every key resolved against the defaults, the
//! environment overriding what it should, the example file loading cleanly, and shards splitting
//! the rules exactly.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use crossdock::config::{self, Plan, Shard};
use crossdock::manifest::Platform;
use crossdock::reference::Reference;
use crossdock::registry::auth::Credentials;
use crossdock::rule::OnConflict;
use crossdock::schedule::Schedule;

use crate::{Dir, env, errors, load};

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

/// A file that sets every section; the rule `tools` sets its own value for every default.
const GOOD_FILE: &str = r#"
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

#[test]
fn good_file_becomes_the_expected_plan() {
    let d = Dir::new();
    d.write("hub-password", "s3cret-from-file\n");
    d.write(
        "ca.pem",
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    );
    let p = d.write("crossdock.toml", GOOD_FILE);
    let plan = config::load_with_env(&p, env(&[("GH_TOKEN", "ghp_token_value")]))
        .unwrap_or_else(|e| panic!("{e}"));

    assert_eq!(plan.path, p);
    assert_eq!(plan.server.listen.to_string(), "0.0.0.0:9191");
    assert_eq!(plan.daemon.max_concurrent_images, 7);
    assert!(!plan.daemon.run_on_start);
    assert_eq!(plan.daemon.shutdown_grace, Duration::from_secs(45));
    assert_eq!(plan.daemon.jitter, Duration::from_secs(120));
    defaults_resolve_into_a_rule_that_sets_none(&plan);
    a_rules_own_values_win(&plan);
    registries_resolve_with_their_credentials(&plan, d.path());
}

/// Defaults resolved into the first rule.
fn defaults_resolve_into_a_rule_that_sets_none(plan: &Plan) {
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
}

/// The rule's own values win, including an explicitly empty platform list.
fn a_rules_own_values_win(plan: &Plan) {
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
}

/// Registries: by name or Docker Hub's API host; credentials read and wrapped.
fn registries_resolve_with_their_credentials(plan: &Plan, dir: &Path) {
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
    assert_eq!(gh.ca_file.as_deref(), Some(dir.join("ca.pem").as_path()));
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
