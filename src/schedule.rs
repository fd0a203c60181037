//! When a rule runs: a 5-field cron line as in a Kubernetes CronJob, a nickname (`@hourly` …),
//! or a fixed interval (`@every 6h`), always evaluated in UTC.
//!
//! This module only answers "when is the next run after `t`?"; it keeps no clock and sleeps on
//! nothing, so the daemon's scheduler (which owns overlap and jitter) can be tested with paused
//! time, and these rules with fixed instants.
//!
//! Why the parser is configured by hand: croner's default accepts 6- and 7-field lines
//! (seconds and years), which would make `0 0 * * * *` mean something different here than in
//! crontab or a CronJob. Only 5 fields are accepted, and weekdays are numbered as crontab does:
//! Sunday is 0 and also 7, `1-5` is Monday to Friday. When both day-of-month and day-of-week
//! are restricted, either matching is enough (Vixie cron's rule, which Kubernetes keeps).
//! Time zone is UTC, as a CronJob without `timeZone` on a UTC control plane.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

/// Shortest `@every` interval accepted: below this a "schedule" is a busy loop.
pub const MIN_EVERY: Duration = Duration::from_secs(1);

/// Why a schedule line was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// The cron line does not parse.
    #[error("invalid cron line {line:?}: {reason}")]
    Cron {
        /// The line as written.
        line: String,
        /// croner's explanation.
        reason: String,
    },
    /// The cron line parses but names no instant that exists (e.g. `0 0 30 2 *`).
    #[error("cron line {line:?} never fires")]
    Never {
        /// The line as written.
        line: String,
    },
    /// The `@every` interval does not parse or is too short.
    #[error("invalid interval in {line:?}: {reason}")]
    Every {
        /// The line as written.
        line: String,
        /// What is wrong.
        reason: String,
    },
}

/// A parsed schedule.
#[derive(Clone)]
pub enum Schedule {
    /// A 5-field cron line (nicknames already expanded); `line` is what the user wrote.
    Cron {
        /// The parsed line.
        cron: Box<Cron>,
        /// The line as written, for display.
        line: String,
    },
    /// A fixed interval: the next run is the given instant plus this.
    Every(Duration),
}

impl Schedule {
    /// Parses a schedule: `M H DoM Mon DoW`, `@hourly`, `@daily` (`@midnight`), `@weekly`,
    /// `@monthly`, `@yearly` (`@annually`), or `@every <duration>` (humantime: `90s`, `6h`,
    /// `1h 30m`).
    pub fn parse(line: &str) -> Result<Schedule, ScheduleError> {
        let trimmed = line.trim();
        if let Some(rest) = strip_prefix_ignore_case(trimmed, "@every") {
            let rest = rest.trim();
            let every = humantime::parse_duration(rest).map_err(|e| ScheduleError::Every {
                line: line.to_string(),
                reason: e.to_string(),
            })?;
            if every < MIN_EVERY {
                return Err(ScheduleError::Every {
                    line: line.to_string(),
                    reason: format!("must be at least {}", humantime::format_duration(MIN_EVERY)),
                });
            }
            return Ok(Schedule::Every(every));
        }
        // robfig/cron (which Kubernetes uses) knows `@midnight`; croner does not.
        let expanded = if trimmed.eq_ignore_ascii_case("@midnight") {
            "@daily"
        } else {
            trimmed
        };
        let parser = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build();
        let cron = parser.parse(expanded).map_err(|e| ScheduleError::Cron {
            line: line.to_string(),
            reason: e.to_string(),
        })?;
        if let Some(reason) = bad_field(expanded, &cron) {
            return Err(ScheduleError::Cron {
                line: line.to_string(),
                reason,
            });
        }
        // A line like `0 0 31 2 *` parses but never fires; say so at load time rather than
        // leave a rule that silently never runs.
        let epoch = DateTime::<Utc>::UNIX_EPOCH;
        if cron.find_next_occurrence(&epoch, false).is_err() {
            return Err(ScheduleError::Never {
                line: line.to_string(),
            });
        }
        Ok(Schedule::Cron {
            cron: Box::new(cron),
            line: trimmed.to_string(),
        })
    }

    /// The first run strictly after `t`, or `None` if the cron line has no later instant
    /// (croner searches up to the year 5000).
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Cron { cron, .. } => cron.find_next_occurrence(&t, false).ok(),
            Schedule::Every(d) => chrono::Duration::from_std(*d)
                .ok()
                .and_then(|d| t.checked_add_signed(d)),
        }
    }

    /// The time between the next two runs after `t`: the interval an alert on a rule that has
    /// not succeeded for a while compares against (see `crossdock_rule_interval_seconds`).
    /// `None` when the schedule has fewer than two runs left.
    pub fn interval_after(&self, t: DateTime<Utc>) -> Option<std::time::Duration> {
        let first = self.next_after(t)?;
        let second = self.next_after(first)?;
        (second - first).to_std().ok()
    }
}

