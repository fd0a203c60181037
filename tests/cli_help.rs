//! The command line as a user meets it (issue 13): every command's help ends with examples,
//! shows defaults as `[default: …]` and the global options under their own heading; read-only
//! commands offer only the flags that apply to them; the configuration file is taken the same
//! way by every command that reads one; `--insecure-registry` is one name everywhere; and shell
//! completions and man pages come from the same definitions.

mod support;

use std::path::Path;

use clap::{CommandFactory as _, Parser as _};
use crossdock::cli::{Cli, Command};
use support::cli;

/// Every command path, e.g. `["import"]`, `["index", "create"]`.
fn command_paths() -> Vec<Vec<String>> {
    fn walk(cmd: &clap::Command, prefix: &[String], out: &mut Vec<Vec<String>>) {
        for sub in cmd.get_subcommands() {
            let mut path = prefix.to_vec();
            path.push(sub.get_name().to_string());
            out.push(path.clone());
            walk(sub, &path, out);
        }
    }
    let mut out = Vec::new();
    walk(&Cli::command(), &[], &mut out);
    out
}

fn help(path: &[&str]) -> String {
    let mut args: Vec<&str> = path.to_vec();
    args.push("--help");
    cli::ok(&cli::crossdock(&args))
}

#[test]
fn every_help_ends_with_examples_and_shows_global_options_apart() {
    let paths = command_paths();
    assert!(paths.len() >= 12, "{paths:?}");
    for path in std::iter::once(Vec::new()).chain(paths) {
        let path: Vec<&str> = path.iter().map(String::as_str).collect();
        let text = help(&path);
        let (_, examples) = text
            .rsplit_once("\nExamples:\n")
            .unwrap_or_else(|| panic!("crossdock {path:?} --help has no examples:\n{text}"));
        let lines: Vec<&str> = examples.lines().filter(|l| !l.trim().is_empty()).collect();
        assert!(!lines.is_empty(), "{path:?}");
        for l in lines {
            assert!(
                l.starts_with("  ") && l.contains("crossdock "),
                "crossdock {path:?}: not an example line: {l:?}"
            );
        }
        if !path.is_empty() && path != ["index"] {
            let (options, global) = text
                .split_once("\nGlobal options:\n")
                .unwrap_or_else(|| panic!("crossdock {path:?}: no Global options heading"));
            assert!(!options.contains("--log-level"), "{path:?}");
            assert!(global.contains("--log-level") && global.contains("--log-format"));
        }
    }
}

#[test]
fn defaults_show_as_default_brackets() {
    let text = help(&["import"]);
    for d in ["[default: 6]", "[default: 120]"] {
        assert!(text.contains(d), "{d} missing:\n{text}");
    }
    assert!(!text.contains("Default 120"), "{text}");
}

#[test]
fn read_only_commands_offer_only_what_applies() {
    for cmd in ["inspect", "ls"] {
        let text = help(&[cmd]);
        for flag in ["--dest-creds", "--chunk-size"] {
            assert!(!text.contains(flag), "{cmd} offers {flag}:\n{text}");
            let out = cli::crossdock(&[cmd, flag, "1", "oci:/nonexistent"]);
            assert_eq!(out.status.code(), Some(2), "{cmd} {flag}");
        }
        for flag in ["--src-creds", "--insecure-registry", "--docker-config"] {
            assert!(text.contains(flag), "{cmd} lacks {flag}");
        }
    }
    let text = help(&["import"]);
    assert!(text.contains("--dest-creds") && text.contains("--chunk-size"));
}

