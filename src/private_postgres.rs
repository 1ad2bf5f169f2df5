//! A private PostgreSQL for a first run (issue 22): when `DATABASE_URL` is not set and
//! nothing answers at its default address, the process starts a server of its own from
//! the PostgreSQL binaries already on the machine, instead of waiting a minute for one
//! and exiting.
//!
//! - Data: `$XDG_DATA_HOME/price-history/postgres` (else `~/.local/share/...`), made by
//!   `initdb` once and kept across runs. `initdb` writes into a staging directory that is
//!   renamed into place only when it succeeded: there is never a half-made data directory.
//! - Listening: on a Unix socket in the data directory (mode 0700, so only this user
//!   reaches it, which is why `trust` authentication is safe), never on TCP.
//! - Sharing: every process of the service using the server holds a shared `flock` on
//!   `postgres.users` for as long as it runs; starting and stopping happen under an
//!   exclusive lock on `postgres.lock`. A process starts the server only when
//!   `pg_ctl status` says it is not running, and on the way out stops it only when it can
//!   take `postgres.users` exclusively, that is when no other process of the service
//!   still uses it: the last one out stops it. The kernel drops the locks of a process
//!   that dies (even `kill -9`), so a count never leaks; the server such a process leaves
//!   behind is found running and reused by the next one, which then stops it.
//! - Hand-written `initdb`/`pg_ctl` calls rather than the `postgresql_embedded` crate: the
//!   crate downloads binaries unless pointed at an installation by hand, finds none on the
//!   machine itself, does not share one server between processes, and would pull
//!   reqwest's JSON/stream stack, `tokio/full` and a build script into every build for
//!   what is a page of process calls here: added without its default features (tokio,
//!   rustls-ring), it rebuilt 45 crates, 200 CPU-seconds of a dev build on this 2-core
//!   machine (issue 22's note).

use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::config::DEFAULT_DATABASE_URL;

/// The superuser `initdb` creates; the URL and the `psql` hint use it.
const SUPERUSER: &str = "postgres";

/// The database the service uses on the private server: the default URL's.
const DATABASE: &str = "price_history";

/// The port in the socket's name (`.s.PGSQL.5432`); nothing listens on TCP.
const PORT: u16 = 5432;

/// How long the probe of the default address waits for a TCP connection: a server on
/// loopback answers in microseconds, and the no-binaries error must come within 2 s.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// How long `pg_ctl` waits for the server to start or stop.
const PG_CTL_WAIT_SECS: &str = "60";

/// The longest socket path the kernel takes (`sun_path` is 108 bytes on Linux, 104 on
/// macOS, the terminating NUL included); longer, the socket goes to a short directory.
const MAX_SOCKET_PATH: usize = 100;

/// The database to connect to: `database_url` when it was given (`DATABASE_URL` or
/// `--database-url` set, rather than defaulted) or something answers there; else the URL
/// of the private server, started (or joined) here and held until the returned guard is
/// dropped. The one entry point of this module: the connect path calls it at start.
pub async fn resolve_database(
    database_url: &str,
    url_given: bool,
) -> anyhow::Result<(String, Option<PrivateServer>)> {
    if url_given || database_url != DEFAULT_DATABASE_URL || answers(database_url).await {
        return Ok((database_url.to_owned(), None));
    }
    let server = tokio::task::spawn_blocking(PrivateServer::start)
        .await
        .context("the private PostgreSQL's start-up panicked")??;
    tracing::info!(
        data_dir = %server.layout.data.display(),
        psql = %server.psql_command(),
        "{}",
        server.describe()
    );
    Ok((server.url(), Some(server)))
}

/// Whether anything accepts a TCP connection at the URL's host and port (any of the
/// addresses the host resolves to): a server there, whatever it then says, means no
/// private server, exactly as before there was one.
async fn answers(database_url: &str) -> bool {
    let Ok(url) = url::Url::parse(database_url) else {
        return true;
    };
    let host = url.host_str().unwrap_or("localhost").to_owned();
    let port = url.port().unwrap_or(PORT);
    matches!(
        tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect((host, port))).await,
        Ok(Ok(_))
    )
}

