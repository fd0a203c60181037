//! Reading the deployment files for tests/deploy.rs: every Kubernetes object under
//! deploy/kubernetes (or in one rendered kustomization) as JSON values with their origin, the
//! pod template and crossdock container of each workload, and what the daemon's own
//! configuration says the pods must match. What the objects must satisfy is in deploy.rs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize as _;
use serde_json::Value;

/// The only container of every crossdock pod.
pub(crate) const CONTAINER: &str = "crossdock";
/// The user of distroless' `nonroot` image, as the Dockerfile sets it.
pub(crate) const NONROOT_UID: i64 = 65532;

pub(crate) fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

pub(crate) fn k8s_dir() -> PathBuf {
    deploy_dir().join("kubernetes")
}

pub(crate) fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every document of a YAML stream, as JSON values (empty documents left out).
pub(crate) fn yaml_docs(text: &str, origin: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{origin}: {e}")))
        .filter(|v| !v.is_null())
        .collect()
}

/// A Kubernetes object and where it came from, for messages.
pub(crate) struct Object {
    pub origin: String,
    pub value: Value,
}

impl Object {
    pub(crate) fn kind(&self) -> &str {
        self.value["kind"].as_str().unwrap_or("?")
    }

    pub(crate) fn name(&self) -> &str {
        self.value["metadata"]["name"].as_str().unwrap_or("?")
    }

    pub(crate) fn at(&self) -> String {
        format!("{} {}/{}", self.origin, self.kind(), self.name())
    }

    /// The pod template of a workload; `None` for objects that run no pods.
    pub(crate) fn pod_template(&self) -> Option<&Value> {
        let t = match self.kind() {
            "Deployment" | "StatefulSet" | "DaemonSet" | "Job" => &self.value["spec"]["template"],
            "CronJob" => &self.value["spec"]["jobTemplate"]["spec"]["template"],
            _ => return None,
        };
        Some(t)
    }

    /// The crossdock container of a workload.
    pub(crate) fn container(&self) -> Option<&Value> {
        self.pod_template()?["spec"]["containers"]
            .as_array()?
            .iter()
            .find(|c| c["name"] == CONTAINER)
    }
}

pub(crate) fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            yaml_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "yaml") {
            out.push(path);
        }
    }
    out.sort();
}

/// Every Kubernetes object written under deploy/kubernetes (kustomizations are not objects).
pub(crate) fn source_objects() -> Vec<Object> {
    let mut files = Vec::new();
    yaml_files(&k8s_dir(), &mut files);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    files
        .iter()
        .filter(|p| p.file_name().is_some_and(|n| n != "kustomization.yaml"))
        .flat_map(|p| {
            let origin = p.strip_prefix(root).unwrap().display().to_string();
            yaml_docs(&read(p), &origin)
                .into_iter()
                .map(move |value| Object {
                    origin: origin.clone(),
                    value,
                })
        })
        .collect()
}

pub(crate) fn rendered_objects(path: &Path) -> Vec<Object> {
    let origin = path.display().to_string();
    yaml_docs(&read(path), &origin)
        .into_iter()
        .map(|value| Object {
            origin: origin.clone(),
            value,
        })
        .collect()
}

/// What the pods must agree with: the daemon's configuration and where it is delivered.
pub(crate) struct Expect {
    /// The port of `[server] listen`.
    pub listen_port: u16,
    /// `[daemon] shutdown_grace`.
    pub shutdown_grace: Duration,
    /// The ConfigMap holding config.toml.
    pub configmap: String,
    /// Its key holding config.toml.
    pub config_key: String,
    /// `[server] notifications_token_file`, if set.
    pub notifications_token_file: Option<String>,
}

impl Expect {
    pub(crate) fn from_config(config_toml: &str, configmap: &str, config_key: &str) -> Expect {
        let table: toml::Table = config_toml.parse().expect("config.toml parses as TOML");
        let listen = table["server"]["listen"].as_str().expect(
            "config.toml sets [server] listen: the default is loopback, unreachable for probes",
        );
        let listen: std::net::SocketAddr = listen.parse().expect("[server] listen is HOST:PORT");
        assert!(
            listen.ip().is_unspecified(),
            "[server] listen is {listen}: in a pod it must be all addresses, or neither the \
             kubelet's probes nor Prometheus reach it"
        );
        let grace = table["daemon"]["shutdown_grace"]
            .as_str()
            .expect("config.toml sets [daemon] shutdown_grace, to match the pods' grace period");
        Expect {
            listen_port: listen.port(),
            shutdown_grace: humantime::parse_duration(grace).expect("shutdown_grace is a duration"),
            configmap: configmap.to_string(),
            config_key: config_key.to_string(),
            notifications_token_file: table["server"]
                .get("notifications_token_file")
                .map(|f| f.as_str().expect("a path").to_string()),
        }
    }

    /// From the sources: the base's configMapGenerator and the file it reads.
    pub(crate) fn from_sources() -> Expect {
        let base = k8s_dir().join("base");
        let kustomization = &yaml_docs(&read(&base.join("kustomization.yaml")), "base")[0];
        let generator = &kustomization["configMapGenerator"][0];
        let name = generator["name"]
            .as_str()
            .expect("base has a configMapGenerator");
        let file = generator["files"][0]
            .as_str()
            .expect("the generator reads a file");
        // `key=path` or just `path`, whose file name is then the key.
        let (key, path) = match file.split_once('=') {
            Some((k, p)) => (k.to_string(), p),
            None => (
                Path::new(file)
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
                file,
            ),
        };
        Expect::from_config(&read(&base.join(path)), name, &key)
    }
}

pub(crate) fn str_of(v: &Value) -> Option<&str> {
    v.as_str()
}

/// The `containerPort` a probe's or Service's port (a number or a port name) means.
pub(crate) fn resolve_port(container: &Value, port: &Value) -> Option<i64> {
    if let Some(n) = port.as_i64() {
        return Some(n);
    }
    container["ports"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == *port)
        .and_then(|p| p["containerPort"].as_i64())
}

pub(crate) fn args(container: &Value) -> Vec<&str> {
    container["args"]
        .as_array()
        .map(|a| a.iter().filter_map(str_of).collect())
        .unwrap_or_default()
}

/// The value following `flag` in an argument list.
pub(crate) fn flag<'a>(args: &[&'a str], flag: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| *a == flag)
        .and_then(|i| args.get(i + 1).copied())
}

pub(crate) fn env_var<'a>(container: &'a Value, name: &str) -> Option<&'a Value> {
    container["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)
}

/// The volume mounted at `dir` in the container, and that volume's definition.
pub(crate) fn volume_at<'a>(
    pod_spec: &'a Value,
    container: &'a Value,
    dir: &str,
) -> Option<&'a Value> {
    let mount = container["volumeMounts"]
        .as_array()?
        .iter()
        .find(|m| m["mountPath"] == dir)?;
    pod_spec["volumes"]
        .as_array()?
        .iter()
        .find(|v| v["name"] == mount["name"])
}

pub(crate) fn parent_and_file(path: &str) -> (&str, &str) {
    path.rsplit_once('/').expect("an absolute path")
}
