use std::fmt;
use std::str::FromStr;

/// Who asked for a job. Stored as text in `ingestion_jobs.trigger`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Trigger {
    /// `POST /api/v1/ingestion-jobs`.
    #[default]
    Api,
    /// `price-history backfill`.
    Cli,
    /// The schedule that keeps tracked coins current.
    Schedule,
}

impl Trigger {
    pub const ALL: [Trigger; 3] = [Trigger::Api, Trigger::Cli, Trigger::Schedule];

    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Api => "api",
            Trigger::Cli => "cli",
            Trigger::Schedule => "schedule",
        }
    }
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown trigger {0:?}: expected api, cli or schedule")]
pub struct UnknownTrigger(pub String);

impl FromStr for Trigger {
    type Err = UnknownTrigger;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Trigger::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| UnknownTrigger(s.to_owned()))
    }
}
