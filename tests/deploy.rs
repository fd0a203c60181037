//! The Kubernetes manifests and the Dockerfile under `deploy/` against what the daemon serves
//! and reads: probe paths, ports, the `--config` path and the mount that provides it, the
//! credentials mount, the notifications token's Secret, the shutdown grace, the shard count, and the hardening every pod shares.
//!
//! Why a test and not only `deploy/check.sh`: kustomize and the schema validator prove the
//! manifests are well-formed Kubernetes, not that they fit this program. A probe on `/health`
//! or a port that differs from `[server] listen` validates fine and fails in the cluster, at
//! the worst time. The daemon's side comes from the ConfigMap's own `config.toml` (the listen
//! port, the shutdown grace) and from the server's path constants.
//!
//! The sources are read as written (plain YAML, no kustomize needed). `deploy/check.sh`
//! also renders every kustomization and runs the ignored test `rendered_objects_agree` on the
//! result (`CROSSDOCK_DEPLOY_RENDERED=DIR`), which sees what a cluster would: generated
//! ConfigMap names, deleted objects, the component's additions.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

// The paths the daemon serves.
use crossdock::server;
use serde_json::Value;

#[path = "deploy/dockerfile.rs"]
mod dockerfile;
#[path = "deploy/manifests.rs"]
mod manifests;
#[path = "deploy/pod.rs"]
mod pod;
#[path = "deploy/secrets.rs"]
mod secrets;

use manifests::{
    Expect, NONROOT_UID, Object, args, deploy_dir, env_var, flag, k8s_dir, read, rendered_objects,
    resolve_port, source_objects, str_of, yaml_docs, yaml_files,
};
use pod::pod_problems;

