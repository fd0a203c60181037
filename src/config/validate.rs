//! From [`RawConfig`] to [`Plan`]: every string parsed, every default applied, every file and
//! variable the configuration names looked at, each problem recorded with its key path.
//!
//! Checks go as far as they can without the network: references and the targets the template
//! makes from them, regexes, semver ranges, cron lines, durations, platforms, files named,
//! environment variables named, duplicate rule names, two sources landing on one target.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::credentials::{read_named_file, resolve as resolve_credentials};
use super::error::{KeyPath, Problems};
use super::fields::{duration, rule_name};
use super::plan::{
    DEFAULT_LISTEN, DEFAULT_MAX_CONCURRENCY, DEFAULT_MAX_CONCURRENT_IMAGES, DEFAULT_RETRY_BACKOFF,
    DEFAULT_SCHEDULE, DEFAULT_SHUTDOWN_GRACE, DEFAULT_TIMEOUT, DaemonSettings, Plan,
    RegistrySettings, ServerSettings, registry_name,
};
use super::raw::{RawConfig, RawDefaults, RawRegistry, RawRule};
use super::tags::tag_selector;
use crate::manifest::Platform;
use crate::reference::Reference;
use crate::rule::{OnConflict, RulePlan, TargetTemplate};
use crate::schedule::Schedule;

fn platforms(list: &[String], path: &KeyPath, problems: &mut Problems<'_>) -> Vec<Platform> {
    let mut out = Vec::new();
    for (i, p) in list.iter().enumerate() {
        match Platform::parse(p) {
            Ok(p) => out.push(p),
            Err(e) => problems.add(&path.index(i), e),
        }
    }
    out
}

/// `[defaults]`, resolved.
struct Defaults {
    platforms: Vec<Platform>,
    referrers: bool,
    on_conflict: OnConflict,
    schedule: Schedule,
    timeout: Duration,
    retry_backoff: Duration,
    backup_tag: Option<String>,
}

fn backup_tag(raw: Option<&String>, path: &KeyPath, problems: &mut Problems<'_>) -> Option<String> {
    let t = raw?;
    match crate::copy::backup::check_template(t) {
        Ok(()) => Some(t.clone()),
        Err(e) => {
            problems.add(path, e);
            None
        }
    }
}

fn defaults(raw: &RawDefaults, problems: &mut Problems<'_>) -> Defaults {
    let path = KeyPath::root().key("defaults");
    let schedule_text = raw.schedule.as_deref().unwrap_or(DEFAULT_SCHEDULE);
    let schedule = Schedule::parse(schedule_text).unwrap_or_else(|e| {
        problems.add(&path.key("schedule"), e);
        Schedule::Every(Duration::from_secs(6 * 3600))
    });
    let timeout = duration(
        raw.timeout.as_deref(),
        DEFAULT_TIMEOUT,
        &path.key("timeout"),
        problems,
    );
    if timeout.is_zero() {
        problems.add(&path.key("timeout"), "must be more than zero");
    }
    Defaults {
        platforms: platforms(
            raw.platforms.as_deref().unwrap_or(&[]),
            &path.key("platforms"),
            problems,
        ),
        referrers: raw.referrers.unwrap_or(true),
        on_conflict: raw.on_conflict.unwrap_or_default(),
        schedule,
        timeout,
        retry_backoff: duration(
            raw.retry_backoff.as_deref(),
            DEFAULT_RETRY_BACKOFF,
            &path.key("retry_backoff"),
            problems,
        ),
        backup_tag: backup_tag(raw.backup_tag.as_ref(), &path.key("backup_tag"), problems),
    }
}