/// The private server, held by this process: dropping it leaves the server, stopping it
/// when this was the last process of the service using it.
#[derive(Debug)]
pub struct PrivateServer {
    layout: Layout,
    binaries: Binaries,
    /// `postgres.users`, locked shared while this process uses the server; `None` once left.
    users: Option<File>,
    /// Whether this process ran `initdb` (the first start on this machine).
    created: bool,
    /// Whether this process started the server (rather than finding it running).
    started: bool,
}

impl PrivateServer {
    /// Finds the binaries, refuses root, makes the data directory when there is none and
    /// starts the server when it is not running: blocking, for `spawn_blocking`.
    fn start() -> anyhow::Result<Self> {
        let layout = Layout::for_this_user()?;
        let made_by = fs::read_to_string(layout.data.join("PG_VERSION"))
            .ok()
            .map(|version| version.trim().to_owned());
        let binaries = Binaries::find(made_by.as_deref(), &layout)?;
        refuse_root()?;

        create_private_dir(&layout.base)?;
        let start_lock = lock_exclusive(&layout.lock)?;
        let users = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&layout.users)
            .with_context(|| format!("could not open {}", layout.users.display()))?;
        users
            .lock_shared()
            .with_context(|| format!("could not lock {}", layout.users.display()))?;
        let created = if made_by.is_none() && !layout.data.join("PG_VERSION").exists() {
            initdb(&binaries, &layout)?;
            true
        } else {
            false
        };
        if layout.socket_dir != layout.data {
            create_private_dir(&layout.socket_dir)?;
            ensure_only_ours(&layout.socket_dir)?;
        }
        let started = if is_running(&binaries, &layout)? {
            false
        } else {
            pg_ctl_start(&binaries, &layout)?;
            true
        };
        drop(start_lock);
        Ok(Self {
            layout,
            binaries,
            users: Some(users),
            created,
            started,
        })
    }

    /// The URL of the service's database on the private server: its socket directory as
    /// `host`, which sqlx reads as a Unix socket.
    pub fn url(&self) -> String {
        let mut url = url::Url::parse(&format!("postgres://{SUPERUSER}@localhost/{DATABASE}"))
            .expect("a valid URL");
        url.query_pairs_mut()
            .append_pair("host", &self.layout.socket_dir.to_string_lossy());
        url.to_string()
    }

    /// How a person connects to it.
    pub fn psql_command(&self) -> String {
        format!(
            "psql -h {} -U {SUPERUSER} {DATABASE}",
            shell_quoted(&self.layout.socket_dir.to_string_lossy())
        )
    }

    /// The start-up note: what was done, where the data lives, how to connect, and how
    /// to use another server instead.
    fn describe(&self) -> String {
        let what = match (self.created, self.started) {
            (true, _) => "created and started a private PostgreSQL",
            (false, true) => "started the private PostgreSQL",
            (false, false) => "uses the private PostgreSQL another price-history process started",
        };
        format!(
            "DATABASE_URL is not set and nothing answers at {}, so price-history {what} \
             ({} from {}). Its data lives in {} and is kept across runs; connect with `{}`. \
             Set DATABASE_URL to use another server",
            default_address(),
            self.binaries.version_label(),
            self.binaries.dir.display(),
            self.layout.data.display(),
            self.psql_command()
        )
    }

    /// Stops using the server: the last process of the service out stops it.
    fn leave(&mut self) -> anyhow::Result<()> {
        let Some(users) = self.users.take() else {
            return Ok(());
        };
        let _start_lock = lock_exclusive(&self.layout.lock)?;
        users.unlock().context("could not unlock postgres.users")?;
        match users.try_lock() {
            Ok(()) => {
                pg_ctl_stop(&self.binaries, &self.layout)?;
                tracing::info!(data_dir = %self.layout.data.display(), "stopped the private PostgreSQL");
            }
            Err(fs::TryLockError::WouldBlock) => tracing::info!(
                "the private PostgreSQL keeps running: other price-history processes use it"
            ),
            Err(fs::TryLockError::Error(e)) => {
                return Err(e).context("could not lock postgres.users");
            }
        }
        Ok(())
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        if let Err(e) = self.leave() {
            tracing::warn!(error = %format!("{e:#}"), "could not stop the private PostgreSQL cleanly");
        }
    }
}

