//! `SYNC_SCHEDULE` parsed once, at start: a cron expression with a seconds field, in UTC,
//! or `off`.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, TimeDelta, Timelike, Utc};

/// The default: 00:40:00 UTC every day, after CoinGecko has published the day before.
pub const DEFAULT_SCHEDULE: &str = "0 40 0 * * *";

/// When tracked coins are brought up to date.
#[derive(Clone, PartialEq)]
pub enum SyncSchedule {
    /// `off`: no process acts on its own.
    Off,
    /// A cron expression (the `cron` crate's dialect: seconds first, an optional year last).
    Cron(Box<cron::Schedule>),
}

/// A `SYNC_SCHEDULE` that is not one: says what was given and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "SYNC_SCHEDULE {expression:?} is not a schedule: {reason}. Give a cron expression with a seconds \
     field, in UTC (seconds minutes hours day-of-month month day-of-week [year]), such as \
     \"{DEFAULT_SCHEDULE}\" (00:40:00 every day), or \"off\""
)]
pub struct InvalidSchedule {
    pub expression: String,
    pub reason: String,
}

impl FromStr for SyncSchedule {
    type Err = InvalidSchedule;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let expression = s.trim();
        let invalid = |reason: String| InvalidSchedule {
            expression: s.to_owned(),
            reason,
        };
        if expression.eq_ignore_ascii_case("off") {
            return Ok(SyncSchedule::Off);
        }
        if expression.is_empty() {
            return Err(invalid("it is empty".to_owned()));
        }
        let fields = expression.split_whitespace().count();
        if !expression.starts_with('@') && !(6..=7).contains(&fields) {
            let hint = if fields == 5 {
                ": the classic five-field form has no seconds; put the second first, as in \"0 ...\""
            } else {
                ""
            };
            return Err(invalid(format!(
                "it has {fields} field{} where 6 or 7 are needed{hint}",
                if fields == 1 { "" } else { "s" }
            )));
        }
        let schedule = cron::Schedule::from_str(expression)
            .map_err(|e| invalid(format!("the cron parser says: {}", e.to_string().trim())))?;
        let schedule = SyncSchedule::Cron(Box::new(schedule));
        if schedule.next_after(Utc::now()).is_none() {
            return Err(invalid("it has no time after now".to_owned()));
        }
        Ok(schedule)
    }
}

impl SyncSchedule {
    /// For clap's `value_parser`.
    pub fn parse_arg(s: &str) -> Result<Self, InvalidSchedule> {
        s.parse()
    }

    pub fn is_off(&self) -> bool {
        matches!(self, SyncSchedule::Off)
    }

    /// The first tick strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            SyncSchedule::Off => None,
            SyncSchedule::Cron(schedule) => schedule.after(&t).next(),
        }
    }

    /// The latest tick at or before `t`: the one due at `t`.
    pub fn latest_at_or_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            SyncSchedule::Off => None,
            SyncSchedule::Cron(schedule) => {
                // Ticks fall on whole seconds, and the search goes strictly backwards from
                // its start: starting from the next whole second finds a tick at `t` too.
                let from = t.with_nanosecond(0).unwrap_or(t) + TimeDelta::seconds(1);
                schedule.after(&from).next_back()
            }
        }
    }
}

impl fmt::Display for SyncSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyncSchedule::Off => f.write_str("off"),
            SyncSchedule::Cron(schedule) => f.write_str(schedule.source()),
        }
    }
}

impl fmt::Debug for SyncSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SyncSchedule({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::at;

    fn schedule(s: &str) -> SyncSchedule {
        s.parse().unwrap()
    }

    /// Checks the tick after each instant and the latest one at or before each instant,
    /// as `(instant, tick)`; a failure names the instant.
    fn assert_ticks(s: &SyncSchedule, next_after: &[(&str, &str)], latest: &[(&str, &str)]) {
        for (now, tick) in next_after {
            assert_eq!(s.next_after(at(now)), Some(at(tick)), "next after {now}");
        }
        for (now, tick) in latest {
            assert_eq!(
                s.latest_at_or_before(at(now)),
                Some(at(tick)),
                "latest at or before {now}"
            );
        }
    }

    #[test]
    fn the_default_ticks_at_00_40_utc_every_day() {
        assert_ticks(
            &schedule(DEFAULT_SCHEDULE),
            &[
                ("2026-11-28T00:39:59.9Z", "2026-11-28T00:40:00Z"),
                // Strictly after.
                ("2026-11-28T00:40:00Z", "2026-11-29T00:40:00Z"),
            ],
            &[
                // A tick is due at its own time.
                ("2026-11-28T00:40:00Z", "2026-11-28T00:40:00Z"),
                ("2026-11-28T00:39:59.999Z", "2026-11-27T00:40:00Z"),
                ("2026-11-28T17:00:00.5Z", "2026-11-28T00:40:00Z"),
            ],
        );
    }

    #[test]
    fn a_seconds_schedule_ticks_on_its_seconds() {
        let every_two = schedule("*/2 * * * * *");
        assert!(!every_two.is_off(), "a schedule that ticks is not off");
        assert_ticks(
            &every_two,
            &[("2026-11-28T10:00:00Z", "2026-11-28T10:00:02Z")],
            &[("2026-11-28T10:00:03.7Z", "2026-11-28T10:00:02Z")],
        );
    }

    #[test]
    fn off_never_ticks() {
        for off in ["off", "OFF", " off "] {
            let s = schedule(off);
            assert!(s.is_off());
            assert_eq!(s.next_after(Utc::now()), None);
            assert_eq!(s.latest_at_or_before(Utc::now()), None);
            assert_eq!(format!("{s} {s:?}"), "off SyncSchedule(off)");
        }
    }

    #[test]
    fn a_malformed_expression_is_refused_with_the_expression_and_what_is_wrong() {
        let cases: [(&str, &[&str]); 5] = [
            (
                "0 40 * * *",
                &[
                    "\"0 40 * * *\"",
                    "5 fields where 6 or 7 are needed",
                    "no seconds",
                ],
            ),
            (
                "0 61 0 * * *",
                &["\"0 61 0 * * *\"", "the cron parser says"],
            ),
            ("daily", &["1 field where"]),
            ("0 0 0 1 1 * 2020", &["no time after now"]),
            ("", &["empty"]),
        ];
        for (expression, phrases) in cases {
            let refused = expression.parse::<SyncSchedule>().unwrap_err().to_string();
            for phrase in phrases {
                assert!(
                    refused.contains(phrase),
                    "{expression:?}: {phrase:?} is not in: {refused}"
                );
            }
        }
    }
}
