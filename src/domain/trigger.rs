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

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown trigger {0:?}: expected api, cli or schedule")]
pub struct UnknownTrigger(pub String);

stored_as_text!(Trigger, UnknownTrigger);
