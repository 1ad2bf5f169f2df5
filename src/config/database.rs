//! `DATABASE_URL`, parsed once at the edge (zero2prod's `DatabaseSettings`): the
//! connection options sqlx needs, the password to keep out of what the process quotes,
//! and the URL fit for logs. Nothing else parses the URL again.

use std::ffi::OsStr;
use std::fmt;
use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;
use url::Url;

/// The port PostgreSQL listens on when the URL names none.
pub const DEFAULT_PORT: u16 = 5432;

/// Where the service's data, job records and queue live.
#[derive(Clone)]
pub struct DatabaseUrl {
    /// The URL as given, password included: only [`DatabaseUrl::passwords`] and the
    /// redacted forms read it.
    url: Url,
    /// What sqlx connects with. PostgreSQL's notices are not asked for: they would be
    /// logged at INFO, and the only ones the service provokes are the "already exists,
    /// skipping" of every migration run at start.
    options: PgConnectOptions,
}

/// A `DATABASE_URL` that is no URL sqlx can connect with. Its message never quotes the
/// password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "DATABASE_URL {url:?} is not a valid postgres:// URL ({cause}): write it as postgres://user:password@host:5432/database"
)]
pub struct InvalidDatabaseUrl {
    /// The URL, redacted; `<unparseable url>` when it is not even a URL.
    url: String,
    cause: String,
}

impl DatabaseUrl {
    /// Parses a URL such as `postgres://user:password@host:5432/database`, or one whose
    /// `host` query parameter names a Unix socket's directory.
    pub fn parse(text: &str) -> Result<DatabaseUrl, InvalidDatabaseUrl> {
        let url = Url::parse(text).map_err(|e| InvalidDatabaseUrl {
            url: "<unparseable url>".to_owned(),
            cause: e.to_string(),
        })?;
        DatabaseUrl::from_url(url)
    }

    /// A URL already parsed (the private server's, which the service builds itself).
    pub fn from_url(url: Url) -> Result<DatabaseUrl, InvalidDatabaseUrl> {
        // sqlx reads any scheme as PostgreSQL's: `mysql://` would be waited for at start.
        if !matches!(url.scheme(), "postgres" | "postgresql") {
            return Err(InvalidDatabaseUrl {
                cause: format!("its scheme is {}:, not postgres:", url.scheme()),
                url: redacted(&url),
            });
        }
        match PgConnectOptions::from_str(url.as_str()) {
            Ok(options) => Ok(DatabaseUrl {
                options: options.options([("client_min_messages", "warning")]),
                url,
            }),
            Err(e) => Err(InvalidDatabaseUrl {
                url: redacted(&url),
                cause: e.to_string(),
            }),
        }
    }

    /// The options to connect with, to the database the URL names.
    pub fn options(&self) -> &PgConnectOptions {
        &self.options
    }

    /// The password as written in the URL and, when it differs, percent-decoded (`%40`
    /// for `@`), whether it stands before the host or in a `password` query parameter
    /// (which sqlx reads too): every form must stay out of what the process quotes.
    pub fn passwords(&self) -> Vec<String> {
        let in_query = self.url.query().into_iter().flat_map(|query| {
            query
                .split('&')
                .filter_map(|pair| pair.strip_prefix("password="))
        });
        let mut passwords = Vec::new();
        for written in self.url.password().into_iter().chain(in_query) {
            let decoded = percent_encoding::percent_decode_str(written)
                .decode_utf8_lossy()
                .into_owned();
            let form_decoded = decoded.replace('+', " ");
            for password in [decoded, written.to_owned(), form_decoded] {
                if !password.is_empty() && !passwords.contains(&password) {
                    passwords.push(password);
                }
            }
        }
        passwords
    }

    /// The host and port a TCP connection goes to, as the URL writes them
    /// (`localhost:5432` when it names none).
    pub fn tcp_address(&self) -> (String, u16) {
        (
            self.url.host_str().unwrap_or("localhost").to_owned(),
            self.url.port().unwrap_or(DEFAULT_PORT),
        )
    }
}

