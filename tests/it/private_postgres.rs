//! A first run with no PostgreSQL of its own (issue 22): with `DATABASE_URL` unset and
//! nothing at localhost:5432, the binary starts a private server from the machine's
//! PostgreSQL programs, shares it between its processes, stops it when the last one
//! exits, and finds its data again next time.
//!
//! "Nothing at localhost:5432" without stopping the machine's cluster: each test runs the
//! binary in a network namespace of its own (`unshare --net`, loopback up), next to a
//! fake CoinGecko in the same namespace. PostgreSQL will not run as root, and the tests
//! run as root: the private server runs as a user the test creates, with its own home.
//! These tests need root (for `unshare`, `useradd`) and PostgreSQL's programs in
//! /usr/lib/postgresql/*/bin; a machine without them fails them rather than skip them.

use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;
use std::time::{Duration, Instant};

use tokio::io::AsyncBufReadExt as _;
use tokio::process::Command;

use crate::support::{
    Service, assert_mentions, days_before_today, fake_upstream_program, start_captured,
};

/// Where the fake CoinGecko listens inside the namespace: nothing else is there.
const FAKE_BIND: &str = "127.0.0.1:8090";

/// The program and arguments of a loopback fake CoinGecko listening on `bind`, and the
/// line it prints once it listens: the one place that knows how the fake is run.
fn fake_coingecko(bind: &str) -> (Vec<String>, &'static str) {
    (
        vec![
            fake_upstream_program().display().to_string(),
            "coingecko".to_owned(),
            "--bind".to_owned(),
            bind.to_owned(),
        ],
        "fake CoinGecko listening",
    )
}

fn assert_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "these tests create a user and a network namespace, which needs root"
    );
}

/// A directory of the test's own under /tmp, removed at the end.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "ph-{name}-{}-{}",
            std::process::id(),
            uuid::Uuid::now_v7().simple()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `useradd` and `userdel` lock /etc/passwd and give up when another holds it: the
/// tests of this file, run in parallel, take turns.
static ACCOUNTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// An ordinary user made for one test, with a home of its own; deleted at the end, after
/// any server of its left running (a failed test) is stopped.
struct TestUser {
    name: String,
    uid: u32,
    gid: u32,
    home: PathBuf,
    _scratch: Scratch,
}

impl TestUser {
    fn create() -> Self {
        assert_root();
        let scratch = Scratch::new("user");
        let home = scratch.0.join("home");
        std::fs::create_dir(&home).unwrap();
        // Short and unique: user names are at most 32 characters.
        let name = format!("phpg{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
        let accounts = ACCOUNTS
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let status = StdCommand::new("useradd")
            .args(["--no-create-home", "--user-group", "--shell", "/bin/sh"])
            .arg("--home-dir")
            .arg(&home)
            .arg(&name)
            .status()
            .expect("useradd runs");
        drop(accounts);
        assert!(status.success(), "useradd {name} failed");
        let id = |flag: &str| -> u32 {
            let out = StdCommand::new("id").args([flag, &name]).output().unwrap();
            String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
        };
        let (uid, gid) = (id("-u"), id("-g"));
        nix::unistd::chown(
            &home,
            Some(nix::unistd::Uid::from_raw(uid)),
            Some(nix::unistd::Gid::from_raw(gid)),
        )
        .unwrap();
        TestUser {
            name,
            uid,
            gid,
            home,
            _scratch: scratch,
        }
    }

    /// After the last process of the service exited: none of this user's processes is
    /// left, and the server is stopped.
    fn assert_nothing_runs(&self) {
        assert_eq!(self.processes(), "", "processes left after the last exit");
        assert_eq!(postmaster_pid(&self.data_dir()), None);
    }

    fn data_dir(&self) -> PathBuf {
        self.home.join(".local/share/price-history/postgres")
    }

    /// The processes this user has that have not exited (a zombie has: it only waits
    /// for init to reap it), one `pid state command` a line.
    fn processes(&self) -> String {
        let out = StdCommand::new("ps")
            .args(["-u", &self.uid.to_string(), "-o", "pid=,stat=,args="])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|line| {
                line.split_whitespace()
                    .nth(1)
                    .is_some_and(|stat| !stat.starts_with('Z'))
            })
            .map(|line| format!("{line}\n"))
            .collect()
    }