/// `localhost:5432`, as the default URL says.
fn default_address() -> String {
    url::Url::parse(DEFAULT_DATABASE_URL)
        .map(|url| {
            format!(
                "{}:{}",
                url.host_str().unwrap_or("localhost"),
                url.port().unwrap_or(PORT)
            )
        })
        .unwrap_or_else(|_| "localhost:5432".to_owned())
}

/// Where the private server's files are, for this user.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Layout {
    /// `$XDG_DATA_HOME/price-history`, or `~/.local/share/price-history`.
    base: PathBuf,
    /// The data directory: `base/postgres`.
    data: PathBuf,
    /// Where the server's socket is: the data directory, unless its path is too long
    /// for a socket.
    socket_dir: PathBuf,
    /// The server's log: `base/postgres.log`.
    log: PathBuf,
    /// Held exclusively while starting, or deciding to stop, the server.
    lock: PathBuf,
    /// Held shared by every process using the server.
    users: PathBuf,
}

impl Layout {
    fn for_this_user() -> anyhow::Result<Self> {
        let data_home = data_home(
            std::env::var_os("XDG_DATA_HOME").map(PathBuf::from),
            std::env::var_os("HOME").map(PathBuf::from),
        )
        .context(
            "neither XDG_DATA_HOME nor HOME is set, so there is no place for a private \
             PostgreSQL's data: set one of them, or set DATABASE_URL",
        )?;
        Ok(Self::under(&data_home.join("price-history"), uid()))
    }

    fn under(base: &Path, uid: u32) -> Self {
        let data = base.join("postgres");
        let socket_in_data = data.join(format!(".s.PGSQL.{PORT}"));
        let socket_dir = if socket_in_data.as_os_str().len() <= MAX_SOCKET_PATH {
            data.clone()
        } else {
            std::env::temp_dir().join(format!("price-history-{uid}"))
        };
        Self {
            base: base.to_owned(),
            socket_dir,
            log: base.join("postgres.log"),
            lock: base.join("postgres.lock"),
            users: base.join("postgres.users"),
            data,
        }
    }
}

/// The XDG data directory: `$XDG_DATA_HOME` when set to an absolute path (the spec says
/// to ignore a relative one), else `$HOME/.local/share`.
fn data_home(xdg_data_home: Option<PathBuf>, home: Option<PathBuf>) -> Option<PathBuf> {
    xdg_data_home.filter(|dir| dir.is_absolute()).or_else(|| {
        home.filter(|home| !home.as_os_str().is_empty())
            .map(|home| home.join(".local").join("share"))
    })
}

/// PostgreSQL's own binaries, in one directory.
#[derive(Debug, Clone)]
struct Binaries {
    dir: PathBuf,
    /// `pg_ctl --version`'s version, such as `15.14`, when it could be read.
    version: Option<String>,
}

/// The programs a private server needs, all in one directory.
const TOOLS: [&str; 3] = ["initdb", "pg_ctl", "postgres"];

impl Binaries {
    /// The first directory holding PostgreSQL's programs: in `PATH`, then the usual
    /// places, the newest version first. With a data directory made by version
    /// `made_by`, only that version can run it.
    fn find(made_by: Option<&str>, layout: &Layout) -> anyhow::Result<Self> {
        let mut found = candidates()
            .into_iter()
            .filter(|dir| has_tools(dir))
            .peekable();
        if found.peek().is_none() {
            bail!("{}", no_binaries_message());
        }
        let mut seen = Vec::new();
        for dir in found {
            let binaries = Self {
                version: version_of(&dir),
                dir,
            };
            match made_by {
                None => return Ok(binaries),
                Some(made_by) if binaries.major().as_deref() == Some(made_by) => {
                    return Ok(binaries);
                }
                Some(_) => seen.push(format!(
                    "{} in {}",
                    binaries.version_label(),
                    binaries.dir.display()
                )),
            }
        }
        bail!(
            "the private PostgreSQL's data in {} was made by PostgreSQL {}, and only {} is \
             installed: install PostgreSQL {} again, or upgrade the data with pg_upgrade, or \
             move the directory away to start afresh (or set DATABASE_URL to use another server)",
            layout.data.display(),
            made_by.unwrap_or("?"),
            seen.join(", "),
            made_by.unwrap_or("?"),
        )
    }

