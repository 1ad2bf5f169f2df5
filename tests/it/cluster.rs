//! A PostgreSQL cluster of a test's own (initdb / pg_ctl from the machine's PostgreSQL
//! binaries), which the test stops and starts to take the database away; and the waits
//! that go with it.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::support::free_port;

/// A PostgreSQL cluster of the test's own, on a free port, removed when dropped.
pub(crate) struct PrivateCluster {
    bin: PathBuf,
    dir: PathBuf,
    pub(crate) port: u16,
}

impl PrivateCluster {
    pub(crate) fn create() -> Self {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL's binaries are installed under /usr/lib/postgresql")
            .filter_map(|entry| entry.ok().map(|e| e.path().join("bin")))
            .filter(|bin| bin.join("initdb").exists())
            .max()
            .expect("an initdb");
        let dir = std::env::temp_dir().join(format!("ph-outage-{}", Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let cluster = PrivateCluster {
            bin,
            dir,
            port: free_port(),
        };
        // initdb refuses to run as root: the cluster belongs to the postgres user then.
        if is_root() {
            assert!(
                Command::new("chown")
                    .args(["-R", "postgres:postgres"])
                    .arg(&cluster.dir)
                    .status()
                    .unwrap()
                    .success()
            );
        }
        cluster.run(
            "initdb",
            &[
                "-D",
                &cluster.data(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        );
        cluster
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    pub(crate) fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// The service's pool on the cluster's `price_history` database, created and
    /// migrated as a process of the service does at start.
    pub(crate) async fn migrated_pool(&self, max_connections: u32) -> sqlx::PgPool {
        let url = self.url("price_history").parse().expect("a valid URL");
        price_history::startup::connect_and_migrate(&url, max_connections)
            .await
            .expect("the database is created and migrated")
    }

    pub(crate) fn start(&self) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off -c synchronous_commit=off",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("server.log").display().to_string();
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-o",
                &options,
                "-l",
                &log,
                "-w",
                "start",
            ],
        );
    }

    pub(crate) fn stop(&self) {
        self.run("pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "stop"]);
    }

    fn run(&self, program: &str, args: &[&str]) {
        let status = self
            .command(program, args)
            .status()
            .unwrap_or_else(|e| panic!("{program} runs: {e}"));
        assert!(status.success(), "{program} {args:?} failed");
    }

    /// `program` of the server's binaries with `args`, as the `postgres` user when this
    /// runs as root (the server refuses to run as root).
    fn command(&self, program: &str, args: &[&str]) -> Command {
        let path = self.bin.join(program);
        if is_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(&path).args(args);
            command
        } else {
            let mut command = Command::new(&path);
            command.args(args);
            command
        }
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let data = self.data();
        let args = ["-D", data.as_str(), "-m", "immediate", "stop"];
        let _ = self.command("pg_ctl", &args).output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0"))
}

pub(crate) async fn readyz(client: &reqwest::Client, base: &str) -> Option<u16> {
    let response = client
        .get(format!("{base}/readyz"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    Some(response.status().as_u16())
}

pub(crate) async fn wait_until(what: &str, within: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
