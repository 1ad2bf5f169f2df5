//! The operator's alerts (docker/alerts.yaml, issue 22): Prometheus accepts the rules,
//! each fires on the series of docker/alerts.test.yaml that should fire it and on no
//! other, and every family they read is one `/metrics` writes.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};

use crate::support::Harness;

const RULES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docker/alerts.yaml");
const RULE_TESTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docker/alerts.test.yaml");

/// `promtool <args>`; a machine without promtool fails the test rather than skip it.
fn promtool(args: &[&str]) -> Output {
    Command::new("promtool")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "promtool is needed for this test and could not be started ({e}): \
                 install Debian's `prometheus` package, as scripts/test.sh does"
            )
        })
}

fn assert_success(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_alert_rules_pass_promtool_check_rules() {
    let output = promtool(&["check", "rules", RULES]);
    assert_success(&output, "promtool check rules docker/alerts.yaml");
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("SUCCESS: 7 rules found"),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
}

#[test]
fn each_alert_fires_on_its_series_and_stays_quiet_on_the_others() {
    let output = promtool(&["test", "rules", RULE_TESTS]);
    assert_success(&output, "promtool test rules docker/alerts.test.yaml");
    // Every alert of the rules file has a test case that expects it to fire.
    let rules = std::fs::read_to_string(RULES).unwrap();
    let tests = std::fs::read_to_string(RULE_TESTS).unwrap();
    let alerts: BTreeSet<&str> = rules
        .lines()
        .filter_map(|line| line.trim().strip_prefix("- alert: "))
        .collect();
    assert_eq!(alerts.len(), 7, "{alerts:?}");
    for alert in alerts {
        let fired = tests
            .split("alertname: ")
            .skip(1)
            .any(|case| case.starts_with(alert) && case.contains("exp_labels"));
        assert!(
            fired,
            "no test case of alerts.test.yaml expects {alert} to fire"
        );
    }
}

/// A renamed metric would leave its alert silent forever: every `price_history_*` name
/// the rules read must be a family of a real `/metrics` answer (after a job, so that the
/// per-coin and budget families have samples).
#[tokio::test]
async fn every_family_the_alerts_read_is_one_metrics_writes() {
    let h = Harness::new().await;
    h.run_days_to_yesterday(3).await;
    let api = crate::support::TestApi::start_with(price_history::api::ApiState {
        coingecko: Some(h.ingestor().client),
        ..h.api_state(None)
    })
    .await;
    let text = api.get("/metrics").await.text();
    let written: BTreeSet<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split(' ').next())
        .collect();

    let rules = std::fs::read_to_string(Path::new(RULES)).unwrap();
    let read: BTreeSet<&str> = rules
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|word| word.starts_with("price_history_"))
        .collect();
    assert!(read.len() >= 6, "{read:?}");
    let missing: Vec<&&str> = read.difference(&written).collect();
    assert!(
        missing.is_empty(),
        "the alerts read {missing:?}, which /metrics does not write:\n{text}"
    );
}
