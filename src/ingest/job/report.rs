//! Step 5: the final word on a job whose windows have all been tried, from the days of
//! its range still missing and what fell short on the way (`Shortfalls`); the sentences
//! themselves are in `messages`.

use std::collections::BTreeMap;

use chrono::NaiveDate;

use super::messages::{gap_message, out_of_plan_message, second_source_message};
use super::{JobError, Outcome, Run};
use crate::domain::{JobStatus, PlanReach};
use crate::ingest::Window;

/// Why days are still missing, beyond "CoinGecko had nothing": gathered over an attempt
/// so that the final message says what happened.
#[derive(Debug, Default)]
pub(super) struct Shortfalls {
    /// Finished days CoinGecko sent too few points for, with the latest count.
    pub(super) too_thin: BTreeMap<NaiveDate, usize>,
    /// Gap-fill calls that failed, with why.
    pub(super) failed_fills: Vec<(Window, String)>,
    /// What became of the second source, when it had out-of-plan days to fill.
    pub(super) second_source: Option<SecondSourceEnd>,
    /// Why the job stopped asking CoinGecko: the month's credits were spent.
    pub(super) out_of_credits: Option<String>,
    /// The windows CoinGecko answered in this attempt: a missing day outside all of them
    /// was not asked for (once the credits ran out).
    pub(super) answered: Vec<Window>,
    /// Days a scheduled job left out: CoinGecko answered them empty before (see
    /// [`crate::store::empty_days`]). Ascending.
    pub(super) rested: Vec<NaiveDate>,
}

/// How the second source's step ended, for the final message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum SecondSourceEnd {
    /// It was asked; what is still out of plan, it has no candle for.
    Asked,
    /// It failed (down, refusing or answering garbage), saying why; `retry` when a later
    /// run may fill the days as things are (its own words say what to do otherwise).
    Failed { why: String, retry: bool },
    /// Its mapping check found the product to be another asset: the coin's reason.
    Unusable(String),
    /// Its mapping could not be checked: CoinGecko has no final row from this day on yet.
    Unchecked(NaiveDate),
}

impl<S: Sync> Run<'_, S> {
    /// Step 5: the final word, from the days (and hours) of the range still missing.
    pub(super) async fn finish(self) -> Result<Outcome, JobError> {
        let missing = self.missing_days(self.first_day(), self.last_day()).await?;
        let outcome = finished(missing, self.reach, self.today, &self.shortfalls);
        self.finish_hours(outcome).await
    }
}

/// The final word on a job whose windows have all been tried, from the days of its
/// range still missing: those the plan serves are gaps, each explained by what happened
/// to it (not over, too few points, a failed call, or no data at all); the older ones are
/// out of plan.
fn finished(
    missing: Vec<NaiveDate>,
    reach: PlanReach,
    today: NaiveDate,
    shortfalls: &Shortfalls,
) -> Outcome {
    let (gap_dates, out_of_plan) = reach.split(missing, today);
    if gap_dates.is_empty() && out_of_plan.is_empty() {
        return Outcome::Finished {
            status: JobStatus::Completed,
            gap_dates,
            out_of_plan_days: 0,
            message: None,
        };
    }
    let mut sentences = Vec::new();
    if let (Some(first), Some(last), Some(served_from)) = (
        out_of_plan.first(),
        out_of_plan.last(),
        reach.first_served_day(today),
    ) {
        sentences.push(out_of_plan_message(
            out_of_plan.len(),
            (*first, *last),
            reach,
            served_from,
        ));
        if let Some(end) = &shortfalls.second_source {
            sentences.push(second_source_message(end));
        }
    }
    if !gap_dates.is_empty() {
        if let Some(why) = &shortfalls.out_of_credits {
            sentences.push(format!("Stopped before the end: {why}"));
        }
        sentences.push(gap_message(&gap_dates, today, shortfalls));
    }
    Outcome::Finished {
        status: JobStatus::CompletedWithGaps,
        gap_dates,
        out_of_plan_days: out_of_plan.len() as i32,
        message: Some(sentences.join(" ")),
    }
}

#[cfg(test)]
mod tests {
    use super::super::messages::describe_days;
    use super::*;
    use crate::domain::{assert_says, day};