#[test]
fn connection_flags_are_the_same_on_every_verb_that_reaches_a_registry() {
    let verbs: [&[&str]; 5] = [
        &["import"],
        &["index", "create"],
        &["inspect"],
        &["ls"],
        &["verify"],
    ];
    for path in verbs {
        let text = help(path);
        for flag in [
            "--auth <HOST=KIND>",
            "--insecure-registry <HOST[:PORT]>",
            "--docker-config <PATH>",
            "--read-timeout <SECS>",
            "--certs-d <DIR>",
        ] {
            assert_eq!(text.matches(flag).count(), 1, "{path:?} {flag}:\n{text}");
        }
        let mut args = path.to_vec();
        args.extend(["--auth", "reg.example=aws", "oci:/nonexistent"]);
        let out = cli::crossdock(&args);
        assert_eq!(out.status.code(), Some(2), "{path:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("static, ecr, acr, gcp"),
            "{path:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // verify reads mirrors: the targets' credentials, nothing to upload, no source.
    let text = help(&["verify"]);
    assert!(text.contains("--dest-creds"), "{text}");
    for flag in ["--src-creds", "--chunk-size"] {
        assert!(!text.contains(flag), "verify offers {flag}:\n{text}");
        let out = cli::crossdock(&["verify", flag, "1", "oci:/nonexistent"]);
        assert_eq!(out.status.code(), Some(2), "verify {flag}");
    }
}

#[test]
fn the_configuration_file_is_positional_or_an_option_everywhere() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml");
    let example = example.to_str().unwrap();
    for args in [
        vec!["check-config", example],
        vec!["check-config", "--config", example],
        vec!["check-config", "-c", example, example],
    ] {
        let out = cli::ok(&cli::crossdock(&args));
        assert!(out.contains(": ok ("), "{args:?}: {out}");
    }
    let file = |args: &[&str]| {
        let cli = Cli::try_parse_from(args).unwrap();
        match cli.command {
            Command::Run(a) => a.config.file(),
            Command::Sync(a) => a.config.file(),
            Command::CheckConfig(a) => a.config.file(),
            other => panic!("{other:?}"),
        }
    };
    for verb in ["run", "sync", "check-config"] {
        for args in [
            vec!["crossdock", verb, "a.toml"],
            vec!["crossdock", verb, "--config", "a.toml"],
            vec!["crossdock", verb, "-c", "a.toml"],
        ] {
            assert_eq!(file(&args), Ok("a.toml".into()), "{args:?}");
        }
    }
    let out = cli::crossdock(&["check-config", "a.toml", "--config", "b.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: two configuration files given, a.toml and --config b.toml: give one\n"
    );
    let out = cli::command(&["check-config"])
        .env_remove("CROSSDOCK_CONFIG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("give the configuration file"));
}

#[test]
fn insecure_registry_is_one_name_with_a_hidden_alias_on_login() {
    let insecure = |args: &[&str]| {
        let mut all = vec!["crossdock", "login", "reg.example:5000", "-u", "me"];
        all.extend(args);
        match Cli::try_parse_from(all).unwrap().command {
            Command::Login(a) => a.insecure_registry,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(insecure(&[]), None);
    assert_eq!(insecure(&["--insecure-registry"]).as_deref(), Some(""));
    assert_eq!(
        insecure(&["--insecure-registry", "reg.example:5000"]).as_deref(),
        Some("reg.example:5000")
    );
    assert_eq!(insecure(&["--insecure"]).as_deref(), Some(""));
    let text = help(&["login"]);
    assert!(text.contains("--insecure-registry"), "{text}");
    assert!(
        !text.contains("--insecure "),
        "the alias is hidden:\n{text}"
    );
    let out = cli::command(&[
        "login",
        "reg.example:5000",
        "-u",
        "me",
        "--password-stdin",
        "--insecure-registry",
        "other.example",
    ])
    .stdin(std::process::Stdio::null())
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn completions_for_each_shell() {
    for (shell, marker) in [
        ("bash", "complete -F _crossdock"),
        ("zsh", "#compdef crossdock"),
        ("fish", "complete -c crossdock"),
    ] {
        let text = cli::ok(&cli::crossdock(&["completions", shell]));
        assert!(text.contains(marker), "{shell}: {marker} missing");
        for word in ["import", "check-config", "insecure-registry"] {
            assert!(text.contains(word), "{shell}: {word} missing");
        }
    }
    let out = cli::crossdock(&["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn man_pages_from_the_same_definitions() {
    let page = cli::ok(&cli::crossdock(&["man"]));
    assert!(page.contains(".TH crossdock 1"), "{page}");
    for sub in ["import", "check\\-config", "completions"] {
        assert!(page.contains(sub), "{sub} missing from the main page");
    }
    let page = cli::ok(&cli::crossdock(&["man", "import"]));
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        page.contains(&format!(
            ".TH crossdock-import 1  \"crossdock-import {version}\""
        )),
        "{page}"
    );
    assert!(!page.contains("\\-\\-version"), "{page}");
    assert!(page.contains("\\-\\-dest\\-creds"), "{page}");
    assert!(page.contains("Examples:"), "{page}");
    let out = cli::crossdock(&["man", "nope"]);
    assert_eq!(out.status.code(), Some(2));
}