    /// `price-history <args>` as this user, in the network namespace of `netns_pid`,
    /// with no `DATABASE_URL` and the fake CoinGecko there.
    fn price_history(&self, netns_pid: u32, args: &[&str]) -> Command {
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--net=/proc/{netns_pid}/ns/net"))
            .arg("setpriv")
            .arg(format!("--reuid={}", self.uid))
            .arg(format!("--regid={}", self.gid))
            .arg("--clear-groups")
            .arg(env!("CARGO_BIN_EXE_price-history"))
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", &self.home)
            .env("USER", &self.name)
            .env("COINGECKO_BASE_URL", format!("http://{FAKE_BIND}"))
            .env("COINGECKO_CALLS_PER_MINUTE", "6000")
            .env("COINGECKO_RETRY_BASE_DELAY_MS", "10")
            .env("SYNC_SCHEDULE", "off")
            .env("RUST_LOG", "info,sqlx=warn")
            .kill_on_drop(true);
        command
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let data = self.data_dir();
        if data.join("postmaster.pid").exists() {
            let _ = StdCommand::new("setpriv")
                .arg(format!("--reuid={}", self.uid))
                .arg(format!("--regid={}", self.gid))
                .arg("--clear-groups")
                .arg("pg_ctl")
                .args(["stop", "--mode", "immediate", "--pgdata"])
                .arg(&data)
                .status();
        }
        let _accounts = ACCOUNTS
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let _ = StdCommand::new("userdel").arg(&self.name).status();
    }
}

/// A fake CoinGecko in a network namespace of its own, loopback up: its pid names the
/// namespace for `nsenter`.
/// `unshare` ready to run a program, given next, in a new network namespace whose
/// loopback is up: no other process's server is reachable there.
fn in_new_netns() -> Command {
    let mut command = Command::new("unshare");
    command.args([
        "--net",
        "sh",
        "-c",
        "ip link set lo up && exec \"$@\"",
        "sh",
    ]);
    command
}

/// `price-history migrate` in a new network namespace, with only `PATH` and a scratch
/// `HOME` in its environment.
fn migrate_in_new_netns(scratch: &Scratch) -> Command {
    let mut command = in_new_netns();
    command
        .arg(env!("CARGO_BIN_EXE_price-history"))
        .arg("migrate")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", &scratch.0);
    command
}

async fn fake_in_new_netns() -> Service {
    let (argv, ready) = fake_coingecko(FAKE_BIND);
    let mut command = in_new_netns();
    command
        .args(&argv)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "info");
    let fake = start_captured(command);
    fake.wait_for_printed(ready, Duration::from_secs(30)).await;
    fake
}

fn postmaster_pid(data: &Path) -> Option<String> {
    std::fs::read_to_string(data.join("postmaster.pid"))
        .ok()
        .and_then(|text| text.lines().next().map(str::to_owned))
}

async fn serve(user: &TestUser, netns: u32) -> Service {
    let serve = start_captured(user.price_history(netns, &["serve"]));
    serve
        .wait_for_printed("REST API listening", Duration::from_secs(90))
        .await;
    serve
}

async fn stop(mut service: Service, user: &TestUser) -> String {
    service.signal("TERM");
    let printed = service.exits_0(Duration::from_secs(40)).await;
    assert!(
        printed.contains("stopped the private PostgreSQL"),
        "{printed}"
    );
    user.assert_nothing_runs();
    printed
}

#[tokio::test]
async fn serve_without_a_database_starts_a_private_one_shares_it_stops_it_on_sigterm_and_finds_its_data_again()
 {
    let user = TestUser::create();
    let fake = fake_in_new_netns().await;
    let end = days_before_today(1);
    let start = days_before_today(5);

    // First start: the data directory is made and the server started.
    let first = serve(&user, fake.pid).await;
    let note = first.output();
    assert!(
        note.contains("created and started a private PostgreSQL"),
        "{note}"
    );
    assert!(
        note.contains(&user.data_dir().display().to_string()),
        "{note}"
    );
    assert!(note.contains("psql -h"), "{note}");
    assert!(
        note.contains("Set DATABASE_URL to use another server"),
        "{note}"
    );
    let server = postmaster_pid(&user.data_dir()).expect("the server runs");

    // A second process joins the same server, runs a job to the end, and leaves it running.
    let backfill = user
        .price_history(
            fake.pid,
            &[
                "backfill",
                "--start-date",
                &start.to_string(),
                "--end-date",
                &end.to_string(),
            ],
        )
        .output()
        .await
        .unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&backfill.stdout),
        String::from_utf8_lossy(&backfill.stderr)
    );
    assert!(backfill.status.success(), "{printed}");
    assert!(printed.contains(": completed"), "{printed}");
    assert!(
        printed.contains("uses the private PostgreSQL another price-history process started"),
        "{printed}"
    );
    assert!(printed.contains("keeps running"), "{printed}");
    assert_eq!(
        postmaster_pid(&user.data_dir()),
        Some(server),
        "started twice"
    );

    // SIGTERM: exit 0, and no process of the server left.
    stop(first, &user).await;

    // Second start: the same data, not made again.
    let second = serve(&user, fake.pid).await;
    let note = second.output();
    assert!(note.contains("started the private PostgreSQL"), "{note}");
    assert!(!note.contains("created"), "{note}");
    let list = user
        .price_history(fake.pid, &["coins", "list"])
        .output()
        .await
        .unwrap();
    let listed = String::from_utf8_lossy(&list.stdout);
    let btc = listed
        .lines()
        .find(|line| line.starts_with("BTC "))
        .unwrap_or_else(|| panic!("no BTC in {listed}"));
    // SYMBOL COINGECKO_ID FIRST_DAY TRACKED SINCE LAST_DAY COINBASE_PRODUCT
    assert_eq!(
        btc.split_whitespace().nth(5),
        Some(end.to_string().as_str()),
        "the first run's days are gone: {btc}"
    );
    stop(second, &user).await;
}

