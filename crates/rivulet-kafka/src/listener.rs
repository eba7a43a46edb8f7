//! Kafka's listener security protocols: each listen address may speak plain TCP or TLS,
//! with or without SASL, so a broker can offer `SASL_SSL` to the network and `PLAINTEXT`
//! on loopback at once.

/// How one listener secures its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityProtocol {
    /// Plain TCP, no login: with logins on, clients are the user `ANONYMOUS`.
    Plaintext,
    /// TLS, no SASL: with logins on, a client certificate's common name is the user,
    /// otherwise `ANONYMOUS`.
    Ssl,
    /// Plain TCP with a SASL login.
    SaslPlaintext,
    /// TLS with a SASL login.
    SaslSsl,
}

/// The user of connections on a listener without SASL that present no certificate
/// (Kafka's `User:ANONYMOUS`).
pub const ANONYMOUS: &str = "ANONYMOUS";

impl SecurityProtocol {
    /// Every protocol, as Kafka names them.
    pub const ALL: [SecurityProtocol; 4] = [
        SecurityProtocol::Plaintext,
        SecurityProtocol::Ssl,
        SecurityProtocol::SaslPlaintext,
        SecurityProtocol::SaslSsl,
    ];

    /// Kafka's name (`SASL_SSL`).
    pub fn name(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }

    /// Parses Kafka's name, in any case.
    pub fn parse(text: &str) -> Option<SecurityProtocol> {
        Self::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(text))
    }

    /// The protocol of a listener given no explicit one: TLS when the broker has a
    /// certificate, SASL when it requires logins.
    pub fn default_for(tls: bool, sasl: bool) -> SecurityProtocol {
        match (tls, sasl) {
            (false, false) => SecurityProtocol::Plaintext,
            (true, false) => SecurityProtocol::Ssl,
            (false, true) => SecurityProtocol::SaslPlaintext,
            (true, true) => SecurityProtocol::SaslSsl,
        }
    }

    /// True when connections start with a TLS handshake.
    pub fn tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    /// True when clients log in with SASL.
    pub fn sasl(self) -> bool {
        matches!(self, SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl)
    }
}

impl std::fmt::Display for SecurityProtocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_defaults_follow_the_settings() {
        for p in SecurityProtocol::ALL {
            assert_eq!(SecurityProtocol::parse(p.name()), Some(p));
            assert_eq!(SecurityProtocol::default_for(p.tls(), p.sasl()), p);
        }
        assert_eq!(
            SecurityProtocol::parse("sasl_ssl"),
            Some(SecurityProtocol::SaslSsl)
        );
        assert_eq!(SecurityProtocol::parse("TLS"), None);
    }
}
