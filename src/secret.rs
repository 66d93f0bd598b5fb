//! A string that never prints: configuration secrets and plaintext credentials travel in it.

use std::fmt;

use serde::{Deserialize, Deserializer};

#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The plaintext, for the one place that must use it (signing, encrypting).
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.trim().is_empty()
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretString([redacted])")
    }
}

impl<'de> Deserialize<'de> for SecretString {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self)
    }
}

/// How a secret is shown back: never whole; the last four characters only when the value is
/// long enough that four characters give nothing useful away.
pub fn mask(secret: &str) -> String {
    let count = secret.chars().count();
    if count >= 16 {
        let tail: String = secret.chars().skip(count - 4).collect();
        format!("****{tail}")
    } else {
        "****".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_the_value() {
        let secret = SecretString::new("shpat_live_value");
        assert!(!format!("{secret:?}").contains("shpat"));
    }

    #[test]
    fn masks_show_at_most_the_last_four_characters() {
        assert_eq!(mask("shpat_0123456789abcdef"), "****cdef");
        assert_eq!(mask("short"), "****");
        assert_eq!(mask(""), "****");
        assert_eq!(mask("ééééééééééééééé密钥"), "****éé密钥");
    }
}
