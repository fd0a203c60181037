//! The status page: `GET /` on the daemon's port, for people.
//!
//! `/status` is JSON for programs; an operator who opens the daemon's port in a browser (through
//! `kubectl port-forward`, say) wants to see at a glance which rules are healthy. This renders
//! the same state as one self-contained HTML page: no external assets (clusters often have no
//! way out), no JavaScript (a `<meta http-equiv="refresh">` keeps it current), every value from
//! the configuration or a registry's error escaped. A rule that prunes shows what its last run
//! pruned (or would, or could not) with the counts, in the words `sync` uses, and the tags
//! themselves, as `/status` lists them.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use super::{RuleStatus, RunSummary, StatusDoc};
use crate::rule::prune_words;

/// Seconds between the page's reloads.
const REFRESH_SECONDS: u32 = 15;

/// Pruned tags listed per rule; past it they are counted.
const PRUNED_SHOWN: usize = 10;

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}\
h1{font-size:1.3em}table{border-collapse:collapse;width:100%}\
th,td{text-align:left;padding:.35em .6em;border-bottom:1px solid #ddd;vertical-align:top}\
th{background:#f4f4f4}.ok{color:#176f2c}.failed,.timeout{color:#b3261e;font-weight:600}\
.muted{color:#777}ul{margin:0;padding-left:1.1em}code{font-size:.95em;word-break:break-word}\
td:nth-child(-n+5){white-space:nowrap}td:nth-child(6){width:22%}td:last-child{width:40%}";

/// The page for `doc`, as of `now`.
pub(super) fn render(doc: &StatusDoc, now: DateTime<Utc>) -> String {
    let mut html = String::with_capacity(4096);
    let readiness = if doc.ready { "ready" } else { "not ready" };
    let shard = doc
        .shard
        .as_deref()
        .map(|s| format!(", shard {}", escape(s)))
        .unwrap_or_default();
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\">\
         <title>crossdock status</title><style>{STYLE}</style></head><body>\
         <h1>crossdock</h1><p>{readiness}{shard} &middot; {} rule(s) &middot; \
         as of {} &middot; <a href=\"/status\">JSON</a> &middot; \
         <a href=\"/metrics\">metrics</a></p>",
        doc.rules.len(),
        now.format("%Y-%m-%d %H:%M:%S UTC"),
    );
    html.push_str(
        "<table><thead><tr><th>rule</th><th>schedule</th><th>last result</th>\
         <th>last success</th><th>next run</th><th>pruned tags</th><th>last errors</th></tr>\
         </thead><tbody>",
    );
    for (name, rule) in &doc.rules {
        row(&mut html, name, rule, now);
    }
    if doc.rules.is_empty() {
        html.push_str("<tr><td colspan=\"7\" class=\"muted\">no rules in this shard</td></tr>");
    }
    html.push_str("</tbody></table></body></html>\n");
    html
}

fn row(html: &mut String, name: &str, rule: &RuleStatus, now: DateTime<Utc>) {
    let result = match (&rule.last_run, rule.running) {
        (_, true) => "<span class=\"muted\">running…</span>".to_string(),
        (Some(run), false) => format!(
            "<span class=\"{0}\">{0}</span> {1} <span class=\"muted\">({2} image(s), {3} copied, \
             {4} failed{5}, {6:.1}s)</span>",
            escape(&run.result),
            when(Some(run.started), now),
            run.images,
            run.images_copied,
            run.images_failed,
            prune_words(&run.counts)
                .map(|w| format!(", {w}"))
                .collect::<String>(),
            run.seconds,
        ),
        (None, false) => "<span class=\"muted\">not run yet</span>".to_string(),
    };
    let errors = match &rule.last_run {
        Some(run) if !run.errors.is_empty() => {
            let items: String = run
                .errors
                .iter()
                .map(|e| format!("<li><code>{}</code></li>", escape(e)))
                .collect();
            format!("<ul>{items}</ul>")
        }
        _ => String::new(),
    };
    let _ = write!(
        html,
        "<tr><td class=\"rule\">{}</td><td><code>{}</code></td><td>{result}</td><td>{}</td>\
         <td>{}</td><td>{}</td><td>{errors}</td></tr>",
        escape(name),
        escape(&rule.schedule),
        when(rule.last_success, now),
        when(rule.next_run, now),
        rule.last_run.as_ref().map(pruned).unwrap_or_default(),
    );
}

/// The target tags `run` pruned (or would, or could not alone): each with its state, as
/// `/status` labels it, and the reason when there is one.
fn pruned(run: &RunSummary) -> String {
    if run.pruned.is_empty() {
        return String::new();
    }
    let items: String = run
        .pruned
        .iter()
        .take(PRUNED_SHOWN)
        .map(|o| {
            let label = o.state.label();
            let reason = o
                .state
                .reason()
                .map(|r| format!(" <span class=\"muted\">{}</span>", escape(&r)))
                .unwrap_or_default();
            format!(
                "<li class=\"{label}\"><code>{}</code> {}{reason}</li>",
                escape(&o.target),
                label.replace('_', " "),
            )
        })
        .collect();
    let c = &run.counts;
    let all = c.pruned + c.would_prune + c.would_prune_by_tag + c.not_pruned;
    let more = all.saturating_sub(PRUNED_SHOWN.min(run.pruned.len()) as u64);
    let more = match more {
        0 => String::new(),
        n => format!("<li class=\"muted\">… and {n} more</li>"),
    };
    format!("<ul>{items}{more}</ul>")
}

/// An instant relative to now ("4m ago", "in 2h"), with the exact time on hover.
fn when(t: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    let Some(t) = t else {
        return "<span class=\"muted\">—</span>".to_string();
    };
    let delta = t - now;
    let secs = delta.num_seconds().unsigned_abs();
    let span = match secs {
        0..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m", secs / 60),
        3600..=172_799 => format!("{}h {}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d", secs / 86400),
    };
    let text = if delta.num_seconds() >= 0 {
        format!("in {span}")
    } else {
        format!("{span} ago")
    };
    format!(
        "<time datetime=\"{0}\" title=\"{0}\">{text}</time>",
        t.format("%Y-%m-%dT%H:%M:%SZ")
    )
}

/// HTML-escapes text for element content and quoted attribute values: the five characters
/// that can end either. (Rule names are restricted by the configuration, but error messages
/// carry whatever a registry answered.)
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chrono::TimeZone;

    use super::*;
    use crate::rule::{Counts, ImageOutcome, ImageState};

    fn outcome(tag: &str, state: ImageState) -> ImageOutcome {
        ImageOutcome {
            source: format!("docker.io/library/alpine:{tag}"),
            target: format!("mirror.local/alpine:{tag}"),
            state,
            digest: Some(format!("sha256:{}", "a".repeat(64))),
            bytes_copied: 0,
        }
    }

    fn doc() -> (StatusDoc, DateTime<Utc>) {
        let now = Utc.with_ymd_and_hms(2026, 11, 27, 12, 0, 0).unwrap();
        let mut rules = BTreeMap::new();
        rules.insert(
            "alpine".to_string(),
            RuleStatus {
                schedule: "@every 1h".to_string(),
                next_run: Some(now + chrono::Duration::minutes(42)),
                running: false,
                last_run: Some(RunSummary {
                    started: now - chrono::Duration::minutes(18),
                    seconds: 2.5,
                    result: "failed".to_string(),
                    images: 3,
                    images_copied: 1,
                    images_failed: 2,
                    errors: vec!["HEAD <registry>: 503 \"busy\" & more".to_string()],
                    pruned: vec![
                        outcome("3.17", ImageState::Pruned),
                        outcome(
                            "3.16",
                            ImageState::NotPruned("3.16-ro <also> points".into()),
                        ),
                    ],
                    counts: Counts {
                        pruned: 1,
                        not_pruned: 1,
                        ..Counts::default()
                    },
                }),
                last_success: Some(now - chrono::Duration::hours(3)),
                consecutive_failures: 1,
                next_retry: Some(now + chrono::Duration::seconds(30)),
            },
        );
        rules.insert("fresh".to_string(), RuleStatus::default());
        let doc = StatusDoc {
            ready: true,
            shard: Some("1/3".to_string()),
            rules,
        };
        (doc, now)
    }

    #[test]
    fn lists_each_rule_with_its_times_and_escaped_errors() {
        let (doc, now) = doc();
        let html = render(&doc, now);
        assert!(html.contains("<td class=\"rule\">alpine</td>"), "{html}");
        assert!(html.contains("<td class=\"rule\">fresh</td>"), "{html}");
        assert!(html.contains(">in 42m</time>"), "{html}");
        assert!(html.contains(">3h 0m ago</time>"), "{html}");
        assert!(html.contains("class=\"failed\">failed</span>"), "{html}");
        assert!(html.contains("1 copied, 2 failed"), "{html}");
        assert!(html.contains("HEAD &lt;registry&gt;: 503 &quot;busy&quot; &amp; more"));
        assert!(!html.contains("<registry>"), "unescaped error text: {html}");
        assert!(html.contains("not run yet"), "{html}");
        assert!(html.contains("ready, shard 1/3"), "{html}");
    }

    #[test]
    fn shows_pruned_tags_with_their_counts_and_reasons() {
        let (doc, now) = doc();
        let html = render(&doc, now);
        assert!(
            html.contains("2 failed, 1 pruned, 1 not removable alone, 2.5s"),
            "{html}"
        );
        assert!(
            html.contains("<li class=\"pruned\"><code>mirror.local/alpine:3.17</code> pruned</li>"),
            "{html}"
        );
        assert!(
            html.contains(
                "<code>mirror.local/alpine:3.16</code> not pruned <span class=\"muted\">3.16-ro \
                 &lt;also&gt; points</span>"
            ),
            "{html}"
        );
    }

    #[test]
    fn page_is_self_contained_and_refreshes() {
        let (doc, now) = doc();
        let html = render(&doc, now);
        assert!(html.contains("http-equiv=\"refresh\""), "{html}");
        for outside in ["<script", "src=\"http", "href=\"http", "@import", "url("] {
            assert!(!html.contains(outside), "{outside} in {html}");
        }
    }

    #[test]
    fn empty_shard_says_so() {
        let (mut doc, now) = doc();
        doc.rules.clear();
        assert!(render(&doc, now).contains("no rules in this shard"));
    }
}