    fn tool(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The major version as PG_VERSION writes it: `15`, or `9.6` before version 10.
    fn major(&self) -> Option<String> {
        let version = self.version.as_deref()?;
        let mut parts = version.split('.');
        let first = parts.next()?;
        match first.parse::<u32>() {
            Ok(major) if major >= 10 => Some(first.to_owned()),
            Ok(_) => Some(format!("{first}.{}", parts.next()?)),
            Err(_) => None,
        }
    }

    fn version_label(&self) -> String {
        match &self.version {
            Some(version) => format!("PostgreSQL {version}"),
            None => "PostgreSQL".to_owned(),
        }
    }
}

/// Where PostgreSQL's programs may be, in order: each directory of `PATH`, then Debian's
/// and Ubuntu's `/usr/lib/postgresql/N/bin`, the PGDG packages' `/usr/pgsql-N/bin`,
/// Homebrew's keg-only `postgresql@N` (Apple silicon, then Intel) and its linked `bin`,
/// and Postgres.app; versioned places newest first.
fn candidates() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect())
        .unwrap_or_default();
    dirs.extend(versioned(Path::new("/usr/lib/postgresql"), "", "bin"));
    dirs.extend(versioned(Path::new("/usr"), "pgsql-", "bin"));
    for homebrew in ["/opt/homebrew", "/usr/local"] {
        dirs.extend(versioned(
            &Path::new(homebrew).join("opt"),
            "postgresql",
            "bin",
        ));
        dirs.push(Path::new(homebrew).join("bin"));
    }
    dirs.push(PathBuf::from(
        "/Applications/Postgres.app/Contents/Versions/latest/bin",
    ));
    dirs
}

/// `parent/<prefix><version>/<sub>` for each entry of `parent` named so, the highest
/// version first (`postgresql@17` before `postgresql@16`, `16` before `9.6`).
fn versioned(parent: &Path, prefix: &str, sub: &str) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(parent) else {
        return Vec::new();
    };
    let mut found: Vec<(Vec<u32>, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let rest = name.strip_prefix(prefix)?;
            let version: Vec<u32> = rest
                .strip_prefix('@')
                .unwrap_or(rest)
                .split('.')
                .map_while(|part| part.parse().ok())
                .collect();
            if rest.is_empty() || !version.is_empty() {
                Some((version, entry.path().join(sub)))
            } else {
                None
            }
        })
        .collect();
    found.sort_by(|a, b| b.0.cmp(&a.0));
    found.into_iter().map(|(_, dir)| dir).collect()
}

fn has_tools(dir: &Path) -> bool {
    TOOLS.iter().all(|tool| is_executable(&dir.join(tool)))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// `15.14` of `pg_ctl (PostgreSQL) 15.14 (Debian 15.14-0+deb12u1)`.
fn version_of(dir: &Path) -> Option<String> {
    let output = Command::new(dir.join("pg_ctl"))
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .ok()?;
    parse_version(&String::from_utf8_lossy(&output.stdout))
}

fn parse_version(text: &str) -> Option<String> {
    let (_, rest) = text.split_once(") ")?;
    let version = rest.split_whitespace().next()?;
    version
        .starts_with(|c: char| c.is_ascii_digit())
        .then(|| version.to_owned())
}

/// The error when there is nothing to start a server from: the three ways out.
fn no_binaries_message() -> String {
    format!(
        "no PostgreSQL to use: DATABASE_URL is not set, nothing answers at {}, and no \
         PostgreSQL programs (initdb, pg_ctl, postgres) were found in PATH or in \
         /usr/lib/postgresql/*/bin, /usr/pgsql-*/bin, Homebrew's or Postgres.app's places \
         to start a private one. Any one of these gets you going:\
         \n  1. install PostgreSQL: `sudo apt install postgresql` (Debian, Ubuntu) or \
         `brew install postgresql@17` (macOS); price-history then starts a private server \
         from it, its data under ~/.local/share/price-history. Debian's package also \
         starts a server of its own on port 5432, which price-history would then try \
         instead (as user postgres, without a password): \
         `sudo systemctl disable --now postgresql` leaves its programs to the private one\
         \n  2. run the service and a PostgreSQL in containers: \
         `docker compose -f docker/compose.yaml up`\
         \n  3. set DATABASE_URL to a PostgreSQL server you have, such as \
         postgres://user:password@host:5432/price_history",
        default_address()
    )
}

/// PostgreSQL will not run as root; refuse before anything is made on disk.
fn refuse_root() -> anyhow::Result<()> {
    if uid() == 0 {
        bail!(
            "DATABASE_URL is not set and nothing answers at {}, but a private PostgreSQL \
             cannot be started as root: PostgreSQL refuses to run as root, since a \
             compromised database server would own the machine. Run price-history as an \
             ordinary user, or set DATABASE_URL to a PostgreSQL server (or run \
             `docker compose -f docker/compose.yaml up`). Nothing was created.",
            default_address()
        );
    }
    Ok(())
}

fn uid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// A directory only this user may enter (PostgreSQL insists on it for its data).
fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("could not create {}", dir.display()))
}

