//! A TCP proxy in front of PostgreSQL that passes the server's bytes up to a limit and
//! then holds them, so that a test can act while a client is in the middle of reading:
//! look at a file half-written, cut the database away, or send a signal. Event-driven: the
//! test waits for the moment the limit is reached, not for a time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the proxy lets through from the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Up to this many bytes in all, then nothing until released or cut.
    Limit(u64),
    /// Everything.
    Open,
    /// Nothing: every connection is closed and new ones are refused, as when the
    /// database is gone.
    Cut,
}

pub struct DbProxy {
    pub port: u16,
    mode: watch::Sender<Mode>,
    held: watch::Receiver<bool>,
    accept: JoinHandle<()>,
}

struct Shared {
    mode: watch::Receiver<Mode>,
    held: watch::Sender<bool>,
    /// Server bytes passed to clients so far, over every connection.
    passed: AtomicU64,
}

impl DbProxy {
    /// A proxy to PostgreSQL at `upstream` (`host:port`) that holds the server's bytes
    /// once `limit` of them have passed.
    pub async fn start(upstream: String, limit: u64) -> DbProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let port = listener.local_addr().expect("an address").port();
        let (mode, mode_rx) = watch::channel(Mode::Limit(limit));
        let (held_tx, held) = watch::channel(false);
        let shared = Arc::new(Shared {
            mode: mode_rx,
            held: held_tx,
            passed: AtomicU64::new(0),
        });
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if *shared.mode.borrow() == Mode::Cut {
                    continue;
                }
                let Ok(server) = TcpStream::connect(&upstream).await else {
                    continue;
                };
                tokio::spawn(relay(client, server, shared.clone()));
            }
        });
        DbProxy {
            port,
            mode,
            held,
            accept,
        }
    }

    /// Waits until a client is held at the limit: it is in the middle of a read.
    pub async fn until_held(&self) {
        let mut held = self.held.clone();
        tokio::time::timeout(std::time::Duration::from_secs(120), held.wait_for(|h| *h))
            .await
            .expect("a client reaches the proxy's limit within two minutes")
            .expect("the proxy runs");
    }

    /// Lets everything through from now on.
    pub fn release(&self) {
        self.mode.send_replace(Mode::Open);
    }

    /// Closes every connection and refuses new ones: the database is gone.
    pub fn cut(&self) {
        self.mode.send_replace(Mode::Cut);
    }
}

impl Drop for DbProxy {
    fn drop(&mut self) {
        self.mode.send_replace(Mode::Cut);
        self.accept.abort();
    }
}

/// Copies both ways until either side closes or the proxy is cut.
async fn relay(client: TcpStream, server: TcpStream, shared: Arc<Shared>) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let mut cut = shared.mode.clone();
    let upward = async {
        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
    };
    let downward = async {
        let mut buffer = vec![0u8; 16 * 1024];
        loop {
            let n = match server_read.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let mut start = 0;
            while start < n {
                let allowed = allowance(&shared).await;
                let end = n.min(start.saturating_add(allowed));
                if client_write.write_all(&buffer[start..end]).await.is_err() {
                    return;
                }
                shared
                    .passed
                    .fetch_add((end - start) as u64, Ordering::SeqCst);
                start = end;
            }
        }
    };
    tokio::select! {
        () = upward => {}
        () = downward => {}
        _ = cut.wait_for(|mode| *mode == Mode::Cut) => {}
    }
}

/// How many server bytes may pass now; waits (saying so) while none may. Never returns
/// once the proxy is cut: the relay ends on the cut instead.
async fn allowance(shared: &Shared) -> usize {
    let mut mode = shared.mode.clone();
    loop {
        let now = *mode.borrow_and_update();
        match now {
            Mode::Open => return usize::MAX,
            Mode::Limit(limit) => {
                let passed = shared.passed.load(Ordering::SeqCst);
                if passed < limit {
                    return usize::try_from(limit - passed).unwrap_or(usize::MAX);
                }
                shared.held.send_replace(true);
            }
            Mode::Cut => {}
        }
        if mode.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
