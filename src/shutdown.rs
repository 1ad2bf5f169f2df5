//! One stop signal for the whole process (mini-redis's `Shutdown`): raised once — by
//! SIGTERM or SIGINT, or by the code that started the tasks — and seen by every long-lived
//! task: the API server, the worker and the job it runs, the scheduler, the import of the
//! top coins, `backfill`. No task is handed a signal that "cannot be raised": a task that
//! runs on is one that was told to, never one that could not be told.
//!
//! Each task holds a [`Shutdown`] (cheap to clone) and either waits for it
//! ([`Shutdown::recv`]) or looks at it between two steps ([`Shutdown::is_shutdown`]), so
//! that nothing is stopped in the middle of a transaction.

use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::watch;
use tokio::task::JoinSet;

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
    /// stops on. The handlers are in place when this returns, so `main` calls it first:
    /// from then on a signal, however early, stops the process in order (exit 0) instead
    /// of killing it (exit 143).
    pub fn on_signal() -> Shutdown {
        let (trigger, shutdown) = Shutdown::new();
        let signals = Signals::install();
        tokio::spawn(async move {
            signals.recv().await;
            trigger.raise();
        });
        shutdown
    }

    /// A signal of its own, raised by its trigger or when this one is: for a task the
    /// code stops by itself as well (the in-process worker of `backfill`, once its job
    /// has ended).
    pub fn child(&self) -> (ShutdownTrigger, Shutdown) {
        let (trigger, child) = Shutdown::new();
        let parent = self.clone();
        let raise = trigger.clone();
        tokio::spawn(async move {
            parent.raised().await;
            raise.raise();
        });
        (trigger, child)
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

    /// `work`'s output, or `None` when the signal is raised first; `work` is then dropped
    /// where it stands. Only for work that may stop at any await: waiting for a lock or
    /// for the database, reading, a statement in a transaction that then rolls back.
    pub async fn unless_raised<T>(&self, work: impl Future<Output = T>) -> Option<T> {
        if self.is_shutdown() {
            return None;
        }
        tokio::select! {
            output = work => Some(output),
            () = self.raised() => None,
        }
    }

    /// `work`'s output, or `None` when it has not ended `grace` after the signal (then it
    /// is dropped where it stands): for work worth finishing when it is nearly done, such
    /// as an answer on its way, but not when it waits out back-offs. No work starts once
    /// the signal is up.
    pub async fn unless_raised_for<T>(
        &self,
        grace: std::time::Duration,
        work: impl Future<Output = T>,
    ) -> Option<T> {
        if self.is_shutdown() {
            return None;
        }
        let mut work = std::pin::pin!(work);
        tokio::select! {
            output = &mut work => return Some(output),
            () = self.raised() => {}
        }
        tokio::time::timeout(grace, work).await.ok()
    }

    /// Resolves once the signal is raised; never when every trigger is gone without
    /// raising it.
    async fn raised(&self) {
        let mut raised = self.raised.clone();
        if raised.wait_for(|raised| *raised).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl ShutdownTrigger {
    /// Raises the signal; every holder of the [`Shutdown`] sees it.
    pub fn raise(&self) {
        self.raised.send_replace(true);
    }
}

/// Tasks started along the way that must end before their process does (the imports the
/// API starts): each is handed the signal, and [`Tasks::wait`] waits for them all.
#[derive(Debug, Clone)]
pub struct Tasks {
    shutdown: Shutdown,
    running: Arc<Mutex<JoinSet<()>>>,
}

impl Tasks {
    /// Tasks that stop on `shutdown`.
    pub fn new(shutdown: Shutdown) -> Tasks {
        Tasks {
            shutdown,
            running: Arc::default(),
        }
    }

    /// Starts `task`, handing it the signal.
    pub fn spawn<F>(&self, task: impl FnOnce(Shutdown) -> F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        // Those that have ended are forgotten: a long-lived process keeps no list of them.
        while running.try_join_next().is_some() {}
        running.spawn(task(self.shutdown.clone()));
    }

    /// Waits until every task started so far has ended.
    pub async fn wait(&self) {
        let mut running = {
            let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
            std::mem::take(&mut *running)
        };
        while running.join_next().await.is_some() {}
    }
}

/// The handlers of SIGTERM and SIGINT, installed.
struct Signals {
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    /// Installs the handlers now, not at the first poll of a future: a signal that comes
    /// before anything waits on them is kept for [`Signals::recv`].
    fn install() -> Signals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Signals {
                terminate: signal(SignalKind::terminate()).ok(),
                interrupt: signal(SignalKind::interrupt()).ok(),
            }
        }
        #[cfg(not(unix))]
        Signals {}
    }

    /// Resolves on the first SIGTERM or SIGINT.
    async fn recv(mut self) {
        #[cfg(unix)]
        {
            async fn one(signal: &mut Option<tokio::signal::unix::Signal>) {
                match signal {
                    Some(signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            }
            tokio::select! {
                () = one(&mut self.terminate) => {},
                () = one(&mut self.interrupt) => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
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
    async fn a_child_signal_is_raised_by_its_own_trigger_or_by_its_parent() {
        let (parent_trigger, parent) = Shutdown::new();
        let (own, child) = parent.child();
        own.raise();
        assert!(child.is_shutdown());
        assert!(!parent.is_shutdown(), "a child never raises its parent");

        let (_own, child) = parent.child();
        parent_trigger.raise();
        tokio::time::timeout(std::time::Duration::from_secs(1), child.recv())
            .await
            .expect("the parent's signal reaches the child");
        assert!(child.is_shutdown());
    }

    #[tokio::test]
    async fn work_is_abandoned_when_the_signal_comes_first_and_finished_otherwise() {
        let (trigger, shutdown) = Shutdown::new();
        assert_eq!(shutdown.unless_raised(async { 7 }).await, Some(7));
        let waiting = shutdown.unless_raised(std::future::pending::<()>());
        trigger.raise();
        assert_eq!(waiting.await, None);
        assert_eq!(
            shutdown.unless_raised(async { 7 }).await,
            None,
            "no work starts once the signal is up"
        );

        // A signal nobody can raise abandons nothing.
        let (trigger, shutdown) = Shutdown::new();
        drop(trigger);
        assert_eq!(shutdown.unless_raised(async { 7 }).await, Some(7));
    }

    #[tokio::test]
    async fn work_nearly_done_at_the_signal_is_finished_and_work_that_lingers_is_not() {
        let (trigger, shutdown) = Shutdown::new();
        let (done, finishing) = tokio::sync::oneshot::channel::<u8>();
        let long = std::time::Duration::from_secs(30);
        let nearly_done = shutdown.unless_raised_for(long, async { finishing.await.unwrap_or(0) });
        let finish = async {
            trigger.raise();
            done.send(7).unwrap();
        };
        let (finished, ()) = tokio::join!(nearly_done, finish);
        assert_eq!(finished, Some(7));
        assert_eq!(
            shutdown.unless_raised_for(long, async { 7 }).await,
            None,
            "no work starts once the signal is up"
        );

        let (trigger, shutdown) = Shutdown::new();
        let grace = std::time::Duration::from_millis(20);
        let lingering = shutdown.unless_raised_for(grace, std::future::pending::<()>());
        let (cut, ()) = tokio::join!(lingering, async { trigger.raise() });
        assert_eq!(cut, None);
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
