//! The private PostgreSQL of a first run (issue 22): `serve` with no `DATABASE_URL` and
//! nothing at localhost:5432, from start to ready, the first time (the data directory is
//! made) and later (it is only started); and, for comparison, `serve` against the local
//! PostgreSQL. "Ready" is the API's "REST API listening" line, printed once the database
//! is migrated and the port bound.
//!
//! As in tests/it/private_postgres.rs: a network namespace of its own hides the machine's
//! cluster, and a user made for the run owns the server (PostgreSQL will not run as
//! root). Needs root; without it the rows say so.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use uuid::Uuid;

use super::{Bench, Report, Sizes, ms, terminate};

/// The line `serve` prints once it is ready.
const READY: &str = "REST API listening";

/// The rows of this file; called once from `Bench::all`.
pub(super) async fn rows(bench: &Bench, sizes: &Sizes, report: &mut Report) -> Result<()> {
    let later_runs = if sizes.smoke { 1 } else { 3 };
    if !nix::unistd::geteuid().is_root() {
        report.row(
            "Private PostgreSQL: first start and later starts, to ready",
            "not measured: needs root (a user and a network namespace are made for it)",
            "-",
            None,
        );
        return Ok(());
    }
    let user = RunUser::create()?;
    let result = measure(bench, &user, later_runs, report).await;
    user.remove();
    result
}

async fn measure(
    bench: &Bench,
    user: &RunUser,
    later_runs: usize,
    report: &mut Report,
) -> Result<()> {
    // The namespace lives as long as this process; `nsenter` puts each run in it, once
    // it exists: until the holder says so, its pid still names the machine's namespace.
    let mut holder = Command::new("unshare")
        .args([
            "--net",
            "sh",
            "-c",
            "ip link set lo up && echo ready && exec sleep 3600",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("unshare starts")?;
    let netns = holder.id().context("the namespace holder has a pid")?;
    let mut said = String::new();
    BufReader::new(holder.stdout.take().context("stdout is piped")?)
        .read_line(&mut said)
        .await?;
    if said.trim() != "ready" {
        bail!("the network namespace could not be made (unshare --net)");
    }

    let (first, first_stop) = start_to_ready(user.serve(netns), "created and started").await?;
    let mut later = Vec::new();
    let mut stops = vec![first_stop];
    for _ in 0..later_runs {
        let (ready, stop) = start_to_ready(user.serve(netns), "started the private").await?;
        later.push(ready);
        stops.push(stop);
    }
    let _ = holder.start_kill();
    let _ = holder.wait().await;

    let mut local = Vec::new();
    for _ in 0..later_runs {
        let mut command = Command::new(env!("CARGO_BIN_EXE_price-history"));
        command
            .arg("serve")
            .env("DATABASE_URL", &bench.url)
            .env("BIND_ADDR", format!("127.0.0.1:{}", super::free_port()))
            .env("SYNC_SCHEDULE", "off")
            .env("RUST_LOG", "info");
        local.push(start_to_ready(command, "").await?.0);
    }

    report.row(
        "Private PostgreSQL: first start of `serve` (initdb, server start, migrations) to ready",
        format!("{:.2} s", first.as_secs_f64()),
        "-",
        None,
    );
    report.row(
        format!("Private PostgreSQL: later starts of `serve` to ready (median of {later_runs})"),
        format!(
            "{:.2} s (all: {})",
            median(&later).as_secs_f64(),
            later
                .iter()
                .map(|d| format!("{:.2}", d.as_secs_f64()))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        "-",
        None,
    );
    report.row(
        "Private PostgreSQL: SIGTERM to exit 0, server stopped (median of all runs)",
        format!("{:.0} ms", ms(median(&stops))),
        "-",
        None,
    );
    report.row(
        format!(
            "(for comparison) `serve` against the running local PostgreSQL, database migrated, to ready (median of {later_runs})"
        ),
        format!("{:.0} ms", ms(median(&local))),
        "-",
        None,
    );
    Ok(())
}

/// Starts `command`, waits for its ready line (and for `note` before it), then stops it
/// with SIGTERM: the time to ready and the time from SIGTERM to its exit.
async fn start_to_ready(mut command: Command, note: &str) -> Result<(Duration, Duration)> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let started = Instant::now();
    let mut child: Child = command.spawn().context("price-history starts")?;
    let mut lines = BufReader::new(child.stderr.take().context("stderr is piped")?).lines();
    let mut printed = String::new();
    let ready = loop {
        let line = tokio::time::timeout(Duration::from_secs(120), lines.next_line())
            .await
            .context("serve printed nothing for 120 s")??;
        let Some(line) = line else {
            bail!("serve exited before it was ready:\n{printed}");
        };
        printed.push_str(&line);
        printed.push('\n');
        if line.contains(READY) {
            break started.elapsed();
        }
    };
    if !printed.contains(note) {
        bail!("serve did not say {note:?}:\n{printed}");
    }
    // Keep reading, so that the process never blocks on a full pipe.
    let drain = tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let stopping = Instant::now();
    terminate(&mut child).await?;
    let stopped = stopping.elapsed();
    let _ = drain.await;
    Ok((ready, stopped))
}

fn median(durations: &[Duration]) -> Duration {
    let mut sorted = durations.to_vec();
    sorted.sort();
    sorted.get(sorted.len() / 2).copied().unwrap_or_default()
}

/// A user made for the run, with a home of its own under /tmp.
struct RunUser {
    name: String,
    uid: u32,
    gid: u32,
    dir: PathBuf,
}

impl RunUser {
    fn create() -> Result<Self> {
        let dir = std::env::temp_dir().join(format!("ph-bench-{}", Uuid::now_v7().simple()));
        let home = dir.join("home");
        std::fs::create_dir_all(&home)?;
        let name = format!("phb{}", &Uuid::now_v7().simple().to_string()[20..]);
        let status = std::process::Command::new("useradd")
            .args(["--no-create-home", "--user-group", "--shell", "/bin/sh"])
            .arg("--home-dir")
            .arg(&home)
            .arg(&name)
            .status()?;
        if !status.success() {
            bail!("useradd {name} failed");
        }
        let id = |flag: &str| -> Result<u32> {
            let out = std::process::Command::new("id")
                .args([flag, &name])
                .output()?;
            Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?)
        };
        let (uid, gid) = (id("-u")?, id("-g")?);
        nix::unistd::chown(
            &home,
            Some(nix::unistd::Uid::from_raw(uid)),
            Some(nix::unistd::Gid::from_raw(gid)),
        )?;
        Ok(RunUser {
            name,
            uid,
            gid,
            dir,
        })
    }

    /// `serve` as this user in the namespace of `netns`, with no `DATABASE_URL`.
    fn serve(&self, netns: u32) -> Command {
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--net=/proc/{netns}/ns/net"))
            .arg("setpriv")
            .arg(format!("--reuid={}", self.uid))
            .arg(format!("--regid={}", self.gid))
            .arg("--clear-groups")
            .arg(env!("CARGO_BIN_EXE_price-history"))
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.dir.join("home"))
            .env("SYNC_SCHEDULE", "off")
            .env("RUST_LOG", "info");
        command
    }

    fn remove(&self) {
        let _ = std::process::Command::new("userdel")
            .arg(&self.name)
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
