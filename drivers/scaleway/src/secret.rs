//! The Scaleway secret key: a type that never shows itself.

use std::fmt;

/// A Scaleway secret key (the `X-Auth-Token`). `Debug` and `Display` print
/// `<redacted>`; the only way to the text is [`SecretKey::expose`], used in
/// one place: the request header.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey(String);

impl SecretKey {
    /// Takes a secret key; it must be a UUID (as Scaleway issues them).
    pub fn new(value: &str) -> Result<Self, String> {
        let value = value.trim();
        if is_uuid(value) {
            Ok(Self(value.to_ascii_lowercase()))
        } else {
            // Never echo the value: a mistyped key is still mostly a key.
            Err(format!(
                "the secret key is not a UUID ({} characters; Scaleway secret keys look like \
                 xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)",
                value.chars().count()
            ))
        }
    }

    /// The key itself, for the `X-Auth-Token` header only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

impl fmt::Display for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Whether `s` is a UUID in canonical text form (`xxxxxxxx-xxxx-...`, the
/// only form of 36 characters the `uuid` crate reads).
pub fn is_uuid(s: &str) -> bool {
    s.len() == 36 && uuid::Uuid::try_parse(s).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "11111111-2222-4333-8444-555555555555";

    #[test]
    fn never_prints_itself() {
        let key = SecretKey::new(KEY).unwrap();
        assert_eq!(format!("{key}"), "<redacted>");
        assert_eq!(format!("{key:?}"), "SecretKey(<redacted>)");
        assert_eq!(format!("{:?}", Some(&key)), "Some(SecretKey(<redacted>))");
        assert_eq!(key.expose(), KEY);
    }

    #[test]
    fn a_bad_key_is_not_echoed() {
        let err = SecretKey::new("11111111-2222-4333-8444-55555555555X").unwrap_err();
        assert!(!err.contains("1111"), "{err}");
        assert!(err.contains("not a UUID"));
    }
}