/// What is wrong with a field of `cron` (parsed from `line`), in words: an empty list element,
/// croner's `+`, or a field that selects nothing. croner skips
/// an empty list element (`, */6 * * *` has an empty minute list) and its search for the next
/// run then steps through every hour to the year 5000: half a minute of CPU before "never
/// fires". Found by fuzzing (`fuzz/regressions/config/empty-cron-minute-list`), as was a
/// day-of-week of a bare `+` (`fuzz/regressions/config/cron-plus-day-of-week`), a croner
/// extension that would also break the crontab rule for the two day fields.
fn bad_field(line: &str, cron: &Cron) -> Option<String> {
    const NAMES: [&str; 5] = ["minute", "hour", "day-of-month", "month", "day-of-week"];
    if let Some((name, _)) = NAMES
        .iter()
        .zip(line.split_whitespace())
        .find(|(_, field)| field.split(',').any(str::is_empty))
    {
        return Some(format!(
            "the {name} field has an empty list element (a comma at an end, or two in a row)"
        ));
    }
    if line
        .split_whitespace()
        .nth(4)
        .is_some_and(|dow| dow.starts_with('+'))
    {
        return Some(
            "the day-of-week field starts with `+`, croner's switch to matching day-of-month \
             AND day-of-week; crontab and Kubernetes know no such thing (either day matching \
             is enough), so leave it out"
                .to_string(),
        );
    }
    let p = &cron.pattern;
    [
        ("minute", &p.minutes),
        ("hour", &p.hours),
        ("month", &p.months),
    ]
    .into_iter()
    .find(|(_, c)| c.values().is_empty())
    .map(|(name, _)| format!("the {name} field selects no {name}"))
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
        .filter(|rest| rest.is_empty() || rest.starts_with(char::is_whitespace))
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::Cron { line, .. } => f.write_str(line),
            Schedule::Every(d) => write!(f, "@every {}", humantime::format_duration(*d)),
        }
    }
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Schedule({self})")
    }
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Schedule::Cron { cron: a, .. }, Schedule::Cron { cron: b, .. }) => a == b,
            (Schedule::Every(a), Schedule::Every(b)) => a == b,
            _ => false,
        }
    }
}