fn registry(
    host: &str,
    raw: &RawRegistry,
    base: &Path,
    env: &BTreeMap<String, String>,
    path: &KeyPath,
    problems: &mut Problems<'_>,
) -> RegistrySettings {
    let mut s = RegistrySettings {
        insecure: raw.insecure.unwrap_or(false),
        tls_skip_verify: raw.tls_skip_verify.unwrap_or(false),
        ..RegistrySettings::default()
    };
    if s.insecure && (raw.ca_file.is_some() || s.tls_skip_verify) {
        problems.add(
            &path.key("insecure"),
            "insecure = true means plain HTTP, where ca_file and tls_skip_verify have no effect; \
             remove one or the other",
        );
    }
    if let Some(ca) = &raw.ca_file {
        let key = path.key("ca_file");
        if let Some((full, bytes)) = read_named_file(base, ca, &key, problems) {
            if !bytes
                .windows(27)
                .any(|w| w == b"-----BEGIN CERTIFICATE-----")
            {
                problems.add(&key, format!("{} holds no PEM certificate", full.display()));
            }
            s.ca_file = Some(full);
        }
    }
    match raw.max_concurrency {
        Some(0) => problems.add(&path.key("max_concurrency"), "must be at least 1"),
        Some(n) => s.max_concurrency = n as usize,
        None => s.max_concurrency = DEFAULT_MAX_CONCURRENCY,
    }
    match raw.requests_per_second {
        Some(r) if !(r.is_finite() && r > 0.0) => problems.add(
            &path.key("requests_per_second"),
            format!("must be a number above zero, found {r}"),
        ),
        r => s.requests_per_second = r,
    }
    match raw.chunk_size {
        Some(c) if c.0 == 0 => problems.add(&path.key("chunk_size"), "must be more than zero"),
        c => s.chunk_size = c.map(|c| c.0),
    }
    s.ratelimit_reserve = raw.ratelimit_reserve.unwrap_or(0);
    s.credentials = resolve_credentials(raw, host, base, env, path, problems);
    super::network::network(host, raw, base, env, path, problems, &mut s);
    s.auth = super::cloud::resolve(raw, base, path, problems);
    s
}

fn registries(
    raw: &BTreeMap<String, RawRegistry>,
    base: &Path,
    env: &BTreeMap<String, String>,
    problems: &mut Problems<'_>,
) -> BTreeMap<String, RegistrySettings> {
    let mut out = BTreeMap::new();
    let mut seen: HashMap<String, &str> = HashMap::new();
    for (key, r) in raw {
        let path = KeyPath::root().key("registries").key(key);
        let name = registry_name(key).to_string();
        // A registry key must be what a reference's registry part can be.
        let valid = Reference::parse(&format!("{key}/x"))
            .ok()
            .filter(|p| p.registry() == name);
        if valid.is_none() {
            problems.add(
                &path,
                format!(
                    "{key:?} is not a registry name: write host[:port] as in image references \
                     (it needs a '.' or a ':port', or to be localhost), without https://"
                ),
            );
            continue;
        }
        if let Some(other) = seen.insert(name.clone(), key) {
            problems.add(
                &path,
                format!("{key:?} and {other:?} are the same registry ({name})"),
            );
            continue;
        }
        out.insert(name, registry(key, r, base, env, &path, problems));
    }
    out
}

/// `source`: one repository or a list, each without tag or digest, none twice.
fn rule_sources(raw: &RawRule, path: &KeyPath, problems: &mut Problems<'_>) -> Vec<Reference> {
    let mut sources = Vec::new();
    match &raw.source {
        None => problems.missing(
            &path.key("source"),
            "give a repository (e.g. \"docker.io/library/alpine\") or a list of them",
        ),
        Some(list) if list.0.is_empty() => {
            problems.add(&path.key("source"), "an empty list names no repository")
        }
        Some(list) => {
            let single = list.0.len() == 1;
            for (i, s) in list.0.iter().enumerate() {
                let p = if single {
                    path.key("source")
                } else {
                    path.key("source").index(i)
                };
                match Reference::parse(s) {
                    Err(e) => problems.add(&p, e),
                    Ok(r) if r.tag().is_some() || r.digest().is_some() => problems.add(
                        &p,
                        format!(
                            "{s:?} names a tag or digest; give the repository only and put tags in `tags`"
                        ),
                    ),
                    Ok(r) if sources.contains(&r) => {
                        problems.add(&p, format!("{r} is listed twice"))
                    }
                    Ok(r) => sources.push(r),
                }
            }
        }
    }
    sources
}

/// `target`: one template or a list; every source must expand to a valid reference under each,
/// and two templates must not land one source on the same repository.
fn rule_targets(
    raw: &RawRule,
    sources: &[Reference],
    path: &KeyPath,
    problems: &mut Problems<'_>,
) -> (Option<TargetTemplate>, Vec<TargetTemplate>) {
    let target_path = path.key("target");
    match &raw.target {
        None => {
            problems.missing(
                &target_path,
                "give a target template, e.g. \"localhost:5001/mirror/{repo}\"",
            );
            (None, Vec::new())
        }
        Some(list) if list.0.is_empty() => {
            problems.add(&target_path, "give at least one target template");
            (None, Vec::new())
        }
        Some(list) => {
            let single = list.0.len() == 1;
            let mut all = Vec::new();
            let mut ok = true;
            for (i, t) in list.0.iter().enumerate() {
                let p = if single {
                    target_path.clone()
                } else {
                    target_path.index(i)
                };
                match target_template(t, sources, &p, problems) {
                    Some(tpl) => all.push(tpl),
                    None => ok = false,
                }
            }
            // Two templates of one rule must not land on the same repository either.
            for src in sources {
                let mut seen = std::collections::HashSet::new();
                for tpl in &all {
                    if let Ok(t) = tpl.expand(src)
                        && !seen.insert(t.clone())
                    {
                        problems.add(&target_path, format!("two targets of {src} are both {t}"));
                        ok = false;
                    }
                }
            }
            if ok && !all.is_empty() {
                let first = all.remove(0);
                (Some(first), all)
            } else {
                (None, Vec::new())
            }
        }
    }
}

