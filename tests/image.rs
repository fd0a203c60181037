//! The two ways to build the runtime image declare the same image: deploy/Dockerfile (for
//! users with Docker) and deploy/image/image.json, the config that deploy/image/assemble.py
//! writes (the build without Docker, which CI runs under containerd: deploy/image/ci-run.sh).
//!
//! Why a test: the two are written in different languages, and a port, user or default command
//! changed in one only would ship two different images under one name — the one CI runs being
//! the one users don't get. Both files are parsed, nothing is built here.

use std::collections::BTreeMap;

use serde_json::Value;

#[path = "deploy/dockerfile.rs"]
mod dockerfile;

use dockerfile::Dockerfile;

/// Only the Dockerfile has a base image; the assembled image starts from nothing.
const BASE_NAME: &str = "org.opencontainers.image.base.name";

fn repo_file(path: &str) -> String {
    let full = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

fn dockerfile() -> Dockerfile {
    Dockerfile::parse(&repo_file("deploy/Dockerfile"))
}

/// deploy/image/image.json with `${VERSION}` replaced as assemble.py does (Cargo.toml's version).
fn assembled_config() -> Value {
    let text = repo_file("deploy/image/image.json");
    serde_json::from_str(&text.replace("${VERSION}", env!("CARGO_PKG_VERSION")))
        .expect("deploy/image/image.json is JSON")
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().expect("a string").to_string())
        .collect()
}

#[test]
fn both_builds_run_the_same_command_as_the_same_user() {
    let docker = dockerfile();
    let config = assembled_config();
    assert_eq!(strings(&config["Entrypoint"]), docker.exec("ENTRYPOINT"));
    assert_eq!(strings(&config["Cmd"]), docker.exec("CMD"));
    assert_eq!(config["User"], docker.last("USER"));
    assert_eq!(config["StopSignal"], docker.last("STOPSIGNAL"));
    let ports: Vec<&String> = config["ExposedPorts"]
        .as_object()
        .expect("ExposedPorts")
        .keys()
        .collect();
    let exposed = docker.exposed_ports();
    assert_eq!(ports, exposed.iter().collect::<Vec<_>>());
}

#[test]
fn both_builds_label_the_image_alike() {
    let docker = dockerfile();
    let mut docker_labels = docker.labels();
    assert!(
        docker_labels.remove(BASE_NAME).is_some(),
        "the Dockerfile names its base image"
    );
    let config = assembled_config();
    let labels: BTreeMap<String, String> =
        serde_json::from_value(config["Labels"].clone()).expect("Labels: strings");
    assert!(
        !labels.contains_key(BASE_NAME),
        "the assembled image has no base image to name"
    );
    assert_eq!(labels, docker_labels);
    // The version label is the crate's in both: the Dockerfile's ARG default is kept in step.
    assert_eq!(
        docker.args().get("VERSION").map(String::as_str),
        Some(env!("CARGO_PKG_VERSION")),
        "deploy/Dockerfile's ARG VERSION default is Cargo.toml's version"
    );
}

#[test]
fn the_entrypoint_is_found_on_the_path() {
    // The exec-form entrypoint is a bare name: the runtime looks it up in the image's PATH.
    // Distroless sets PATH for the Dockerfile; the assembled image sets its own.
    let docker = dockerfile();
    let destination = docker.copy_destination("crossdock");
    let (dir, file) = destination.rsplit_once('/').expect("an absolute path");
    assert_eq!(vec![file.to_string()], docker.exec("ENTRYPOINT"));
    let config = assembled_config();
    let path = strings(&config["Env"])
        .into_iter()
        .find_map(|e| e.strip_prefix("PATH=").map(str::to_string))
        .expect("image.json sets PATH");
    assert!(
        path.split(':').any(|p| p == dir),
        "{dir} is not on the assembled image's PATH {path}"
    );
    let assembler = repo_file("deploy/image/assemble.py");
    assert!(
        assembler.contains(&format!("\"{}\"", destination.trim_start_matches('/'))),
        "assemble.py puts the binary somewhere else than the Dockerfile ({destination})"
    );
}

#[test]
fn dockerfile_parsing_reads_what_docker_reads() {
    // The parser on a small Dockerfile with what deploy/Dockerfile uses: stages, continuations,
    // comments, quoted labels with escapes, ARG substitution.
    let parsed = Dockerfile::parse(concat!(
        "FROM a AS build\nUSER 1\nLABEL x=\"from the build stage\"\n",
        "FROM b\nARG V=2.0\n# comment\nLABEL one=\"a \\\"b\\\" c\" \\\n",
        "      two=plain \\\n      three=\"v${V}\"\n",
        "USER 7:7\nEXPOSE 80 53/udp\nENTRYPOINT [\"x\"]\n",
    ));
    let labels = parsed.labels();
    assert_eq!(labels.len(), 3, "{labels:?}");
    assert_eq!(labels["one"], "a \"b\" c");
    assert_eq!(labels["two"], "plain");
    assert_eq!(labels["three"], "v2.0");
    assert_eq!(parsed.last("USER"), "7:7");
    assert_eq!(parsed.exposed_ports(), ["80/tcp", "53/udp"]);
    assert_eq!(parsed.exec("ENTRYPOINT"), ["x"]);
}
