//! SASL PLAIN (RFC 4616): `[authzid] NUL authcid NUL passwd` in one message.

use crate::AuthError;

const PLAIN: &str = "PLAIN";
/// Longest PLAIN message accepted.
const PLAIN_BYTES_MAX: usize = 1_024;

/// A PLAIN login. Its `Debug` form leaves the password out.
#[derive(Clone, PartialEq, Eq)]
pub struct PlainLogin {
    /// The user.
    pub username: String,
    /// The password.
    pub password: String,
}

impl std::fmt::Debug for PlainLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlainLogin")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// Parses a PLAIN message. An authorization identity other than the user is refused.
pub fn parse_plain(message: &[u8]) -> Result<PlainLogin, AuthError> {
    let malformed = |reason| AuthError::Malformed {
        mechanism: PLAIN,
        reason,
    };
    if message.len() > PLAIN_BYTES_MAX {
        return Err(AuthError::TooLarge {
            mechanism: PLAIN,
            len_bytes: message.len(),
            limit_bytes: PLAIN_BYTES_MAX,
        });
    }
    let text = std::str::from_utf8(message).map_err(|_| malformed("not UTF-8"))?;
    let mut parts = text.split('\0');
    let (Some(authzid), Some(username), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed("expected authzid NUL user NUL password"));
    };
    if username.is_empty() {
        return Err(malformed("empty user name"));
    }
    if !authzid.is_empty() && authzid != username {
        return Err(AuthError::Unsupported {
            mechanism: PLAIN,
            what: "an authorization identity other than the user",
        });
    }
    Ok(PlainLogin {
        username: username.to_string(),
        password: password.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_with_and_without_authzid() {
        let l = parse_plain(b"\0alice\0secret").expect("parses");
        assert_eq!((l.username.as_str(), l.password.as_str()), ("alice", "secret"));
        assert_eq!(parse_plain(b"alice\0alice\0s").expect("parses").username, "alice");
        assert!(!format!("{l:?}").contains("secret"));
    }

    #[test]
    fn refuses_what_is_not_plain() {
        for bad in [
            &b""[..],
            b"alice",
            b"\0alice",
            b"\0\0pw",
            b"a\0b\0c\0d",
            b"\xff\0a\0b",
        ] {
            assert!(parse_plain(bad).is_err(), "{bad:?}");
        }
        assert!(matches!(
            parse_plain(b"bob\0alice\0pw"),
            Err(AuthError::Unsupported { .. })
        ));
        assert!(matches!(
            parse_plain(&[b'a'; 2_000]),
            Err(AuthError::TooLarge { .. })
        ));
    }
}
