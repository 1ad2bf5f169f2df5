//! An import of the top coins (`track_top`): where it stands and who asked. Stored as text
//! in `coin_imports.status` and `coin_imports.trigger`.

use super::Trigger;

/// Where an import stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImportStatus {
    /// Listing the coins or registering them; at most one import runs at a time.
    Running,
    /// Every listed coin was dealt with (registered, tracked, or skipped with the reason).
    Completed,
    /// Stopped early: a page of the list could not be read, the process was told to stop,
    /// or the process died (see `error_message`). The coins registered so far are kept.
    Failed,
}

impl ImportStatus {
    pub const ALL: [ImportStatus; 3] = [
        ImportStatus::Running,
        ImportStatus::Completed,
        ImportStatus::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ImportStatus::Running => "running",
            ImportStatus::Completed => "completed",
            ImportStatus::Failed => "failed",
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown import status {0:?}")]
pub struct UnknownImportStatus(pub String);

stored_as_text!(ImportStatus, UnknownImportStatus);

/// Who asked for an import.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImportTrigger {
    /// `POST /api/v1/coins/track-top`.
    Api,
    /// `price-history coins track-top`.
    Cli,
}

impl ImportTrigger {
    pub const ALL: [ImportTrigger; 2] = [ImportTrigger::Api, ImportTrigger::Cli];

    pub fn as_str(self) -> &'static str {
        self.job_trigger().as_str()
    }

    /// The trigger of the jobs the import queues for the coins it starts tracking.
    pub fn job_trigger(self) -> Trigger {
        match self {
            ImportTrigger::Api => Trigger::Api,
            ImportTrigger::Cli => Trigger::Cli,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown import trigger {0:?}: expected api or cli")]
pub struct UnknownImportTrigger(pub String);

stored_as_text!(ImportTrigger, UnknownImportTrigger);