/// The URL with any password, before the host or in the query, replaced by `***`.
fn redacted(url: &Url) -> String {
    let mut url = url.clone();
    if url.password().is_some() {
        let _ = url.set_password(Some("***"));
    }
    if url.query_pairs().any(|(name, _)| name == "password") {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(name, value)| {
                let value = if name == "password" {
                    "***".into()
                } else {
                    value
                };
                (name.into_owned(), value.into_owned())
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
    }
    url.to_string()
}

/// The URL with any password replaced: fit for logs and error messages.
impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redacted(&self.url))
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({self})")
    }
}

impl PartialEq for DatabaseUrl {
    fn eq(&self, other: &Self) -> bool {
        self.url == other.url
    }
}

impl Eq for DatabaseUrl {}

impl FromStr for DatabaseUrl {
    type Err = InvalidDatabaseUrl;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        DatabaseUrl::parse(text)
    }
}

/// `--database-url` and `DATABASE_URL` for clap. A parser of its own rather than a
/// function: clap quotes the value it refuses from a function, password and all, while
/// the error of this one is the redacted [`InvalidDatabaseUrl`] alone.
#[derive(Debug, Clone, Copy)]
pub struct DatabaseUrlParser;

impl clap::builder::TypedValueParser for DatabaseUrlParser {
    type Value = DatabaseUrl;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<DatabaseUrl, clap::Error> {
        let refuse = |message: String| {
            clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!("{message}\n"),
            )
            .with_cmd(cmd)
        };
        let text = value
            .to_str()
            .ok_or_else(|| refuse("DATABASE_URL is not valid UTF-8".to_owned()))?;
        DatabaseUrl::parse(text).map_err(|e| refuse(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_is_hidden_as_written_and_percent_decoded_and_bad_escapes_are_kept() {
        let url = DatabaseUrl::parse("postgres://u:p%40ss%2Fw0rd@localhost/x").unwrap();
        assert_eq!(url.passwords(), ["p@ss/w0rd", "p%40ss%2Fw0rd"]);
        let url = DatabaseUrl::parse("postgres://u:100%25%zz@localhost/x").unwrap();
        assert!(url.passwords().contains(&"100%%zz".to_owned()));
        let url = DatabaseUrl::parse("postgres://u@localhost/x").unwrap();
        assert!(url.passwords().is_empty());
    }

    #[test]
    fn what_is_shown_of_a_url_never_holds_its_password() {
        let url = DatabaseUrl::parse("postgres://u:hunter2@db:5433/x").unwrap();
        assert_eq!(url.to_string(), "postgres://u:***@db:5433/x");
        assert!(!format!("{url:?}").contains("hunter2"));
        assert_eq!(url.tcp_address(), ("db".to_owned(), 5433));
        assert_eq!(url.options().get_database(), Some("x"));
        let refused =
            DatabaseUrl::parse("postgres://u:hunter2@db:notaport/x").expect_err("refused");
        assert!(!refused.to_string().contains("hunter2"), "{refused}");
        let refused = DatabaseUrl::parse("hunter2").expect_err("refused");
        assert!(!refused.to_string().contains("hunter2"), "{refused}");
    }

    #[test]
    fn a_url_of_another_database_is_refused_saying_its_scheme() {
        let refused = DatabaseUrl::parse("mysql://u:hunter2@db/x").expect_err("refused");
        let said = refused.to_string();
        assert!(
            said.contains("its scheme is mysql:, not postgres:"),
            "{said}"
        );
        assert!(!said.contains("hunter2"), "{said}");
        for scheme in ["postgres", "postgresql"] {
            assert!(DatabaseUrl::parse(&format!("{scheme}://u@db/x")).is_ok());
        }
    }

    #[test]
    fn a_password_in_the_query_is_hidden_too() {
        let url =
            DatabaseUrl::parse("postgres://u@db/x?sslmode=disable&password=hun%40ter+2").unwrap();
        assert_eq!(url.options().get_database(), Some("x"));
        assert_eq!(
            url.to_string(),
            "postgres://u@db/x?sslmode=disable&password=***"
        );
        assert!(url.passwords().contains(&"hun@ter 2".to_owned()));
        assert!(url.passwords().contains(&"hun%40ter+2".to_owned()));
        let refused =
            DatabaseUrl::parse("postgres://u@db:notaport/x?password=hunter2").expect_err("refused");
        assert!(!refused.to_string().contains("hunter2"), "{refused}");
    }
}
