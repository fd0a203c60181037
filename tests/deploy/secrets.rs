//! The Secrets the pods mount, for tests/deploy.rs. Registry credentials: Docker's
//! config.json at $DOCKER_CONFIG, from the optional Secret `crossdock-registry-credentials`
//! (anonymous use without it), whose example holds a config.json. Registry notifications: the
//! token file that config.toml names (`[server] notifications_token_file`) is the notifications Secret's key,
//! mounted read-only where the configuration says, in every pod (`sync` reads the same
//! configuration and refuses a missing file as the daemon does); the Secret example has that
//! name and key and a token crossdock accepts; deploy/README.md's registry-side snippet posts
//! to the Service's port and the daemon's path, with a bearer token.

use serde_json::Value;

use super::manifests::{
    Expect, Object, env_var, parent_and_file, read, source_objects, volume_at, yaml_docs,
};

/// Problems with the registry credentials of one pod; empty when $DOCKER_CONFIG/config.json is
/// the credentials Secret's `.dockerconfigjson`.
pub(crate) fn credentials_problems(spec: &Value, c: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(dir) = env_var(c, "DOCKER_CONFIG").and_then(|e| e["value"].as_str()) else {
        return vec!["no DOCKER_CONFIG".into()];
    };
    let Some(v) = volume_at(spec, c, dir) else {
        return vec![format!("DOCKER_CONFIG={dir}: nothing is mounted there")];
    };
    let secret = &v["secret"];
    if secret["secretName"] != CREDENTIALS {
        problems.push(format!("{dir}: not the credentials Secret: {v}"));
    }
    if secret["optional"] != true {
        problems.push(format!(
            "{dir}: the Secret must be optional (anonymous use)"
        ));
    }
    let item = secret["items"]
        .as_array()
        .and_then(|i| i.iter().find(|i| i["key"] == ".dockerconfigjson"));
    if item.is_none_or(|i| i["path"] != "config.json") {
        problems.push(format!(
            "{dir}: .dockerconfigjson is not mounted as config.json"
        ));
    }
    problems
}

/// The registry credentials' Secret.
pub(crate) const CREDENTIALS: &str = "crossdock-registry-credentials";

/// The Secret holding the notifications token, and its key.
pub(crate) const SECRET: &str = "crossdock-notifications";
pub(crate) const KEY: &str = "token";

/// Problems with the notifications token of one pod; empty when the Secret is where the
/// configuration looks for it.
pub(crate) fn token_problems(spec: &Value, c: &Value, expect: &Expect) -> Vec<String> {
    let Some(file) = &expect.notifications_token_file else {
        return vec!["config.toml sets no [server] notifications_token_file".into()];
    };
    if !file.starts_with('/') {
        return vec![format!(
            "notifications_token_file {file}: relative to the config's folder, the ConfigMap's \
             mount, where no Secret can be"
        )];
    }
    let (dir, name) = parent_and_file(file);
    let Some(volume) = volume_at(spec, c, dir) else {
        return vec![format!(
            "notifications_token_file {file}: nothing is mounted at {dir}"
        )];
    };
    let mut problems = Vec::new();
    let secret = &volume["secret"];
    if secret["secretName"] != SECRET {
        problems.push(format!("{dir} holds {volume}, not the Secret {SECRET}"));
    }
    if secret["optional"] == true {
        problems.push(format!(
            "{dir}: the Secret is optional, but the configuration requires the file"
        ));
    }
    // With items, the file is the item's path; without, each key is a file of its name.
    let key = match secret["items"].as_array() {
        Some(items) => items
            .iter()
            .find(|i| i["path"] == name)
            .and_then(|i| i["key"].as_str()),
        None => Some(name),
    };
    if key != Some(KEY) {
        problems.push(format!(
            "notifications_token_file {file}: the Secret's key {KEY} is not mounted as {name}"
        ));
    }
    let read_only = c["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|m| m["mountPath"] == dir && m["readOnly"] == true);
    if !read_only {
        problems.push(format!("{dir}: not mounted readOnly"));
    }
    problems
}

fn secret_example(objects: &[Object]) -> &Object {
    objects
        .iter()
        .find(|o| o.kind() == "Secret" && o.name() == SECRET)
        .expect("a Secret example named crossdock-notifications")
}

#[test]
fn the_base_configuration_loads_with_the_secret_example() {
    let objects = source_objects();
    let secret = secret_example(&objects);
    assert!(
        secret.origin.ends_with("notifications-secret.example.yaml"),
        "{}: an example, not applied with a placeholder token",
        secret.at()
    );
    let token = secret.value["stringData"][KEY]
        .as_str()
        .expect("the example has the key the pods mount");
    // The Secret's file where the pods mount it stands in for /var/run/secrets/...: crossdock
    // reads it at load time and must accept what the example puts there.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(KEY);
    std::fs::write(&file, token).unwrap();
    let config = super::manifests::k8s_dir().join("base/config.toml");
    let env = [(
        "CROSSDOCK_SERVER__NOTIFICATIONS_TOKEN_FILE".to_string(),
        file.display().to_string(),
    )];
    let plan = crossdock::config::load_str(&config, &read(&config), env)
        .unwrap_or_else(|e| panic!("base/config.toml with the example token: {e}"));
    assert!(plan.server.notifications_token.is_some());
}

#[test]
fn readme_snippet_posts_to_the_daemon() {
    let readme = read(&super::manifests::deploy_dir().join("README.md"));
    let snippet = readme
        .split("```yaml")
        .skip(1)
        .filter_map(|block| block.split("```").next())
        .find(|block| block.contains("notifications:"))
        .expect("deploy/README.md has the registry's `notifications:` snippet in a yaml block");
    let doc = &yaml_docs(snippet, "deploy/README.md")[0];
    let endpoint = &doc["notifications"]["endpoints"][0];
    let url = endpoint["url"].as_str().expect("an endpoint url");
    let service = source_objects()
        .into_iter()
        .find(|o| o.kind() == "Service")
        .expect("the daemon's Service");
    let port = &service.value["spec"]["ports"][0]["port"];
    let expected = format!(":{port}{}", crossdock::server::NOTIFICATIONS);
    assert!(
        url.starts_with(&format!("http://{}.", service.name())) && url.ends_with(&expected),
        "the snippet's url {url} is not the Service {} and {expected}",
        service.name()
    );
    let auth = endpoint["headers"]["Authorization"][0].as_str();
    assert!(
        auth.is_some_and(|a| a.starts_with("Bearer ")),
        "the snippet sends no bearer token: {endpoint}"
    );
}

#[test]
fn secret_example_is_what_the_pods_mount() {
    let objects = source_objects();
    let secret = objects
        .iter()
        .find(|o| o.kind() == "Secret" && o.name() == CREDENTIALS)
        .expect("secret.example.yaml");
    assert!(
        secret.origin.ends_with("secret.example.yaml"),
        "{}",
        secret.at()
    );
    assert_eq!(secret.value["type"], "kubernetes.io/dockerconfigjson");
    let json = secret.value["stringData"][".dockerconfigjson"]
        .as_str()
        .expect("the .dockerconfigjson key");
    let config: Value = serde_json::from_str(json).expect("a Docker config.json");
    assert!(config["auths"].as_object().is_some_and(|a| !a.is_empty()));
}
