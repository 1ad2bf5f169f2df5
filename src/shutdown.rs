//! One stop signal for the whole process (mini-redis's `Shutdown`): raised once — by
//! SIGTERM or SIGINT, or by the code that started the tasks — and seen by every long-lived
//! task: the API server, the worker and the job it runs, the scheduler, `backfill`.
//!
//! Each task holds a [`Shutdown`] (cheap to clone) and either waits for it
//! ([`Shutdown::recv`]) or looks at it between two steps ([`Shutdown::is_shutdown`]), so
//! that nothing is stopped in the middle of a transaction.

use std::sync::Arc;

use tokio::sync::watch;

/// A task's view of the process's stop signal.
#[derive(Debug, Clone)]
pub struct Shutdown {
    /// Turns true once, when the signal is raised; never back.
    raised: watch::Receiver<bool>,
}

/// Raises the [`Shutdown`] it was made with. Clones raise the same signal.
#[derive(Debug, Clone)]
pub struct ShutdownTrigger {
    raised: Arc<watch::Sender<bool>>,
}

impl Shutdown {
    /// A signal raised only through the returned trigger (or once every copy of it is
    /// dropped: a signal nobody can raise any more must not keep tasks waiting forever).
    pub fn new() -> (ShutdownTrigger, Shutdown) {
        let (sender, raised) = watch::channel(false);
        (
            ShutdownTrigger {
                raised: Arc::new(sender),
            },
            Shutdown { raised },
        )
    }

    /// A signal raised by SIGTERM or SIGINT (Ctrl-C): what every process of the service
    /// stops on.
    pub fn on_signal() -> Shutdown {
        let (trigger, shutdown) = Shutdown::new();
        trigger.raise_on_signal();
        shutdown
    }

    /// Whether the signal has been raised: for a task that checks between two steps.
    pub fn is_shutdown(&self) -> bool {
        *self.raised.borrow()
    }

    /// Resolves once the signal is raised (at once if it already was).
    pub async fn recv(&self) {
        let mut raised = self.raised.clone();
        // An error means every trigger is gone: nobody can raise it any more.
        let _ = raised.wait_for(|raised| *raised).await;
    }
}

impl ShutdownTrigger {
    /// Raises the signal; every holder of the [`Shutdown`] sees it.
    pub fn raise(&self) {
        self.raised.send_replace(true);
    }

    /// Raises the signal on SIGTERM or SIGINT as well: the one place that handles them.
    pub fn raise_on_signal(&self) {
        let trigger = self.clone();
        tokio::spawn(async move {
            terminated().await;
            trigger.raise();
        });
    }
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
async fn terminated() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_raised_signal_is_seen_by_every_copy_and_waiting_on_it_returns_at_once() {
        let (trigger, shutdown) = Shutdown::new();
        let copy = shutdown.clone();
        assert!(!shutdown.is_shutdown());
        trigger.raise();
        assert!(shutdown.is_shutdown());
        assert!(copy.is_shutdown());
        tokio::time::timeout(std::time::Duration::from_secs(1), copy.recv())
            .await
            .expect("a raised signal is received at once");
    }

    #[tokio::test]
    async fn a_signal_nobody_can_raise_any_more_does_not_keep_its_waiters_waiting() {
        let (trigger, shutdown) = Shutdown::new();
        drop(trigger);
        tokio::time::timeout(std::time::Duration::from_secs(1), shutdown.recv())
            .await
            .expect("the wait ends once every trigger is gone");
    }
}