    fn message_of(outcome: Outcome) -> String {
        let Outcome::Finished {
            status, message, ..
        } = outcome
        else {
            panic!("not finished");
        };
        assert_eq!(status, JobStatus::CompletedWithGaps);
        message.unwrap()
    }

    /// What a job says of `missing` days of January 2024 when it ends on 2024-02-01 with
    /// every day in the plan's reach.
    fn said_in_february(missing: Vec<NaiveDate>, shortfalls: &Shortfalls) -> String {
        message_of(finished(
            missing,
            PlanReach::UNLIMITED,
            day("2024-02-01"),
            shortfalls,
        ))
    }

    #[test]
    fn no_gaps_is_completed_without_a_message() {
        assert_eq!(
            finished(
                vec![],
                PlanReach::UNLIMITED,
                day("2024-01-01"),
                &Shortfalls::default()
            ),
            Outcome::Finished {
                status: JobStatus::Completed,
                gap_dates: vec![],
                out_of_plan_days: 0,
                message: None
            }
        );
    }

    #[test]
    fn gaps_name_their_days_and_say_what_to_do() {
        let message = message_of(finished(
            vec![day("2024-01-01"), day("2024-01-02"), day("2024-01-09")],
            PlanReach::UNLIMITED,
            day("2024-01-09"),
            &Shortfalls::default(),
        ));
        assert!(
            message.starts_with(
                "3 day(s) still have no final price: 2024-01-01..2024-01-02, 2024-01-09."
            ),
            "{message}"
        );
        assert_says(
            &message,
            &["Today (UTC) is not over", "no data for the other 2 day(s)"],
        );
    }

    #[test]
    fn a_failed_gap_fill_is_said_as_what_it_was_not_as_no_data() {
        let shortfalls = Shortfalls {
            failed_fills: vec![(
                Window {
                    start: day("2024-01-01"),
                    end: day("2024-01-02"),
                },
                "CoinGecko answered HTTP 401: \"Invalid API key\". The API key is missing or invalid.".to_owned(),
            )],
            ..Shortfalls::default()
        };
        let message = said_in_february(vec![day("2024-01-01"), day("2024-01-02")], &shortfalls);
        assert_says(
            &message,
            &[
                "Asking CoinGecko again for 2024-01-01..2024-01-02 failed: CoinGecko answered HTTP 401",
            ],
        );
        assert!(!message.contains("no data"), "{message}");
        let without_ranges = message.replace("2024-01-01..2024-01-02", "");
        assert!(!without_ranges.contains(".."), "{without_ranges}");
    }

    /// An audit's finding: the days a job never asked for once the month's credits ran
    /// out were said to be days CoinGecko "returned no data for ... even after a second
    /// try".
    #[test]
    fn days_not_asked_once_the_credits_ran_out_are_said_so_not_as_no_data() {
        let shortfalls = Shortfalls {
            out_of_credits: Some("the month's 10000 credits are spent.".to_owned()),
            answered: vec![Window {
                start: day("2024-01-01"),
                end: day("2024-01-10"),
            }],
            ..Shortfalls::default()
        };
        let missing = vec![day("2024-01-05"), day("2024-01-20"), day("2024-01-21")];
        let message = said_in_february(missing, &shortfalls);
        assert_says(
            &message,
            &[
                "Stopped before the end: the month's 10000 credits are spent.",
                "2024-01-20..2024-01-21 (2 day(s)) were not asked of CoinGecko once the month's credits ran out",
                "CoinGecko returned no data for the other 1 day(s); run the job again",
            ],
        );
        assert!(!message.contains("second try"), "{message}");
    }

    #[test]
    fn days_with_too_few_points_are_named_with_the_rule() {
        let shortfalls = Shortfalls {
            too_thin: BTreeMap::from([(day("2024-01-05"), 1)]),
            ..Shortfalls::default()
        };
        let message = said_in_february(vec![day("2024-01-05"), day("2024-01-07")], &shortfalls);
        assert_says(
            &message,
            &[
                "too few points for 2024-01-05 (1 day(s), as few as 1)",
                "at least 12 points",
                "no data for the other 1 day(s)",
            ],
        );
    }

