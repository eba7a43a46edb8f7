//! The server side of a SCRAM exchange (RFC 5802): client-first, server-first,
//! client-final, server-final.

use std::sync::OnceLock;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::credential::{constant_time_eq, Credential, Mechanism, ITERATIONS_MIN};
use crate::AuthError;

/// Longest SCRAM message accepted.
pub const MESSAGE_BYTES_MAX: usize = 4_096;
/// Longest user name accepted.
const USERNAME_BYTES_MAX: usize = 255;
/// Random bytes of the server's part of the nonce.
const SERVER_NONCE_BYTES: usize = 24;

/// A parsed client-first message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFirst {
    /// The user (`n=`, with `=2C` and `=3D` decoded).
    pub username: String,
    nonce: String,
    gs2_header: String,
    bare: String,
}

/// An exchange after the server-first message: waiting for client-final.
#[derive(Debug)]
pub struct ScramExchange {
    mechanism: Mechanism,
    username: String,
    /// `None` for an unknown user: the exchange goes on with a made-up salt and fails at
    /// the proof, so a client cannot tell unknown users from wrong passwords.
    credential: Option<Credential>,
    gs2_header: String,
    nonce: String,
    client_first_bare: String,
    server_first: String,
}

fn malformed(mechanism: Mechanism, reason: &'static str) -> AuthError {
    AuthError::Malformed {
        mechanism: mechanism.name(),
        reason,
    }
}

fn text(mechanism: Mechanism, message: &[u8]) -> Result<&str, AuthError> {
    if message.len() > MESSAGE_BYTES_MAX {
        return Err(AuthError::TooLarge {
            mechanism: mechanism.name(),
            len_bytes: message.len(),
            limit_bytes: MESSAGE_BYTES_MAX,
        });
    }
    std::str::from_utf8(message).map_err(|_| malformed(mechanism, "not UTF-8"))
}

/// Decodes a `saslname`: `=2C` is a comma, `=3D` an equals sign, any other `=` an error.
fn decode_saslname(mechanism: Mechanism, name: &str) -> Result<String, AuthError> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(at) = rest.find('=') {
        out.push_str(&rest[..at]);
        let escape = rest.get(at..at + 3);
        match escape {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err(malformed(mechanism, "bad escape in the user name")),
        }
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    if out.is_empty() || out.len() > USERNAME_BYTES_MAX {
        return Err(malformed(mechanism, "the user name is empty or too long"));
    }
    Ok(out)
}