impl std::str::FromStr for Schedule {
    type Err = ScheduleError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Schedule::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, TimeZone, Weekday};

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    fn next(line: &str, t: DateTime<Utc>) -> DateTime<Utc> {
        Schedule::parse(line).unwrap().next_after(t).unwrap()
    }

    // 2024-06-05 is a Wednesday.
    const WED: (i32, u32, u32) = (2024, 6, 5);

    #[test]
    fn weekday_numbering_is_crontabs() {
        let t = at(WED.0, WED.1, WED.2, 12, 0);
        assert_eq!(t.weekday(), Weekday::Wed);
        // 1 = Monday: next Monday 09:00.
        assert_eq!(next("0 9 * * 1", t), at(2024, 6, 10, 9, 0));
        // 0 and 7 are both Sunday.
        assert_eq!(next("0 0 * * 0", t), at(2024, 6, 9, 0, 0));
        assert_eq!(next("0 0 * * 7", t), at(2024, 6, 9, 0, 0));
        assert_eq!(next("0 0 * * SUN", t), at(2024, 6, 9, 0, 0));
        // 6 = Saturday.
        assert_eq!(next("0 0 * * 6", t), at(2024, 6, 8, 0, 0));
        // 1-5 = Monday to Friday: from Friday evening, the next is Monday.
        let fri = at(2024, 6, 7, 18, 0);
        assert_eq!(next("30 8 * * 1-5", fri), at(2024, 6, 10, 8, 30));
        // 5-7 wraps through Sunday spelled 7.
        let mon = at(2024, 6, 10, 1, 0);
        assert_eq!(next("0 0 * * 5-7", mon), at(2024, 6, 14, 0, 0));
    }

    #[test]
    fn interval_is_the_gap_between_the_next_two_runs() {
        let t = at(2024, 6, 5, 6, 30);
        let every = Schedule::parse("@every 90m").unwrap();
        assert_eq!(every.interval_after(t), Some(Duration::from_secs(90 * 60)));
        let four_hourly = Schedule::parse("0 */4 * * *").unwrap();
        assert_eq!(
            four_hourly.interval_after(t),
            Some(Duration::from_secs(4 * 3600))
        );
        let daily = Schedule::parse("@daily").unwrap();
        assert_eq!(daily.interval_after(t), Some(Duration::from_secs(86400)));
    }

    #[test]
    fn next_is_strictly_after() {
        let t = at(2024, 6, 5, 6, 0);
        assert_eq!(next("0 */6 * * *", t), at(2024, 6, 5, 12, 0));
        assert_eq!(
            next("0 */6 * * *", t + chrono::Duration::seconds(1)),
            at(2024, 6, 5, 12, 0)
        );
        assert_eq!(
            next("*/15 * * * *", at(2024, 6, 5, 6, 7)),
            at(2024, 6, 5, 6, 15)
        );
        assert_eq!(
            next("59 23 31 12 *", at(2024, 12, 31, 23, 59)),
            at(2025, 12, 31, 23, 59)
        );
    }

    #[test]
    fn dom_or_dow_as_vixie_cron() {
        // Day 1 of the month OR a Monday: from Wed 5 June, Monday 10 June comes first.
        assert_eq!(
            next("0 0 1 * 1", at(2024, 6, 5, 0, 0)),
            at(2024, 6, 10, 0, 0)
        );
        // From Tue 25 June, 1 July (a Monday too) comes before any other Monday.
        assert_eq!(
            next("0 0 1 * 1", at(2024, 6, 25, 0, 0)),
            at(2024, 7, 1, 0, 0)
        );
        // From Sat 29 June: 1 July.
        assert_eq!(
            next("0 0 1 * 3", at(2024, 6, 29, 0, 0)),
            at(2024, 7, 1, 0, 0)
        );
    }

    #[test]
    fn nicknames() {
        let t = at(2024, 6, 5, 12, 34);
        assert_eq!(next("@hourly", t), at(2024, 6, 5, 13, 0));
        assert_eq!(next("@daily", t), at(2024, 6, 6, 0, 0));
        assert_eq!(next("@midnight", t), at(2024, 6, 6, 0, 0));
        assert_eq!(next("@weekly", t), at(2024, 6, 9, 0, 0));
        assert_eq!(next("@monthly", t), at(2024, 7, 1, 0, 0));
        assert_eq!(next("@yearly", t), at(2025, 1, 1, 0, 0));
        assert_eq!(next("@annually", t), at(2025, 1, 1, 0, 0));
    }

    #[test]
    fn every() {
        let t = at(2024, 6, 5, 12, 34);
        let s = Schedule::parse("@every 6h").unwrap();
        assert_eq!(s, Schedule::Every(Duration::from_secs(6 * 3600)));
        assert_eq!(s.next_after(t).unwrap(), at(2024, 6, 5, 18, 34));
        assert_eq!(
            Schedule::parse("@EVERY 1h 30m").unwrap(),
            Schedule::Every(Duration::from_secs(5400))
        );
        assert_eq!(s.to_string(), "@every 6h");
        assert!(matches!(
            Schedule::parse("@every"),
            Err(ScheduleError::Every { .. })
        ));
        assert!(matches!(
            Schedule::parse("@every 0s"),
            Err(ScheduleError::Every { .. })
        ));
        assert!(matches!(
            Schedule::parse("@every soon"),
            Err(ScheduleError::Every { .. })
        ));
        assert!(matches!(
            Schedule::parse("@everyday"),
            Err(ScheduleError::Cron { .. })
        ));
    }

    #[test]
    fn refused_lines() {
        for bad in [
            "61 * * * *",
            "* 24 * * *",
            "* * * * 8",
            "* * 32 * *",
            "0 0 * * * *",   // seconds field: not crontab
            "0 0 0 * * * *", // seconds and year
            "* * * *",
            "",
            "@reboot",
            "every 6h",
            ", */6 * * *",
            "0 1,,2 * * *",
            "0 0 1, * *",
            "30-10 * * * *",
            "0 */6 * * +",
            "0 0 1 * +1",
        ] {
            let e = Schedule::parse(bad).unwrap_err();
            assert!(matches!(e, ScheduleError::Cron { .. }), "{bad}: {e:?}");
            assert!(e.to_string().contains(&format!("{bad:?}")), "{e}");
        }
        // Found by fuzzing: an empty minute list once cost half a minute of CPU to refuse.
        let e = Schedule::parse(", */6 * * *").unwrap_err().to_string();
        assert!(
            e.contains("the minute field has an empty list element"),
            "{e}"
        );
        let e = Schedule::parse("0 0 1 * +1").unwrap_err().to_string();
        assert!(e.contains("starts with `+`"), "{e}");
        let e = Schedule::parse("0 0 * 1-5, *").unwrap_err().to_string();
        assert!(
            e.contains("the month field has an empty list element"),
            "{e}"
        );
        assert_eq!(
            Schedule::parse("0 0 31 2 *").unwrap_err(),
            ScheduleError::Never {
                line: "0 0 31 2 *".into()
            }
        );
    }
}
