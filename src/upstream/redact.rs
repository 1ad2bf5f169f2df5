//! Keeps secrets out of what CoinGecko's answers are turned into.
//!
//! An error body is quoted in the job's `error_message`, in the queue's `last_result`
//! and in log lines. A misbehaving upstream (or a proxy in front of it) may echo the
//! request back, API key included, so every quoted body, URL or transport error passes
//! through a [`Redactor`] first: the key, and any other secret the process holds
//! (`API_TOKEN`, the database password), become `***`.

use secrecy::{ExposeSecret, SecretString};

/// What a secret is replaced with.
pub const MASK: &str = "***";

/// The secrets to remove, each in every form a body could carry it: as is,
/// percent-encoded (a URL echoed back) and JSON-escaped.
#[derive(Clone, Default)]
pub struct Redactor {
    /// Longest first, so that a secret containing another is masked whole.
    forms: Vec<SecretString>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Redactor({} forms)", self.forms.len())
    }
}

impl Redactor {
    /// A redactor for these secrets; empty ones are ignored.
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a str>) -> Self {
        let mut redactor = Self::default();
        for secret in secrets {
            redactor.add(secret);
        }
        redactor
    }

    /// Adds a secret (and its trimmed form, since the key is sent trimmed); a blank one
    /// is no secret and is ignored.
    pub fn add(&mut self, secret: &str) {
        if secret.trim().is_empty() {
            return;
        }
        let mut forms: Vec<String> = Vec::new();
        for secret in [secret, secret.trim()] {
            if secret.is_empty() {
                continue;
            }
            forms.push(secret.to_owned());
            forms.push(url::form_urlencoded::byte_serialize(secret.as_bytes()).collect());
            forms.push(percent_encoding_of(secret).unwrap_or_else(|| secret.to_owned()));
            if let Ok(json) = serde_json::to_string(secret) {
                forms.push(json[1..json.len() - 1].to_owned());
            }
        }
        for form in forms {
            if !form.is_empty() && !self.forms.iter().any(|f| f.expose_secret() == form) {
                self.forms.push(SecretString::from(form));
            }
        }
        self.forms
            .sort_by_key(|form| std::cmp::Reverse(form.expose_secret().len()));
    }

    /// `text` with every form of every secret replaced by [`MASK`].
    pub fn apply(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for form in &self.forms {
            let form = form.expose_secret();
            if text.contains(form) {
                text = text.replace(form, MASK);
            }
        }
        text
    }

    /// Like [`apply`](Self::apply), on bytes read from the network.
    pub fn apply_bytes(&self, body: &[u8]) -> Vec<u8> {
        if self.forms.is_empty() {
            return body.to_vec();
        }
        self.apply(&String::from_utf8_lossy(body)).into_bytes()
    }
}

/// Every byte outside `A-Z a-z 0-9 - . _ ~` as `%XX`, as a URL path or query carries it;
/// `None` when that changes nothing.
fn percent_encoding_of(secret: &str) -> Option<String> {
    let encoded: String = secret
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    (encoded != secret).then_some(encoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_of_a_secret_is_masked() {
        let redactor = Redactor::new(["CG-a+b/c\"d", "tok3n-xyz"]);
        let text = r#"raw CG-a+b/c"d, query CG-a%2Bb%2Fc%22d, form CG-a%2Bb%2Fc%22d, json CG-a+b/c\"d, token tok3n-xyz"#;
        let masked = redactor.apply(text);
        assert!(!masked.contains("CG-a"), "{masked}");
        assert!(!masked.contains("tok3n"), "{masked}");
        assert_eq!(masked.matches(MASK).count(), 5, "{masked}");
    }

    #[test]
    fn a_key_configured_with_spaces_is_masked_as_sent() {
        let redactor = Redactor::new(["  CG-key  "]);
        assert_eq!(redactor.apply("bad key CG-key!"), "bad key ***!");
    }

    #[test]
    fn without_secrets_nothing_changes() {
        let redactor = Redactor::new(["", "   "]);
        assert_eq!(redactor.apply("nothing secret"), "nothing secret");
        assert_eq!(redactor.apply_bytes(b"\xff bytes"), b"\xff bytes".to_vec());
    }

    #[test]
    fn debug_shows_no_secret() {
        let shown = format!("{:?}", Redactor::new(["CG-key"]));
        assert!(!shown.contains("CG-key"), "{shown}");
    }
}