fn valid_nonce(nonce: &str) -> bool {
    !nonce.is_empty() && nonce.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

impl ClientFirst {
    /// Parses `gs2-header client-first-bare`.
    pub fn parse(mechanism: Mechanism, message: &[u8]) -> Result<ClientFirst, AuthError> {
        let text = text(mechanism, message)?;
        let mut parts = text.splitn(3, ',');
        let (Some(cbind), Some(authzid_raw), Some(bare)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(malformed(
                mechanism,
                "expected a GS2 header and client-first-bare",
            ));
        };
        match cbind {
            "n" | "y" => {}
            c if c.starts_with("p=") => {
                return Err(AuthError::Unsupported {
                    mechanism: mechanism.name(),
                    what: "channel binding",
                })
            }
            _ => return Err(malformed(mechanism, "bad channel binding flag")),
        }
        let authzid = match authzid_raw {
            "" => None,
            a => Some(decode_saslname(
                mechanism,
                a.strip_prefix("a=")
                    .ok_or_else(|| malformed(mechanism, "bad authorization identity"))?,
            )?),
        };
        let mut attrs = bare.split(',');
        let user = attrs.next().unwrap_or("");
        if user.starts_with("m=") {
            return Err(AuthError::Unsupported {
                mechanism: mechanism.name(),
                what: "mandatory extensions",
            });
        }
        let username = decode_saslname(
            mechanism,
            user.strip_prefix("n=")
                .ok_or_else(|| malformed(mechanism, "expected n=user"))?,
        )?;
        let nonce = attrs
            .next()
            .and_then(|r| r.strip_prefix("r="))
            .filter(|n| valid_nonce(n))
            .ok_or_else(|| malformed(mechanism, "expected r=nonce"))?;
        for extension in attrs {
            if extension.starts_with("tokenauth=") {
                return Err(AuthError::Unsupported {
                    mechanism: mechanism.name(),
                    what: "delegation tokens",
                });
            }
        }
        if authzid.as_ref().is_some_and(|a| *a != username) {
            return Err(AuthError::Unsupported {
                mechanism: mechanism.name(),
                what: "an authorization identity other than the user",
            });
        }
        Ok(ClientFirst {
            username,
            nonce: nonce.to_string(),
            gs2_header: format!("{cbind},{authzid_raw},"),
            bare: bare.to_string(),
        })
    }
}

/// A salt for unknown users: the same for a name within one process, unrelated to any
/// real salt.
fn made_up_salt(mechanism: Mechanism, username: &str) -> Vec<u8> {
    static KEY: OnceLock<Vec<u8>> = OnceLock::new();
    let key = KEY.get_or_init(|| {
        let mut k = vec![0u8; 32];
        // Without randomness the salt is still unrelated to any real one.
        let _ = crate::random_bytes(&mut k);
        k
    });
    mechanism.hmac_of(key, username.as_bytes())[..crate::SALT_BYTES.min(mechanism.key_bytes())].to_vec()
}

impl ScramExchange {
    /// Answers a client-first message: returns the exchange and the server-first message.
    /// `credential` is the user's for this mechanism, `None` when there is none.
    pub fn start(
        mechanism: Mechanism,
        first: ClientFirst,
        credential: Option<Credential>,
    ) -> Result<(ScramExchange, Vec<u8>), AuthError> {
        let mut random = [0u8; SERVER_NONCE_BYTES];
        crate::random_bytes(&mut random)?;
        let server_nonce = STANDARD.encode(random).replace(',', "-");
        Ok(ScramExchange::start_with_nonce(
            mechanism,
            first,
            credential,
            &server_nonce,
        ))
    }

    fn start_with_nonce(
        mechanism: Mechanism,
        first: ClientFirst,
        credential: Option<Credential>,
        server_nonce: &str,
    ) -> (ScramExchange, Vec<u8>) {
        let credential = credential.filter(|c| c.mechanism == mechanism);
        let (salt, iterations) = match &credential {
            Some(c) => (c.salt.clone(), c.iterations),
            None => (made_up_salt(mechanism, &first.username), ITERATIONS_MIN),
        };
        let nonce = format!("{}{server_nonce}", first.nonce);
        let server_first = format!("r={nonce},s={},i={iterations}", STANDARD.encode(salt));
        let exchange = ScramExchange {
            mechanism,
            username: first.username,
            credential,
            gs2_header: first.gs2_header,
            nonce,
            client_first_bare: first.bare,
            server_first: server_first.clone(),
        };
        (exchange, server_first.into_bytes())
    }

    /// The mechanism of the exchange.
    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    /// The user the exchange is for.
    pub fn username(&self) -> &str {
        &self.username
    }

    /// Checks client-final; returns the server-final message (`v=` signature) when the
    /// proof is right.
    pub fn finish(self, message: &[u8]) -> Result<Vec<u8>, AuthError> {
        let m = self.mechanism;
        let text = text(m, message)?;
        let (without_proof, proof) = text
            .rsplit_once(",p=")
            .ok_or_else(|| malformed(m, "expected ,p=proof at the end"))?;
        let mut attrs = without_proof.split(',');
        let binding = attrs
            .next()
            .and_then(|c| c.strip_prefix("c="))
            .ok_or_else(|| malformed(m, "expected c=binding"))?;
        let nonce = attrs
            .next()
            .and_then(|r| r.strip_prefix("r="))
            .ok_or_else(|| malformed(m, "expected r=nonce"))?;
        if binding != STANDARD.encode(self.gs2_header.as_bytes()) {
            return Err(malformed(m, "the channel binding does not repeat the GS2 header"));
        }
        // RFC 5802 wants the nonce repeated exactly; librdkafka sends its client nonce
        // again in front of it, and Kafka accepts a nonce that ends with the one sent.
        if !nonce.ends_with(&self.nonce) {
            return Err(malformed(m, "the nonce does not end with the one sent"));
        }
        let proof = STANDARD
            .decode(proof)
            .map_err(|_| malformed(m, "the proof is not base64"))?;
        let Some(credential) = self.credential else {
            return Err(AuthError::InvalidCredentials);
        };
        if proof.len() != m.key_bytes() {
            return Err(AuthError::InvalidCredentials);
        }
        let auth_message = format!("{},{},{without_proof}", self.client_first_bare, self.server_first);
        let signature = m.hmac_of(&credential.stored_key, auth_message.as_bytes());
        let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(p, s)| p ^ s).collect();
        if !constant_time_eq(&m.hash(&client_key), &credential.stored_key) {
            return Err(AuthError::InvalidCredentials);
        }
        let server_signature = m.hmac_of(&credential.server_key, auth_message.as_bytes());
        Ok(format!("v={}", STANDARD.encode(server_signature)).into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// RFC 7677's example exchange (user "user", password "pencil").
    #[test]
    fn rfc_7677_exchange() {
        let m = Mechanism::ScramSha256;
        let salt = STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==").expect("salt");
        let salted = m.salted_password(b"pencil", &salt, 4096).expect("salted");
        let credential = Credential::from_salted_password(m, &salted, salt, 4096).expect("credential");
        let first = ClientFirst::parse(m, b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO").expect("parses");
        assert_eq!(first.username, "user");
        let (exchange, server_first) =
            ScramExchange::start_with_nonce(m, first, Some(credential), "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0");
        assert_eq!(
            server_first,
            b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
        );
        let final_message = b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
        let server_final = exchange.finish(final_message).expect("the proof is right");
        assert_eq!(server_final, b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
    }

    /// A client computing its proof the RFC 5802 way, for the other mechanism and wrong
    /// passwords.
    fn client_final(m: Mechanism, password: &str, first_bare: &str, server_first: &str) -> String {
        let mut parts = server_first.split(',');
        let nonce = parts.next().and_then(|r| r.strip_prefix("r=")).expect("nonce");
        let salt = STANDARD
            .decode(parts.next().and_then(|s| s.strip_prefix("s=")).expect("salt"))
            .expect("base64");
        let iterations: u32 = parts
            .next()
            .and_then(|i| i.strip_prefix("i="))
            .and_then(|i| i.parse().ok())
            .expect("iterations");
        let salted = m
            .salted_password(password.as_bytes(), &salt, iterations)
            .expect("salted");
        let client_key = m.hmac_of(&salted, b"Client Key");
        let stored = m.hash(&client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let auth = format!("{first_bare},{server_first},{without_proof}");
        let signature = m.hmac_of(&stored, auth.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(&signature).map(|(k, s)| k ^ s).collect();
        format!("{without_proof},p={}", STANDARD.encode(proof))
    }

    fn run(
        m: Mechanism,
        credential: Option<Credential>,
        user: &str,
        password: &str,
    ) -> Result<Vec<u8>, AuthError> {
        let bare = format!("n={user},r=clientnonce123");
        let first = ClientFirst::parse(m, format!("n,,{bare}").as_bytes())?;
        let (exchange, server_first) = ScramExchange::start(m, first, credential)?;
        let server_first = String::from_utf8(server_first).expect("utf-8");
        exchange.finish(client_final(m, password, &bare, &server_first).as_bytes())
    }

    #[test]
    fn sha_512_logins_succeed_and_wrong_passwords_and_unknown_users_fail_alike() {
        let m = Mechanism::ScramSha512;
        let c = Credential::new(m, "s3cret", 4096).expect("credential");
        assert!(run(m, Some(c.clone()), "alice", "s3cret").is_ok());
        assert_eq!(
            run(m, Some(c), "alice", "wrong"),
            Err(AuthError::InvalidCredentials)
        );
        assert_eq!(
            run(m, None, "nobody", "s3cret"),
            Err(AuthError::InvalidCredentials)
        );
        let other = Credential::new(Mechanism::ScramSha256, "s3cret", 4096).expect("credential");
        assert_eq!(
            run(m, Some(other), "alice", "s3cret"),
            Err(AuthError::InvalidCredentials),
            "a credential of another mechanism does not count"
        );
    }

    #[test]
    fn user_names_are_unescaped_and_bad_messages_refused() {
        let m = Mechanism::ScramSha256;
        let f = ClientFirst::parse(m, b"n,,n=a=2Cb=3Dc,r=xyz").expect("parses");
        assert_eq!(f.username, "a,b=c");
        for bad in [
            &b""[..],
            b"n,,",
            b"x,,n=u,r=n",
            b"n,,n=,r=abc",
            b"n,,n=u=2,r=abc",
            b"n,,n=u",
            b"n,,n=u,r=",
            b"n,,u=x,r=abc",
        ] {
            assert!(
                matches!(ClientFirst::parse(m, bad), Err(AuthError::Malformed { .. })),
                "{bad:?}"
            );
        }
        for unsupported in [
            &b"p=tls-unique,,n=u,r=a"[..],
            b"n,a=other,n=u,r=a",
            b"n,,m=x,n=u,r=a",
            b"n,,n=u,r=a,tokenauth=true",
        ] {
            assert!(
                matches!(
                    ClientFirst::parse(m, unsupported),
                    Err(AuthError::Unsupported { .. })
                ),
                "{unsupported:?}"
            );
        }
        assert!(ClientFirst::parse(m, b"n,a=u,n=u,r=a").is_ok());
    }

    #[test]
    fn a_final_message_with_another_nonce_or_binding_is_refused() {
        let m = Mechanism::ScramSha256;
        let c = Credential::new(m, "pw", 4096).expect("credential");
        let first = ClientFirst::parse(m, b"n,,n=u,r=abc").expect("parses");
        let (exchange, _) = ScramExchange::start_with_nonce(m, first.clone(), Some(c.clone()), "SRV");
        assert!(matches!(
            exchange.finish(b"c=biws,r=abcOTHER,p=AAAA"),
            Err(AuthError::Malformed { .. })
        ));
        let (exchange, _) = ScramExchange::start_with_nonce(m, first.clone(), Some(c.clone()), "SRV");
        assert!(matches!(
            exchange.finish(b"c=biws,r=abcSR,p=AAAA"),
            Err(AuthError::Malformed { .. })
        ));
        let (exchange, _) = ScramExchange::start_with_nonce(m, first.clone(), Some(c.clone()), "SRV");
        assert!(matches!(
            exchange.finish(b"c=eSws,r=abcSRV,p=AAAA"),
            Err(AuthError::Malformed { .. })
        ));
        let (exchange, _) = ScramExchange::start_with_nonce(m, first, Some(c), "SRV");
        assert_eq!(
            exchange.finish(b"c=biws,r=abcSRV,p=AAAA"),
            Err(AuthError::InvalidCredentials)
        );
    }

    proptest! {
        /// Any bytes as client-first or client-final: an answer or an error, never a panic.
        #[test]
        fn arbitrary_messages_never_panic(first in prop::collection::vec(any::<u8>(), 0..200), last in prop::collection::vec(any::<u8>(), 0..200)) {
            let m = Mechanism::ScramSha256;
            if let Ok(f) = ClientFirst::parse(m, &first) {
                let (exchange, _) = ScramExchange::start_with_nonce(m, f, None, "n");
                prop_assert!(exchange.finish(&last).is_err());
            }
        }
    }
}