/// Problems with the Service (and ServiceMonitor) in front of the daemon.
fn scrape_problems(objects: &[Object], expect: &Expect) -> Vec<String> {
    let mut problems = Vec::new();
    let daemon = objects
        .iter()
        .find(|o| o.kind() == "Deployment")
        .expect("a Deployment");
    let container = daemon.container().expect("the crossdock container");
    let pod_labels = &daemon.pod_template().unwrap()["metadata"]["labels"];
    let selects = |selector: &Value, labels: &Value| {
        selector
            .as_object()
            .is_some_and(|s| !s.is_empty() && s.iter().all(|(k, v)| labels[k] == *v))
    };
    let services: Vec<&Object> = objects.iter().filter(|o| o.kind() == "Service").collect();
    if services.is_empty() {
        problems.push("no Service for the daemon".to_string());
    }
    for svc in &services {
        let at = svc.at();
        if !selects(&svc.value["spec"]["selector"], pod_labels) {
            problems.push(format!("{at}: its selector misses the daemon's pods"));
        }
        let ports = svc.value["spec"]["ports"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for p in &ports {
            let target = resolve_port(container, &p["targetPort"]);
            if target != Some(i64::from(expect.listen_port)) {
                problems.push(format!(
                    "{at}: port {} targets {target:?}, not the listen port {}",
                    p["name"], expect.listen_port
                ));
            }
        }
        let ann = &svc.value["metadata"]["annotations"];
        if ann["prometheus.io/scrape"] != "true" {
            problems.push(format!("{at}: no prometheus.io/scrape: \"true\""));
        }
        if ann["prometheus.io/port"] != expect.listen_port.to_string().as_str() {
            problems.push(format!(
                "{at}: prometheus.io/port is {}",
                ann["prometheus.io/port"]
            ));
        }
        if ann["prometheus.io/path"] != server::METRICS {
            problems.push(format!(
                "{at}: prometheus.io/path is {}",
                ann["prometheus.io/path"]
            ));
        }
        for sm in objects.iter().filter(|o| o.kind() == "ServiceMonitor") {
            let at = sm.at();
            if !selects(
                &sm.value["spec"]["selector"]["matchLabels"],
                &svc.value["metadata"]["labels"],
            ) {
                problems.push(format!("{at}: its selector misses Service/{}", svc.name()));
            }
            for ep in sm.value["spec"]["endpoints"]
                .as_array()
                .into_iter()
                .flatten()
            {
                if !ports.iter().any(|p| p["name"] == ep["port"]) {
                    problems.push(format!("{at}: no Service port named {}", ep["port"]));
                }
                if ep["path"] != server::METRICS {
                    problems.push(format!(
                        "{at}: path {} is not {}",
                        ep["path"],
                        server::METRICS
                    ));
                }
            }
        }
    }
    problems
}

/// Problems with the shard setup of Indexed Jobs: N pods, each told it is one of N.
fn shard_problems(obj: &Object) -> Vec<String> {
    let at = obj.at();
    let mut problems = Vec::new();
    let job = match obj.kind() {
        "CronJob" => &obj.value["spec"]["jobTemplate"]["spec"],
        "Job" => &obj.value["spec"],
        _ => return problems,
    };
    if obj.kind() == "CronJob" && obj.value["spec"]["concurrencyPolicy"] != "Forbid" {
        problems.push(format!(
            "{at}: concurrencyPolicy is not Forbid: runs would overlap"
        ));
    }
    let c = obj.container().expect("the crossdock container");
    let args = args(c);
    // Every $(VAR) in the arguments is declared, or the kubelet passes it on literally.
    for a in &args {
        for var in a.split("$(").skip(1).filter_map(|s| s.split_once(')')) {
            if env_var(c, var.0).is_none() {
                problems.push(format!(
                    "{at}: argument {a} uses $({}), not declared",
                    var.0
                ));
            }
        }
    }
    let count = env_var(c, "CROSSDOCK_SHARD_COUNT").and_then(|e| e["value"].as_str());
    if job["completionMode"] != "Indexed" {
        if count.is_some() || flag(&args, "--shard").is_some() {
            problems.push(format!("{at}: sharded but not an Indexed Job"));
        }
        return problems;
    }
    let Some(count) = count.and_then(|n| n.parse::<i64>().ok()) else {
        problems.push(format!(
            "{at}: an Indexed Job without CROSSDOCK_SHARD_COUNT"
        ));
        return problems;
    };
    if job["completions"] != count || job["parallelism"] != count {
        problems.push(format!(
            "{at}: completions {} and parallelism {} must both be CROSSDOCK_SHARD_COUNT {count}",
            job["completions"], job["parallelism"]
        ));
    }
    if flag(&args, "--shard") != Some("$(JOB_COMPLETION_INDEX)/$(CROSSDOCK_SHARD_COUNT)") {
        problems.push(format!(
            "{at}: --shard is {:?}, not the completion index of the count",
            flag(&args, "--shard")
        ));
    }
    let index = env_var(c, "JOB_COMPLETION_INDEX");
    if index.is_none_or(|e| {
        e["valueFrom"]["fieldRef"]["fieldPath"]
            != "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    }) {
        problems.push(format!(
            "{at}: JOB_COMPLETION_INDEX is not the Job's completion index"
        ));
    }
    problems
}

fn assert_none(problems: Vec<String>) {
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn every_pod_fits_the_daemon() {
    let expect = Expect::from_sources();
    let objects = source_objects();
    let workloads: Vec<&Object> = objects
        .iter()
        .filter(|o| o.pod_template().is_some())
        .collect();
    let kinds: BTreeSet<&str> = workloads.iter().map(|o| o.kind()).collect();
    assert_eq!(
        kinds,
        BTreeSet::from(["CronJob", "Deployment"]),
        "the daemon and the CronJob overlays"
    );
    assert_none(
        workloads
            .iter()
            .flat_map(|o| pod_problems(o, &expect))
            .collect(),
    );
}

#[test]
fn pods_run_one_image_in_one_way() {
    // The pod spec is repeated in each overlay: what should not differ, does not.
    let objects = source_objects();
    let mut seen: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for o in objects.iter().filter(|o| o.pod_template().is_some()) {
        let c = o.container().unwrap();
        let spec = &o.pod_template().unwrap()["spec"];
        let mut note = |what, v: &Value| seen.entry(what).or_default().insert(v.to_string());
        note("image", &c["image"]);
        note("resources", &c["resources"]);
        note("securityContext", &c["securityContext"]);
        note("volumeMounts", &c["volumeMounts"]);
        note("pod securityContext", &spec["securityContext"]);
        note("volumes", &spec["volumes"]);
        note(
            "terminationGracePeriodSeconds",
            &spec["terminationGracePeriodSeconds"],
        );
        note("--config", &Value::from(flag(&args(c), "--config")));
    }
    let differing: Vec<String> = seen
        .iter()
        .filter(|(_, values)| values.len() != 1)
        .map(|(what, values)| format!("{what} differs between pods: {values:?}"))
        .collect();
    assert_none(differing);
}

#[test]
fn service_and_servicemonitor_reach_the_metrics() {
    let expect = Expect::from_sources();
    let objects = source_objects();
    assert!(
        objects.iter().any(|o| o.kind() == "ServiceMonitor"),
        "the servicemonitor component"
    );
    assert_none(scrape_problems(&objects, &expect));
}

/// Every metric an alert reads is one crossdock exports: a renamed metric must not leave an
/// alert that silently never fires.
#[test]
fn alerts_read_only_metrics_crossdock_exports() {
    let rules = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("deploy/prometheus/crossdock-alerts.yaml"),
    )
    .unwrap();
    // A family renders only once it has a sample: give each one the alerts may read.
    crossdock::metrics::record_request("alerts-test:1", "GET", Some(200));
    crossdock::metrics::record_run("alerts-test", "ok", 1.0, 0);
    crossdock::metrics::record_rule_images("alerts-test", "skipped", 1);
    crossdock::metrics::record_rule_intervals([("alerts-test", Some(60))]);
    let exported = crossdock::metrics::global().render();
    let names: std::collections::BTreeSet<&str> = regex::Regex::new(r"crossdock_[a-z_]+")
        .unwrap()
        .find_iter(&rules)
        .map(|m| m.as_str())
        .collect();
    assert!(names.len() >= 5, "{names:?}");
    let sampled = |n: &str| {
        exported
            .lines()
            .any(|l| l.starts_with(&format!("{n}{{")) || l.starts_with(&format!("{n} ")))
    };
    let unknown: Vec<&str> = names.into_iter().filter(|n| !sampled(n)).collect();
    assert!(
        unknown.is_empty(),
        "alerts read metrics crossdock does not export: {unknown:?}"
    );
}

#[test]
fn shards_agree_on_their_count() {
    let objects = source_objects();
    let sharded = objects
        .iter()
        .filter(|o| o.value["spec"]["jobTemplate"]["spec"]["completionMode"] == "Indexed")
        .count();
    assert_eq!(sharded, 1, "overlays/sharded has one Indexed CronJob");
    assert_none(objects.iter().flat_map(shard_problems).collect());
}

#[test]
fn kustomizations_list_every_manifest() {
    // A manifest written but not listed would never be applied, nor rendered and validated.
    let mut files = Vec::new();
    yaml_files(&k8s_dir(), &mut files);
    let mut problems = Vec::new();
    for k in files
        .iter()
        .filter(|p| p.file_name().is_some_and(|n| n == "kustomization.yaml"))
    {
        let dir = k.parent().unwrap();
        let doc = &yaml_docs(&read(k), &k.display().to_string())[0];
        let listed: BTreeSet<&str> = doc["resources"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(str_of)
            .collect();
        for entry in &listed {
            if !dir.join(entry).exists() {
                problems.push(format!(
                    "{}: lists {entry}, which does not exist",
                    k.display()
                ));
            }
        }
        for f in std::fs::read_dir(dir).unwrap() {
            let name = f.unwrap().file_name().to_string_lossy().into_owned();
            let example = name.ends_with(".example.yaml");
            if name.ends_with(".yaml")
                && name != "kustomization.yaml"
                && !example
                && !listed.contains(name.as_str())
            {
                problems.push(format!("{}: does not list {name}", k.display()));
            }
        }
    }
    assert_none(problems);
}

#[test]
fn dockerfile_runs_the_daemon_as_the_manifests_expect() {
    let expect = Expect::from_sources();
    let dockerfile = dockerfile::Dockerfile::parse(&read(&deploy_dir().join("Dockerfile")));
    assert_eq!(dockerfile.exec("ENTRYPOINT"), ["crossdock"]);
    let cmd = dockerfile.exec("CMD");
    let cmd: Vec<&str> = cmd.iter().map(String::as_str).collect();
    assert_eq!(cmd[0], "run");
    let deployment = source_objects()
        .into_iter()
        .find(|o| o.kind() == "Deployment")
        .unwrap();
    let c = deployment.container().unwrap();
    assert_eq!(
        flag(&cmd, "--config"),
        flag(&args(c), "--config"),
        "the image's default --config is where the manifests mount it"
    );
    assert_eq!(
        dockerfile.exposed_ports(),
        [format!("{}/tcp", expect.listen_port)]
    );
    assert_eq!(
        dockerfile.last("USER"),
        format!("{NONROOT_UID}:{NONROOT_UID}")
    );
}

/// Each kustomization rendered by deploy/check.sh, and what it must hold.
const RENDERS: [(&str, &[&str]); 7] = [
    (
        "base",
        &["ConfigMap", "Deployment", "Service", "ServiceAccount"],
    ),
    ("cronjob", &["ConfigMap", "CronJob", "ServiceAccount"]),
    ("sharded", &["ConfigMap", "CronJob", "ServiceAccount"]),
    (
        "monitored",
        &[
            "ConfigMap",
            "Deployment",
            "PrometheusRule",
            "Service",
            "ServiceAccount",
            "ServiceMonitor",
        ],
    ),
    (
        "eks",
        &["ConfigMap", "Deployment", "Service", "ServiceAccount"],
    ),
    (
        "aks",
        &["ConfigMap", "Deployment", "Service", "ServiceAccount"],
    ),
    (
        "gke",
        &["ConfigMap", "Deployment", "Service", "ServiceAccount"],
    ),
];

#[test]
#[ignore = "needs the output of deploy/check.sh: CROSSDOCK_DEPLOY_RENDERED=DIR"]
fn rendered_objects_agree() {
    let dir = std::env::var_os("CROSSDOCK_DEPLOY_RENDERED")
        .map(PathBuf::from)
        .expect("CROSSDOCK_DEPLOY_RENDERED: the directory deploy/check.sh renders into");
    let source = Expect::from_sources();
    let mut problems = Vec::new();
    for (name, kinds) in RENDERS {
        let objects = rendered_objects(&dir.join(format!("{name}.yaml")));
        let found: BTreeSet<&str> = objects.iter().map(|o| o.kind()).collect();
        if found != kinds.iter().copied().collect() {
            problems.push(format!("{name}: renders {found:?}, expected {kinds:?}"));
            continue;
        }
        // The generated ConfigMap (its name now carries a hash) is what the pods mount, and
        // its config.toml is what the pods must fit.
        let configmap = objects.iter().find(|o| o.kind() == "ConfigMap").unwrap();
        let Some(config) = configmap.value["data"][source.config_key.as_str()].as_str() else {
            problems.push(format!("{}: no {}", configmap.at(), source.config_key));
            continue;
        };
        let expect = Expect::from_config(config, configmap.name(), &source.config_key);
        for o in objects.iter().filter(|o| o.pod_template().is_some()) {
            problems.extend(pod_problems(o, &expect));
            problems.extend(shard_problems(o));
        }
        if found.contains("Deployment") {
            problems.extend(scrape_problems(&objects, &expect));
        }
    }
    assert_none(problems);
}
