//! Finding PostgreSQL's programs: in `PATH` and the places packages put them, of the
//! version that made the data directory when there is one.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::bail;

use super::default_address;
use super::layout::Layout;

/// PostgreSQL's own binaries, in one directory.
#[derive(Debug, Clone)]
pub(super) struct Binaries {
    pub dir: PathBuf,
    /// `pg_ctl --version`'s version, such as `15.14`, when it could be read.
    pub version: Option<String>,
}

/// The programs a private server needs, all in one directory.
const TOOLS: [&str; 3] = ["initdb", "pg_ctl", "postgres"];

impl Binaries {
    /// The first directory holding PostgreSQL's programs: in `PATH`, then the usual
    /// places, the newest version first. With a data directory made by version
    /// `made_by`, only that version can run it.
    pub fn find(made_by: Option<&str>, layout: &Layout) -> anyhow::Result<Self> {
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

    pub fn tool(&self, name: &str) -> PathBuf {
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

    pub fn version_label(&self) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::assert_says;

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
    fn the_no_binaries_message_gives_the_three_ways_out() {
        assert_says(
            &no_binaries_message(),
            &[
                "apt install postgresql",
                "brew install postgresql@17",
                "docker compose -f docker/compose.yaml up",
                "set DATABASE_URL",
            ],
        );
    }
}
