//! `initdb` and `pg_ctl`, each run to its end in a process group of its own.

use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};

use super::binaries::Binaries;
use super::layout::Layout;
use super::{PORT, SUPERUSER};

/// How long `pg_ctl` waits for the server to start or stop.
const PG_CTL_WAIT_SECS: &str = "60";

/// Makes the data directory: `initdb` into a staging directory, settings appended, then
/// renamed into place. Called under the start lock, so a staging directory found here is
/// what an interrupted run left, and goes.
///
/// `initdb` holds `start_lock` too (it inherits the descriptor): should this process exit
/// first (a SIGTERM), the lock stays held until `initdb` has ended and removed what it
/// made, so that the next process's `initdb` never shares its staging directory.
pub(super) fn initdb(
    binaries: &Binaries,
    layout: &Layout,
    start_lock: &File,
) -> anyhow::Result<()> {
    let staging = layout.base.join("postgres.initdb");
    if staging.exists() {
        fs::remove_dir_all(&staging)
            .with_context(|| format!("could not remove {}", staging.display()))?;
    }
    let made = (|| {
        let mut command = Command::new(binaries.tool("initdb"));
        hand_down(&mut command, start_lock);
        let output = run(command
            .arg("--pgdata")
            .arg(&staging)
            .args(["--username", SUPERUSER, "--auth=trust", "--encoding=UTF8"])
            .arg("--locale=C"))?;
        if !output.status.success() {
            bail!(
                "initdb failed for the private PostgreSQL ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        let mut conf = OpenOptions::new()
            .append(true)
            .open(staging.join("postgresql.conf"))
            .context("could not open the new postgresql.conf")?;
        conf.write_all(server_settings(&layout.socket_dir).as_bytes())
            .context("could not write postgresql.conf")?;
        fs::rename(&staging, &layout.data).with_context(|| {
            format!(
                "could not move {} to {}",
                staging.display(),
                layout.data.display()
            )
        })
    })();
    if made.is_err() {
        let _ = fs::remove_dir_all(&staging);
    }
    made
}

/// What price-history sets in the private server's postgresql.conf.
fn server_settings(socket_dir: &Path) -> String {
    format!(
        "\n# price-history's private server: a Unix socket only, in a directory only its\n\
         # user can enter (issue 22).\n\
         listen_addresses = ''\n\
         port = {PORT}\n\
         unix_socket_directories = '{}'\n",
        socket_dir.to_string_lossy().replace('\'', "''")
    )
}

pub(super) fn is_running(binaries: &Binaries, layout: &Layout) -> anyhow::Result<bool> {
    let output = run(Command::new(binaries.tool("pg_ctl"))
        .arg("status")
        .arg("--pgdata")
        .arg(&layout.data))?;
    // 0: running; 3: not running; 4: no data directory it can read.
    match output.status.code() {
        Some(0) => Ok(true),
        Some(3) => Ok(false),
        _ => bail!(
            "pg_ctl status could not read the private PostgreSQL's data in {}: {}",
            layout.data.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        ),
    }
}

pub(super) fn pg_ctl_start(binaries: &Binaries, layout: &Layout) -> anyhow::Result<()> {
    let output = run(Command::new(binaries.tool("pg_ctl"))
        .arg("start")
        .arg("--pgdata")
        .arg(&layout.data)
        .arg("--log")
        .arg(&layout.log)
        .args(["--wait", "--timeout", PG_CTL_WAIT_SECS, "--silent"]))?;
    if !output.status.success() {
        bail!(
            "the private PostgreSQL did not start ({}): {}; its log, {}, ends with:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim(),
            layout.log.display(),
            log_tail(&layout.log)
        );
    }
    Ok(())
}

pub(super) fn pg_ctl_stop(binaries: &Binaries, layout: &Layout) -> anyhow::Result<()> {
    if !is_running(binaries, layout)? {
        return Ok(());
    }
    let postmaster = fs::read_to_string(layout.data.join("postmaster.pid"))
        .ok()
        .and_then(|text| text.lines().next()?.trim().parse::<u32>().ok());
    // Fast: the service's own connections are closed by now; a psql session left open
    // must not keep the server up after the service is gone.
    let output = run(Command::new(binaries.tool("pg_ctl"))
        .arg("stop")
        .arg("--pgdata")
        .arg(&layout.data)
        .args([
            "--mode",
            "fast",
            "--wait",
            "--timeout",
            PG_CTL_WAIT_SECS,
            "--silent",
        ]))?;
    if !output.status.success() {
        bail!(
            "pg_ctl stop failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    if let Some(pid) = postmaster {
        wait_until_exited(pid);
    }
    Ok(())
}

/// Waits (up to 5 s) until process `pid` has exited. `pg_ctl stop --wait` returns once
/// the server removed its pid file, a moment before its process ends; the process must
/// be gone before price-history exits. Read from /proc, where there is one (a process
/// that is not our child cannot be waited for); a zombie has exited.
fn wait_until_exited(pid: u32) {
    let stat = PathBuf::from(format!("/proc/{pid}/stat"));
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        match fs::read_to_string(&stat) {
            Err(_) => return,
            Ok(text) if process_state(&text) == Some('Z') => return,
            Ok(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// The state letter of a `/proc/<pid>/stat` line (after the parenthesised name, which
/// may itself hold spaces and parentheses).
fn process_state(stat: &str) -> Option<char> {
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// Runs a PostgreSQL program to its end, in a process group of its own: a Ctrl-C in the
/// terminal reaches price-history, which then stops the server in order, and not the
/// server behind its back.
///
/// Should this process exit while the program runs (a SIGTERM during the start: `main`
/// does not wait for it), the program gets SIGTERM too (on Linux), so that no `initdb`
/// goes on writing with nobody to finish its work (it removes what it made on SIGTERM).
/// A server `pg_ctl` started runs on, and the next process of the service uses it, as
/// after a `kill -9`.
fn run(command: &mut Command) -> anyhow::Result<Output> {
    use std::os::unix::process::CommandExt;
    let program = command.get_program().to_string_lossy().into_owned();
    stop_with_this_process(command);
    command
        .stdin(Stdio::null())
        .process_group(0)
        .env_remove("PGDATA")
        .output()
        .with_context(|| format!("could not run {program}"))
}

/// Makes the program get SIGTERM when this process exits (Linux's parent-death signal).
#[cfg(target_os = "linux")]
fn stop_with_this_process(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: `prctl` and `getppid` are async-signal-safe, and an error is made from the
    // errno alone, without allocating.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent gone between the fork and the prctl: no signal would come.
            if libc::getppid() != parent {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

/// Elsewhere a program outlives a process that exits during it.
#[cfg(not(target_os = "linux"))]
fn stop_with_this_process(_command: &mut Command) {}

/// Lets the program inherit `file`'s descriptor, and with it the `flock` held on it.
fn hand_down(command: &mut Command, file: &File) {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let fd = file.as_raw_fd();
    // SAFETY: `fcntl` is async-signal-safe, and an error is made from the errno alone.
    unsafe {
        command.pre_exec(move || {
            if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// The last lines of the server's log, for an error.
fn log_tail(log: &Path) -> String {
    let text = fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_process_state_is_read_after_the_name_whatever_the_name_holds() {
        assert_eq!(process_state("42 (postgres) S 1 42"), Some('S'));
        assert_eq!(process_state("42 (a) b) Z 1 42"), Some('Z'));
        assert_eq!(process_state("garbage"), None);
    }
}