#[tokio::test]
async fn as_root_the_private_server_is_refused_saying_why_and_nothing_is_made() {
    assert_root();
    let scratch = Scratch::new("root");
    let started = Instant::now();
    let output = migrate_in_new_netns(&scratch).output().await.unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    for says in [
        "PostgreSQL refuses to run as root",
        "Run price-history as an ordinary user",
        "set DATABASE_URL",
    ] {
        assert!(stderr.contains(says), "{says:?} in {stderr}");
    }
    assert!(
        !scratch.0.join(".local").exists(),
        "something was made under HOME"
    );
}

#[tokio::test]
async fn without_postgresql_programs_it_exits_1_within_2_s_naming_the_three_ways_out() {
    assert_root();
    let scratch = Scratch::new("nobin");
    // A mount namespace of its own hides Debian's programs from this process alone, and
    // PATH leaves out /usr/local/bin, whose links point there.
    let started = Instant::now();
    let output = Command::new("unshare")
        .args([
            "--net",
            "--mount",
            "sh",
            "-c",
            "ip link set lo up && mount -t tmpfs none /usr/lib/postgresql && exec \"$@\"",
            "sh",
        ])
        .arg(env!("CARGO_BIN_EXE_price-history"))
        .arg("serve")
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("HOME", &scratch.0)
        .output()
        .await
        .unwrap();
    let elapsed = started.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        elapsed < Duration::from_secs(2),
        "took {elapsed:?}: {stderr}"
    );
    assert_mentions(
        &stderr,
        &[
            "sudo apt install postgresql",
            "brew install postgresql@17",
            "docker compose -f docker/compose.yaml up",
            "set DATABASE_URL",
        ],
    );
    assert_eq!(
        stderr
            .lines()
            .filter(|line| line.starts_with("error:"))
            .count(),
        1,
        "one message: {stderr}"
    );
    assert!(!scratch.0.join(".local").exists());
}

