//! One workload's pod against what the daemon needs, for tests/deploy.rs: the command and the
//! `--config` mount, the Secrets (through [`super::secrets`]), the shutdown grace, the hardening
//! every pod shares, and for the daemon the port and probes the server answers on. Each concern
//! is one function returning its problems; [`pod_problems`] puts them together in that order.

use std::time::Duration;

use crossdock::server;
use serde_json::Value;

use super::manifests::{
    CONTAINER, Expect, NONROOT_UID, Object, args, flag, parent_and_file, resolve_port, volume_at,
};
use super::secrets;

/// Problems with one workload's pod against what the daemon needs; empty when it fits.
pub(crate) fn pod_problems(obj: &Object, expect: &Expect) -> Vec<String> {
    let at = obj.at();
    let template = obj.pod_template().expect("a workload");
    let spec = &template["spec"];
    let Some(c) = obj.container() else {
        return vec![format!("{at}: no container named {CONTAINER}")];
    };
    let args = args(c);
    let mut problems = command_problems(obj, &args);
    problems.extend(config_problems(spec, c, &args, expect));
    // The Secrets: registry credentials at $DOCKER_CONFIG, the notifications token where the
    // configuration says.
    problems.extend(secrets::credentials_problems(spec, c));
    problems.extend(secrets::token_problems(spec, c, expect));
    problems.extend(shutdown_problems(spec, expect));
    problems.extend(hardening_problems(spec, c));
    // Serving: only the daemon has a port and probes, and they are the server's.
    if args.first() == Some(&"run") {
        problems.extend(serving_problems(c, expect));
    }
    problems.into_iter().map(|p| format!("{at}: {p}")).collect()
}

/// The command: the daemon's workloads run `run`, the one-shot ones `sync`.
fn command_problems(obj: &Object, args: &[&str]) -> Vec<String> {
    match args.first().copied() {
        Some("run") if obj.kind() == "Deployment" || obj.kind() == "StatefulSet" => Vec::new(),
        Some("sync") if obj.kind() == "CronJob" || obj.kind() == "Job" => Vec::new(),
        other => vec![format!(
            "runs {other:?}: a {} runs `run` or `sync`",
            obj.kind()
        )],
    }
}

/// The configuration file, where the ConfigMap puts it.
fn config_problems(spec: &Value, c: &Value, args: &[&str], expect: &Expect) -> Vec<String> {
    let mut problems = Vec::new();
    let mut problem = |p: String| problems.push(p);
    match flag(args, "--config") {
        None => problem("no --config".into()),
        Some(path) => {
            let (dir, file) = parent_and_file(path);
            match volume_at(spec, c, dir) {
                None => problem(format!("--config {path}: nothing is mounted at {dir}")),
                Some(v) => {
                    if v["configMap"]["name"] != expect.configmap.as_str() {
                        problem(format!(
                            "--config {path}: {dir} holds {}, not the ConfigMap {}",
                            v, expect.configmap
                        ));
                    }
                    if file != expect.config_key {
                        problem(format!(
                            "--config {path}: the ConfigMap's key is {}",
                            expect.config_key
                        ));
                    }
                    if let Some(items) = v["configMap"]["items"].as_array()
                        && !items.iter().any(|i| i["path"] == file)
                    {
                        problem(format!(
                            "--config {path}: the mount's items leave {file} out"
                        ));
                    }
                }
            }
        }
    }
    problems
}

/// Shutdown: the daemon's drain fits in the kubelet's grace period, with room to exit.
fn shutdown_problems(spec: &Value, expect: &Expect) -> Vec<String> {
    let grace = spec["terminationGracePeriodSeconds"].as_u64().unwrap_or(30);
    if Duration::from_secs(grace) < expect.shutdown_grace + Duration::from_secs(5) {
        return vec![format!(
            "terminationGracePeriodSeconds {grace} leaves no room above shutdown_grace {:?}",
            expect.shutdown_grace
        )];
    }
    Vec::new()
}

/// Hardening, the same for every pod (Pod Security Standard "restricted" and more).
fn hardening_problems(spec: &Value, c: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let psc = &spec["securityContext"];
    let csc = &c["securityContext"];
    let checks: [(&str, bool); 9] = [
        ("runAsNonRoot", psc["runAsNonRoot"] == true),
        ("runAsUser 65532", psc["runAsUser"] == NONROOT_UID),
        (
            "seccompProfile RuntimeDefault",
            psc["seccompProfile"]["type"] == "RuntimeDefault",
        ),
        (
            "allowPrivilegeEscalation false",
            csc["allowPrivilegeEscalation"] == false,
        ),
        (
            "readOnlyRootFilesystem",
            csc["readOnlyRootFilesystem"] == true,
        ),
        (
            "capabilities drop ALL",
            csc["capabilities"]["drop"] == serde_json::json!(["ALL"]),
        ),
        (
            "automountServiceAccountToken false",
            spec["automountServiceAccountToken"] == false,
        ),
        (
            "enableServiceLinks false",
            spec["enableServiceLinks"] == false,
        ),
        (
            "serviceAccountName crossdock",
            spec["serviceAccountName"] == "crossdock",
        ),
    ];
    for (what, ok) in checks {
        if !ok {
            problems.push(format!("not {what}"));
        }
    }
    for r in ["requests", "limits"] {
        for k in ["cpu", "memory"] {
            if c["resources"][r][k].is_null() {
                problems.push(format!("no resources.{r}.{k}"));
            }
        }
    }
    if volume_at(spec, c, "/tmp").is_none_or(|v| v["emptyDir"].is_null()) {
        problems.push("no emptyDir at /tmp".into());
    }
    problems
}

/// The daemon's port and probes are the server's.
fn serving_problems(c: &Value, expect: &Expect) -> Vec<String> {
    let mut problems = Vec::new();
    let ports = c["ports"].as_array().cloned().unwrap_or_default();
    if !ports
        .iter()
        .any(|p| p["containerPort"] == i64::from(expect.listen_port))
    {
        problems.push(format!(
            "no containerPort {} ([server] listen)",
            expect.listen_port
        ));
    }
    let probes = [
        ("livenessProbe", server::HEALTHZ),
        ("readinessProbe", server::READYZ),
        ("startupProbe", server::HEALTHZ),
    ];
    for (probe, path) in probes {
        let get = &c[probe]["httpGet"];
        if c[probe].is_null() && probe == "startupProbe" {
            continue;
        }
        if get["path"] != path {
            problems.push(format!("{probe} path {} is not {path}", get["path"]));
        }
        let port = resolve_port(c, &get["port"]);
        if port != Some(i64::from(expect.listen_port)) {
            problems.push(format!(
                "{probe} port {} is {port:?}, not the listen port {}",
                get["port"], expect.listen_port
            ));
        }
    }
    problems
}
