//! Bad configuration files: every problem reported at once with its key path, line and column,
//! malformed TOML placed exactly, unknown keys answered with the nearest valid one, and target
//! templates that would mix sources or copy an image onto itself refused.

use crossdock::config::{self, Origin};

use crate::{Dir, MINIMAL, env, errors};

/// A file with problems in every section. Positions matter: [`EXPECTED_PROBLEMS`] names them.
const BAD_FILE: &str = r#"[server]
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

/// Every problem in [`BAD_FILE`], each reported once.
const EXPECTED_PROBLEMS: [(&str, &str, &str); 19] = [
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

#[test]
fn every_problem_is_reported_with_its_key_path_and_position() {
    let d = Dir::new();
    let p = d.write("bad.toml", BAD_FILE);
    let err = config::load_with_env(&p, env(&[])).unwrap_err();
    let lines: Vec<String> = err.iter().map(|e| e.to_string()).collect();
    let file = p.display().to_string();
    let expect = EXPECTED_PROBLEMS;
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
fn a_pruning_rule_may_not_share_its_target_with_another_source() {
    let text = r#"
[[rules]]
name = "hub"
source = "localhost:5000/a"
target = "localhost:5001/mirror/shared"
tags = ["latest"]
[[rules]]
name = "pruner"
source = "localhost:5000/b"
target = "localhost:5001/mirror/shared"
tags = { all = true }
prune = true
[[rules]]
name = "releases"
source = "localhost:5000/c"
target = "localhost:5001/mirror/c"
tags = { include = ["^v"] }
prune = true
[[rules]]
name = "latest-hourly"
source = "localhost:5000/c"
target = "localhost:5001/mirror/c"
tags = ["latest"]
[[rules]]
name = "next-to-an-index"
source = "localhost:5000/d"
target = "localhost:5001/mirror/app"
tags = { all = true }
prune = true
[[indexes]]
name = "app-multi"
target = "localhost:5001/mirror/app:multi"
sources = ["localhost:5000/app:amd64", "localhost:5000/app:arm64"]
"#;
    let errs = errors(text, &[]);
    let want = [
        "rules[1].prune: rule \"pruner\" prunes localhost:5001/mirror/shared, which rule \"hub\" also fills (from localhost:5000/a): pruning would delete the tags localhost:5000/b does not list",
        "rules[4].prune: rule \"next-to-an-index\" prunes localhost:5001/mirror/app, which index rule \"app-multi\" also fills (from the index's images)",
    ];
    for w in want {
        assert!(errs.iter().any(|e| e.contains(w)), "{w}\n{errs:#?}");
    }
    // Two rules of one source into one target agree on what is gone: "releases" is let be.
    assert_eq!(errs.len(), want.len(), "{errs:#?}");
}
