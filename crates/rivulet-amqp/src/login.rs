//! Checking the credentials of `connection.start-ok` against the broker's users, when the
//! broker requires a login: PLAIN (`\0user\0password`), RabbitMQ's AMQPLAIN (a field
//! table without its length: `LOGIN` and `PASSWORD` long strings), and EXTERNAL over TLS
//! with a client certificate (the certificate subject's common name is the user, as
//! RabbitMQ's `rabbitmq_auth_mechanism_ssl` does by default).

use rivulet_auth::parse_plain;
use rivulet_broker::Broker;

use crate::fault::{self, Fault};

/// Longest AMQPLAIN response accepted.
const AMQPLAIN_BYTES_MAX: usize = 1_024;

/// The user and password of a start-ok response.
fn credentials(mechanism: &str, response: &[u8]) -> Option<(String, String)> {
    match mechanism {
        "PLAIN" => parse_plain(response).ok().map(|l| (l.username, l.password)),
        "AMQPLAIN" => amqplain(response),
        _ => None,
    }
}

/// Parses AMQPLAIN's table entries (short-string key, `S`, u32 length, bytes).
fn amqplain(mut rest: &[u8]) -> Option<(String, String)> {
    if rest.len() > AMQPLAIN_BYTES_MAX {
        return None;
    }
    let (mut login, mut password) = (None, None);
    // Each pass consumes at least two bytes or stops: bounded by the length.
    while !rest.is_empty() {
        let key_len = usize::from(*rest.first()?);
        let key = rest.get(1..1 + key_len)?;
        let kind = *rest.get(1 + key_len)?;
        let len_at = 2 + key_len;
        let len_bytes: [u8; 4] = rest.get(len_at..len_at + 4)?.try_into().ok()?;
        let len = usize::try_from(u32::from_be_bytes(len_bytes)).ok()?;
        let value = rest.get(len_at + 4..len_at + 4 + len)?;
        if kind != b'S' {
            return None;
        }
        let text = String::from_utf8(value.to_vec()).ok()?;
        match key {
            b"LOGIN" => login = Some(text),
            b"PASSWORD" => password = Some(text),
            _ => {}
        }
        rest = &rest[len_at + 4 + len..];
    }
    Some((login?, password?))
}

/// The mechanisms `connection.start` offers: EXTERNAL too when the client presented a
/// certificate.
pub fn mechanisms(certificate: bool) -> String {
    if certificate {
        "PLAIN AMQPLAIN EXTERNAL".to_string()
    } else {
        "PLAIN AMQPLAIN".to_string()
    }
}

/// What a client's `connection.start-ok` presents.
#[derive(Debug, Clone, Copy)]
pub struct Login<'a> {
    /// The client's address.
    pub host: &'a str,
    /// The mechanism it chose.
    pub mechanism: &'a str,
    /// The mechanism's response.
    pub response: &'a [u8],
    /// The common name of its verified client certificate, if any.
    pub certificate_user: Option<&'a str>,
}

/// Checks a start-ok's credentials when the broker requires a login and returns the user;
/// 403 ACCESS_REFUSED
/// (RabbitMQ's text) when they are wrong, after too many failures from `host`, or when
/// the mechanism is not offered.
pub fn check(broker: &Broker, login: Login<'_>) -> Result<Option<String>, Fault> {
    let Login {
        host,
        mechanism,
        response,
        certificate_user,
    } = login;
    if !broker.auth_required() {
        return Ok(None);
    }
    let refused = || {
        Fault::connection(
            fault::ACCESS_REFUSED,
            format!("Login was refused using authentication mechanism {mechanism}. For details see the broker logfile."),
        )
    };
    if !broker.login_allowed(host) {
        tracing::warn!(%host, "AMQP: login refused after too many failures");
        return Err(refused());
    }
    if mechanism == "EXTERNAL" {
        let Some(user) = certificate_user else {
            broker.login_failed(host, "amqp", "");
            return Err(refused());
        };
        tracing::debug!(%user, "AMQP client logged in with its certificate");
        return Ok(Some(user.to_string()));
    }
    let Some((user, password)) = credentials(mechanism, response) else {
        broker.login_failed(host, "amqp", "");
        return Err(refused());
    };
    if !broker.verify_password(&user, &password) {
        broker.login_failed(host, "amqp", &user);
        return Err(refused());
    }
    tracing::debug!(%user, "AMQP client logged in");
    Ok(Some(user))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str, value: &str) -> Vec<u8> {
        let mut out = vec![key.len() as u8];
        out.extend_from_slice(key.as_bytes());
        out.push(b'S');
        out.extend_from_slice(&(value.len() as u32).to_be_bytes());
        out.extend_from_slice(value.as_bytes());
        out
    }

    #[test]
    fn amqplain_and_plain_responses_parse() {
        let mut table = entry("LOGIN", "guest");
        table.extend(entry("PASSWORD", "pw"));
        assert_eq!(
            credentials("AMQPLAIN", &table),
            Some(("guest".into(), "pw".into()))
        );
        assert_eq!(
            credentials("PLAIN", b"\0guest\0pw"),
            Some(("guest".into(), "pw".into()))
        );
        assert_eq!(credentials("EXTERNAL", b""), None);
        assert_eq!(credentials("AMQPLAIN", &table[..table.len() - 1]), None);
        assert_eq!(credentials("AMQPLAIN", &entry("LOGIN", "guest")), None);
    }
}