fn rule(
    index: usize,
    raw: &RawRule,
    defaults: &Defaults,
    names: &mut HashMap<String, usize>,
    problems: &mut Problems<'_>,
) -> Option<RulePlan> {
    let path = KeyPath::root().key("rules").index(index);
    let name = rule_name(
        raw.name.as_ref(),
        &path.key("name"),
        "every rule needs a unique name",
        |n| {
            let first = names.get(n)?;
            Some(format!("duplicate rule name {n:?} (also rules[{first}])"))
        },
        problems,
    );
    if let Some(n) = &name {
        names.insert(n.clone(), index);
    }
    let sources = rule_sources(raw, &path, problems);
    let (target, extra_targets) = rule_targets(raw, &sources, &path, problems);
    let tags = match &raw.tags {
        None => {
            problems.missing(
                &path.key("tags"),
                "give a list (tags = [\"latest\"]) or a filter table ([rules.tags] with include, \
                 exclude, semver, newest, or all = true)",
            );
            None
        }
        Some(t) => Some(tag_selector(t, &path.key("tags"), problems)),
    };

    let platforms = match &raw.platforms {
        Some(list) => platforms(list, &path.key("platforms"), problems),
        None => defaults.platforms.clone(),
    };
    let schedule = match &raw.schedule {
        Some(s) => Schedule::parse(s)
            .map_err(|e| problems.add(&path.key("schedule"), e))
            .ok(),
        None => Some(defaults.schedule.clone()),
    };
    let timeout = duration(
        raw.timeout.as_deref(),
        defaults.timeout,
        &path.key("timeout"),
        problems,
    );
    if timeout.is_zero() {
        problems.add(&path.key("timeout"), "must be more than zero");
    }

    Some(RulePlan {
        name: name?,
        sources,
        target: target?,
        extra_targets,
        tags: tags?,
        platforms,
        referrers: raw.referrers.unwrap_or(defaults.referrers),
        on_conflict: raw.on_conflict.unwrap_or(defaults.on_conflict),
        schedule: schedule?,
        timeout,
        retry_backoff: duration(
            raw.retry_backoff.as_deref(),
            defaults.retry_backoff,
            &path.key("retry_backoff"),
            problems,
        ),
        backup_tag: match &raw.backup_tag {
            Some(_) => backup_tag(raw.backup_tag.as_ref(), &path.key("backup_tag"), problems),
            None => defaults.backup_tag.clone(),
        },
        verify: None,
        audit: None,
        prune: Default::default(),
        immutable_tags: None,
        full_check: super::steady::default_full_check(),
    })
}

/// Checks one target template against every source of its rule (at `target_path`).
fn target_template(
    t: &str,
    sources: &[Reference],
    target_path: &KeyPath,
    problems: &mut Problems<'_>,
) -> Option<TargetTemplate> {
    let target_path = target_path.clone();
    match TargetTemplate::parse(t) {
        Err(e) => {
            problems.add(&target_path, format!("invalid template {t:?}: {e}"));
            None
        }
        Ok(tpl) => {
            let mut seen: HashMap<Reference, &Reference> = HashMap::new();
            let mut ok = true;
            for src in sources {
                match tpl.expand(src) {
                    Err(e) => {
                        problems.add(&target_path, format!("for source {src}: {e}"));
                        ok = false;
                    }
                    Ok(t) if t.tag().is_some() || t.digest().is_some() => {
                        problems.add(
                            &target_path,
                            "names a tag or digest; the target tag is always the source tag",
                        );
                        ok = false;
                        break;
                    }
                    Ok(t) if t.archive().is_some() => {
                        problems.add(
                            &target_path,
                            "an archive is written whole by one `crossdock import`; a rule's \
                             target is a registry or an oci: folder",
                        );
                        ok = false;
                        break;
                    }
                    Ok(t) if &t == src => {
                        problems.add(
                            &target_path,
                            format!("source {src} would be copied onto itself"),
                        );
                        ok = false;
                    }
                    Ok(t) => {
                        if let Some(other) = seen.get(&t) {
                            let hint = if tpl.has_placeholder() {
                                "make the template tell them apart (e.g. {repo} instead of {name})"
                            } else {
                                "use {repo} or {name} in the template"
                            };
                            problems.add(
                                &target_path,
                                format!("sources {other} and {src} both land on {t}; {hint}"),
                            );
                            ok = false;
                        } else {
                            seen.insert(t, src);
                        }
                    }
                }
            }
            ok.then_some(tpl)
        }
    }
}