    #[test]
    fn days_beyond_the_reach_are_out_of_plan_not_gaps_and_the_message_names_the_way_out() {
        let today = day("2026-11-28");
        let Outcome::Finished {
            status,
            gap_dates,
            out_of_plan_days,
            message,
        } = finished(
            vec![day("2025-11-27"), day("2025-11-28"), day("2026-01-05")],
            PlanReach::days(365),
            today,
            &Shortfalls::default(),
        )
        else {
            panic!("not finished");
        };
        assert_eq!(status, JobStatus::CompletedWithGaps);
        assert_eq!(gap_dates, vec![day("2026-01-05")]);
        assert_eq!(out_of_plan_days, 2);
        let message = message.unwrap();
        assert_says(
            &message,
            &[
                "2 day(s) from 2025-11-27 to 2025-11-28 are older",
                "from 2025-11-29 on",
                "paid key reaches further",
                "1 day(s) still have no final price: 2026-01-05.",
            ],
        );
    }

    #[test]
    fn what_became_of_the_second_source_is_said_after_the_out_of_plan_days() {
        let today = day("2026-11-28");
        let said = |end: SecondSourceEnd| {
            message_of(finished(
                vec![day("2025-01-01"), day("2025-01-02")],
                PlanReach::days(365),
                today,
                &Shortfalls {
                    second_source: Some(end),
                    ..Shortfalls::default()
                },
            ))
        };

        let failed = said(SecondSourceEnd::Failed {
            why: "Coinbase Exchange did not answer: connection refused.".to_owned(),
            retry: true,
        });
        let refused = said(SecondSourceEnd::Failed {
            why: "Coinbase Exchange refused it: set the coin's coinbase_product.".to_owned(),
            retry: false,
        });
        let unusable = said(SecondSourceEnd::Unusable(
            "SOLX-USD's closes differ from CoinGecko's by 9900 %: another asset.".to_owned(),
        ));
        let asked = said(SecondSourceEnd::Asked);
        let unchecked = said(SecondSourceEnd::Unchecked(day("2025-11-29")));

        assert!(
            failed.starts_with("2 day(s) from 2025-01-01 to 2025-01-02 are older"),
            "{failed}"
        );
        assert!(
            failed.contains("could not fill them: Coinbase Exchange did not answer")
                && failed.contains("Run the job again later"),
            "{failed}"
        );
        assert!(
            refused.contains("set the coin's coinbase_product") && !refused.contains("later"),
            "{refused}"
        );
        assert_says(&unusable, &["not used for this coin: SOLX-USD"]);
        assert_says(&asked, &["has no candle for them either"]);
        assert_says(&unchecked, &["from 2025-11-29 on"]);
        let none = message_of(finished(
            vec![day("2025-01-01")],
            PlanReach::days(365),
            today,
            &Shortfalls::default(),
        ));
        assert!(!none.contains("second source"), "{none}");
    }

    /// Kills `runs.len() > SHOWN` -> `==` / `>=` in `describe_days`, and
    /// `failed_fills.len() > 3` -> `==` / `>=` in `gap_message`: what is left out is
    /// counted, and nothing is said to be left out when nothing is.
    #[test]
    fn long_lists_of_runs_and_failed_calls_are_cut_and_the_rest_counted() {
        let every_other_day = |n: u64| -> Vec<NaiveDate> {
            (0..n)
                .map(|i| day("2024-01-01") + chrono::Days::new(2 * i))
                .collect()
        };
        assert!(!describe_days(&every_other_day(10)).contains("more run(s)"));
        let twelve = describe_days(&every_other_day(12));
        assert!(twelve.ends_with(", and 2 more run(s)"), "{twelve}");
        assert_eq!(twelve.matches(", ").count(), 10, "{twelve}");

        let failed = |n: u64| Shortfalls {
            failed_fills: every_other_day(n)
                .into_iter()
                .map(|d| (Window { start: d, end: d }, "HTTP 401".to_owned()))
                .collect(),
            ..Shortfalls::default()
        };
        let three = said_in_february(every_other_day(3), &failed(3));
        assert_eq!(three.matches("failed: HTTP 401").count(), 3, "{three}");
        assert!(!three.contains("more call(s)"), "{three}");
        let five = said_in_february(every_other_day(5), &failed(5));
        assert_eq!(five.matches("failed: HTTP 401").count(), 3, "{five}");
        assert_says(&five, &[" 2 more call(s) failed the same way."]);
    }
}