fn printed(output: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[tokio::test]
async fn a_server_left_behind_by_kill_9_is_used_by_the_next_process_which_then_stops_it() {
    let user = TestUser::create();
    let netns = fake_in_new_netns().await;
    let mut first = serve(&user, netns.pid).await;
    let server = postmaster_pid(&user.data_dir()).expect("the server runs");

    first.kill().await;
    assert_eq!(
        postmaster_pid(&user.data_dir()).as_ref(),
        Some(&server),
        "kill -9 cannot stop the server; it is left running"
    );

    let list = user
        .price_history(netns.pid, &["coins", "list"])
        .output()
        .await
        .unwrap();
    let said = printed(&list);
    assert!(list.status.success(), "{said}");
    assert!(
        said.contains("uses the private PostgreSQL another price-history process started"),
        "{said}"
    );
    assert!(said.contains("stopped the private PostgreSQL"), "{said}");
    user.assert_nothing_runs();
}

/// A SIGTERM while the private server's start waits ends the process at once, exit 0:
/// here the start waits for the start lock, which another process holds while it starts
/// or stops the server (a long `initdb`, a crash recovery). The start cannot be cancelled
/// where it blocks, and the process used to wait for it to end, however long.
#[tokio::test]
async fn sigterm_while_the_private_server_start_waits_exits_0_at_once() {
    let user = TestUser::create();
    let netns = fake_in_new_netns().await;
    // A first run makes the data directory and the lock files, and stops its server.
    let list = user
        .price_history(netns.pid, &["coins", "list"])
        .output()
        .await
        .unwrap();
    assert!(list.status.success(), "{}", printed(&list));
    let lock_path = user.home.join(".local/share/price-history/postgres.lock");
    let held = std::fs::File::open(&lock_path).expect("the first run made the start lock");
    held.lock().expect("this test takes the start lock");

    let mut serve = start_captured(user.price_history(netns.pid, &["serve"]));
    serve
        .wait_for_printed(
            "is starting or stopping the private PostgreSQL; waiting for it",
            Duration::from_secs(30),
        )
        .await;
    serve.signal("TERM");
    let printed = serve.exits_0(Duration::from_secs(30)).await;
    assert!(!printed.contains("REST API listening"), "{printed}");
    drop(held);
    user.assert_nothing_runs();
}

/// A SIGTERM during `initdb` (here a stand-in that runs until told to stop, first in
/// `PATH`) ends the process at once, exit 0, and `initdb` is told to stop too: it does not
/// go on writing with nobody left to finish its work, and it holds the start lock until it
/// has ended.
#[tokio::test]
async fn sigterm_during_initdb_exits_0_at_once_and_stops_initdb() {
    let user = TestUser::create();
    let netns = fake_in_new_netns().await;
    let programs = Scratch::new("programs");
    let fifo = |name: &str| {
        let path = programs.0.join(name);
        let made = StdCommand::new("mkfifo")
            .arg("-m")
            .arg("666")
            .arg(&path)
            .status();
        assert!(made.unwrap().success(), "mkfifo {}", path.display());
        path
    };
    let (started, stopped) = (fifo("started"), fifo("stopped"));
    let initdb = format!(
        "#!/bin/sh\n\
         lock=\"$HOME/.local/share/price-history/postgres.lock\"\n\
         trap 'kill $child; if flock -n \"$lock\" true; then echo free; else echo held; fi > {stopped}; exit 1' TERM\n\
         echo started > {started}\n\
         sleep 600 & child=$!\n\
         wait $child\n",
        started = started.display(),
        stopped = stopped.display(),
    );
    let version = "#!/bin/sh\necho \"pg_ctl (PostgreSQL) 15.19\"\n";
    for (name, text) in [
        ("initdb", initdb.as_str()),
        ("pg_ctl", version),
        ("postgres", version),
    ] {
        let path = programs.0.join(name);
        std::fs::write(&path, text).unwrap();
        let mode = std::os::unix::fs::PermissionsExt::from_mode(0o755);
        std::fs::set_permissions(&path, mode).unwrap();
    }
    let path = format!(
        "{}:{}",
        programs.0.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut command = user.price_history(netns.pid, &["serve"]);
    command.env("PATH", path);
    let mut serve = start_captured(command);

    // Each opened for reading and writing, so that a read waits for a line instead of
    // ending when no writer has opened it yet.
    let listen = |fifo: &Path| {
        let receiver = tokio::net::unix::pipe::OpenOptions::new()
            .read_write(true)
            .open_receiver(fifo)
            .expect("the fifo opens");
        tokio::io::BufReader::new(receiver)
    };
    let (mut started, mut stopped) = (listen(&started), listen(&stopped));
    let within = Duration::from_secs(30);
    let mut line = String::new();
    let said = tokio::time::timeout(within, started.read_line(&mut line)).await;
    assert!(said.is_ok(), "initdb did not start: {}", serve.output());
    serve.signal("TERM");
    serve.exits_0(within).await;
    line.clear();
    let said = tokio::time::timeout(within, stopped.read_line(&mut line)).await;
    assert!(said.is_ok(), "initdb was not told to stop");
    // It still held the start lock (handed down to it), so that no other process could
    // begin an `initdb` of its own beside the one stopping.
    assert_eq!(line, "held\n");
    assert!(!user.data_dir().exists(), "no data directory was made");
}

#[tokio::test]
async fn processes_starting_at_once_make_one_data_directory_and_leave_no_server() {
    let user = TestUser::create();
    let netns = fake_in_new_netns().await;
    let (a, b) = tokio::join!(
        user.price_history(netns.pid, &["coins", "list"]).output(),
        user.price_history(netns.pid, &["coins", "list"]).output(),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    let said = format!("{}\n---\n{}", printed(&a), printed(&b));
    assert!(a.status.success() && b.status.success(), "{said}");
    assert_eq!(
        said.matches("created and started a private PostgreSQL")
            .count(),
        1,
        "{said}"
    );
    assert!(said.matches("BTC ").count() == 2, "{said}");
    user.assert_nothing_runs();
}

#[tokio::test]
async fn database_url_set_even_to_the_default_means_no_private_server_as_before() {
    assert_root();
    let scratch = Scratch::new("given");
    let output = migrate_in_new_netns(&scratch)
        .env("DATABASE_URL", price_history::config::DEFAULT_DATABASE_URL)
        .env("DATABASE_CONNECT_TIMEOUT_SECS", "0")
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("did not accept a connection within 0 s"),
        "{stderr}"
    );
    assert!(!stderr.contains("private"), "{stderr}");
    assert!(!scratch.0.join(".local").exists());
}