/// `[daemon]`, resolved.
fn daemon_settings(raw: &RawConfig, problems: &mut Problems<'_>) -> DaemonSettings {
    let d = raw.daemon.as_ref();
    let dpath = KeyPath::root().key("daemon");
    let max_concurrent_images = match d.and_then(|d| d.max_concurrent_images) {
        Some(0) => {
            problems.add(&dpath.key("max_concurrent_images"), "must be at least 1");
            DEFAULT_MAX_CONCURRENT_IMAGES
        }
        Some(n) => n as usize,
        None => DEFAULT_MAX_CONCURRENT_IMAGES,
    };
    DaemonSettings {
        max_concurrent_images,
        run_on_start: d.and_then(|d| d.run_on_start).unwrap_or(true),
        shutdown_grace: duration(
            d.and_then(|d| d.shutdown_grace.as_deref()),
            DEFAULT_SHUTDOWN_GRACE,
            &dpath.key("shutdown_grace"),
            problems,
        ),
        jitter: duration(
            d.and_then(|d| d.jitter.as_deref()),
            Duration::ZERO,
            &dpath.key("jitter"),
            problems,
        ),
    }
}

/// Checks a raw configuration and builds the plan; `None` if anything was recorded in
/// `problems` (including problems recorded before, while reading the file).
pub(crate) fn validate(
    raw: &RawConfig,
    file: &Path,
    env: &BTreeMap<String, String>,
    problems: &mut Problems<'_>,
) -> Option<Plan> {
    let base = file.parent().unwrap_or(Path::new("."));

    let listen_text = raw
        .server
        .as_ref()
        .and_then(|s| s.listen.as_deref())
        .unwrap_or(DEFAULT_LISTEN);
    let listen = listen_text.parse::<SocketAddr>().unwrap_or_else(|e| {
        problems.add(
            &KeyPath::root().key("server").key("listen"),
            format!("invalid address {listen_text:?}: {e} (write IP:PORT, e.g. \"0.0.0.0:9090\")"),
        );
        DEFAULT_LISTEN.parse().expect("default address parses")
    });

    let daemon = daemon_settings(raw, problems);

    let defaults = defaults(
        raw.defaults.as_ref().unwrap_or(&Default::default()),
        problems,
    );
    let registries = registries(
        raw.registries.as_ref().unwrap_or(&BTreeMap::new()),
        base,
        env,
        problems,
    );

    let mut rules = Vec::new();
    let mut positions = Vec::new();
    let mut names = HashMap::new();
    match &raw.rules {
        None if raw.indexes.is_none() => problems.missing(
            &KeyPath::root().key("rules"),
            "add at least one [[rules]] (or [[indexes]]) table",
        ),
        None => {}
        Some(list) => {
            for (i, r) in list.iter().enumerate() {
                let prune = super::prune::policy(i, r, problems);
                if let Some(mut plan) = rule(i, r, &defaults, &mut names, problems) {
                    super::trust::apply(&mut plan, i, r, base, problems);
                    super::prune::apply(&mut plan, prune, i, problems);
                    super::steady::apply(&mut plan, i, r, problems);
                    rules.push(plan);
                    positions.push(i);
                }
            }
        }
    }

    let indexes = super::indexes::indexes(
        raw.indexes.as_deref().unwrap_or(&[]),
        &super::indexes::IndexDefaults {
            referrers: defaults.referrers,
            schedule: defaults.schedule.clone(),
            timeout: defaults.timeout,
            retry_backoff: defaults.retry_backoff,
        },
        &names,
        problems,
    );
    let placed: Vec<(usize, &RulePlan)> = positions.iter().copied().zip(&rules).collect();
    super::prune::shared_targets(&placed, &indexes, problems);
    let notifications_token =
        super::notifications::notifications_token(raw.server.as_ref(), base, env, problems);

    if !problems.is_empty() {
        return None;
    }
    Some(Plan {
        path: file.to_path_buf(),
        server: ServerSettings {
            listen,
            notifications_token,
        },
        daemon,
        rules,
        indexes,
        registries,
    })
}