/// A socket directory under the shared temporary directory may have been made by
/// someone else before us: use it only when it is this user's and closed to others.
fn ensure_only_ours(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta =
        fs::symlink_metadata(dir).with_context(|| format!("could not read {}", dir.display()))?;
    if !meta.is_dir() || meta.uid() != uid() || meta.permissions().mode() & 0o077 != 0 {
        bail!(
            "{} is not a directory only this user can enter, so the private PostgreSQL's \
             socket cannot go there: remove it, or set XDG_DATA_HOME to a shorter path",
            dir.display()
        );
    }
    Ok(())
}

fn lock_exclusive(path: &Path) -> anyhow::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("could not open {}", path.display()))?;
    file.lock()
        .with_context(|| format!("could not lock {}", path.display()))?;
    Ok(file)
}

/// Makes the data directory: `initdb` into a staging directory, settings appended, then
/// renamed into place. Called under the start lock, so a staging directory found here is
/// what an interrupted run left, and goes.
fn initdb(binaries: &Binaries, layout: &Layout) -> anyhow::Result<()> {
    let staging = layout.base.join("postgres.initdb");
    if staging.exists() {
        fs::remove_dir_all(&staging)
            .with_context(|| format!("could not remove {}", staging.display()))?;
    }
    let made = (|| {
        let output = run(Command::new(binaries.tool("initdb"))
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

fn is_running(binaries: &Binaries, layout: &Layout) -> anyhow::Result<bool> {
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

fn pg_ctl_start(binaries: &Binaries, layout: &Layout) -> anyhow::Result<()> {
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

fn pg_ctl_stop(binaries: &Binaries, layout: &Layout) -> anyhow::Result<()> {
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
fn run(command: &mut Command) -> anyhow::Result<Output> {
    use std::os::unix::process::CommandExt;
    let program = command.get_program().to_string_lossy().into_owned();
    command
        .stdin(Stdio::null())
        .process_group(0)
        .env_remove("PGDATA")
        .output()
        .with_context(|| format!("could not run {program}"))
}

/// The last lines of the server's log, for an error.
fn log_tail(log: &Path) -> String {
    let text = fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}

/// `text` as one shell word.
fn shell_quoted(text: &str) -> String {
    if text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+@%:,=".contains(c))
    {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_data_lives_under_xdg_data_home_when_absolute_else_under_home() {
        let home = Some(PathBuf::from("/home/ann"));
        assert_eq!(
            data_home(Some(PathBuf::from("/data")), home.clone()),
            Some(PathBuf::from("/data"))
        );
        assert_eq!(
            data_home(Some(PathBuf::from("relative")), home.clone()),
            Some(PathBuf::from("/home/ann/.local/share"))
        );
        assert_eq!(
            data_home(None, home),
            Some(PathBuf::from("/home/ann/.local/share"))
        );
        assert_eq!(data_home(None, Some(PathBuf::new())), None);
        assert_eq!(data_home(None, None), None);
    }

    #[test]
    fn the_socket_is_in_the_data_directory_unless_its_path_is_too_long() {
        let short = Layout::under(Path::new("/home/ann/.local/share/price-history"), 1000);
        assert_eq!(
            short.data,
            PathBuf::from("/home/ann/.local/share/price-history/postgres")
        );
        assert_eq!(short.socket_dir, short.data);
        let deep = format!("/home/{}/price-history", "d".repeat(80));
        let long = Layout::under(Path::new(&deep), 1000);
        assert_eq!(
            long.socket_dir,
            std::env::temp_dir().join("price-history-1000")
        );
        assert!(long.socket_dir.join(".s.PGSQL.5432").as_os_str().len() <= MAX_SOCKET_PATH);
    }

    #[test]
    fn versions_are_read_from_pg_ctl_and_reduced_to_what_pg_version_says() {
        assert_eq!(
            parse_version("pg_ctl (PostgreSQL) 15.14 (Debian 15.14-0+deb12u1)\n").as_deref(),
            Some("15.14")
        );
        assert_eq!(
            parse_version("pg_ctl (PostgreSQL) 17.2\n").as_deref(),
            Some("17.2")
        );
        assert_eq!(parse_version("garbage"), None);
        let major = |version: &str| {
            Binaries {
                dir: PathBuf::new(),
                version: Some(version.to_owned()),
            }
            .major()
        };
        assert_eq!(major("15.14").as_deref(), Some("15"));
        assert_eq!(major("17beta1").as_deref(), None);
        assert_eq!(major("9.6.24").as_deref(), Some("9.6"));
    }

    #[test]
    fn versioned_places_come_newest_first_and_others_are_skipped() {
        let root = std::env::temp_dir().join(format!("ph-versioned-{}", std::process::id()));
        for name in [
            "9.6",
            "15",
            "17",
            "16",
            "common",
            "postgresql@16",
            "postgresql",
        ] {
            fs::create_dir_all(root.join(name)).unwrap();
        }
        let found = versioned(&root, "", "bin");
        assert_eq!(
            found,
            ["17", "16", "15", "9.6"].map(|v| root.join(v).join("bin"))
        );
        let brew = versioned(&root, "postgresql", "bin");
        assert_eq!(
            brew,
            [
                root.join("postgresql@16").join("bin"),
                root.join("postgresql").join("bin")
            ]
        );
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn the_url_names_the_socket_directory_and_psql_gets_a_quoted_path() {
        let server = PrivateServer {
            layout: Layout::under(Path::new("/home/a b/.local/share/price-history"), 1),
            binaries: Binaries {
                dir: PathBuf::from("/usr/lib/postgresql/15/bin"),
                version: Some("15.14".to_owned()),
            },
            users: None,
            created: true,
            started: true,
        };
        let url = server.url();
        assert_eq!(
            url,
            "postgres://postgres@localhost/price_history?host=%2Fhome%2Fa+b%2F.local%2Fshare%2Fprice-history%2Fpostgres"
        );
        let options: sqlx::postgres::PgConnectOptions = url.parse().unwrap();
        assert_eq!(
            options.get_socket().map(PathBuf::as_path),
            Some(Path::new("/home/a b/.local/share/price-history/postgres"))
        );
        assert_eq!(
            server.psql_command(),
            "psql -h '/home/a b/.local/share/price-history/postgres' -U postgres price_history"
        );
        let note = server.describe();
        assert!(
            note.contains("created and started a private PostgreSQL"),
            "{note}"
        );
        assert!(
            note.contains("Set DATABASE_URL to use another server"),
            "{note}"
        );
    }

    #[test]
    fn the_process_state_is_read_after_the_name_whatever_the_name_holds() {
        assert_eq!(process_state("42 (postgres) S 1 42"), Some('S'));
        assert_eq!(process_state("42 (a) b) Z 1 42"), Some('Z'));
        assert_eq!(process_state("garbage"), None);
    }

    #[test]
    fn the_no_binaries_message_gives_the_three_ways_out() {
        let message = no_binaries_message();
        for way in [
            "apt install postgresql",
            "brew install postgresql@17",
            "docker compose -f docker/compose.yaml up",
            "set DATABASE_URL",
        ] {
            assert!(message.contains(way), "{way:?} in {message}");
        }
    }

    #[tokio::test]
    async fn a_given_url_or_one_other_than_the_default_is_used_as_it_is() {
        let (url, server) = resolve_database("postgres://x@127.0.0.1:1/db", false)
            .await
            .unwrap();
        assert_eq!(url, "postgres://x@127.0.0.1:1/db");
        assert!(server.is_none());
        let (url, server) = resolve_database(DEFAULT_DATABASE_URL, true).await.unwrap();
        assert_eq!(url, DEFAULT_DATABASE_URL);
        assert!(server.is_none());
    }
}
