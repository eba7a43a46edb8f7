//! SASL on a Kafka connection: SaslHandshake (v1) names the mechanism, then
//! SaslAuthenticate carries PLAIN's one message or SCRAM's two round trips. Until the
//! client has authenticated, only ApiVersions and these two are served; anything else,
//! or any request after a failed login, closes the connection, as Kafka does.

use kafka_protocol::messages::{
    ApiKey, RequestKind, ResponseKind, SaslAuthenticateRequest, SaslAuthenticateResponse,
    SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;
use rivulet_auth::{parse_plain, AuthError, ClientFirst, Mechanism, ScramExchange};
use rivulet_broker::Broker;

use crate::errors as ec;
use crate::listener::ANONYMOUS;
use crate::ProtocolError;

/// Largest request a connection may send before it logged in (Kafka's
/// `sasl.server.max.receive.size`): an unauthenticated client cannot make the broker
/// buffer large frames.
pub const UNAUTHENTICATED_REQUEST_BYTES_MAX: usize = 512 * 1024;

/// The mechanisms offered, in the order SaslHandshake lists them.
pub const MECHANISMS: [&str; 3] = ["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"];

/// A connection's login state.
#[derive(Debug)]
pub enum SaslState {
    /// The broker requires no login: SASL requests are answered with errors.
    NotRequired,
    /// Waiting for SaslHandshake.
    Start,
    /// PLAIN chosen: waiting for its message.
    Plain,
    /// A SCRAM mechanism chosen: waiting for client-first.
    ScramFirst(Mechanism),
    /// Waiting for client-final.
    ScramFinal(Box<ScramExchange>),
    /// Logged in as this user.
    Authenticated(String),
    /// Identified by a client certificate's common name; the client may still log in
    /// with SASL, which then names the user instead.
    Certificate(String),
    /// A listener without SASL: the user is the certificate's common name, or
    /// [`ANONYMOUS`]; SASL requests are refused.
    Listener(String),
    /// The login failed: the next request closes the connection.
    Failed,
}

impl SaslState {
    /// The state of a new connection on a listener with or without `sasl`;
    /// `certificate_user` is the common name of the client certificate the TLS handshake
    /// verified, if any.
    pub fn new(broker: &Broker, sasl: bool, certificate_user: Option<String>) -> SaslState {
        match (broker.auth_required(), sasl, certificate_user) {
            (false, _, _) => SaslState::NotRequired,
            (true, false, user) => SaslState::Listener(user.unwrap_or_else(|| ANONYMOUS.to_string())),
            (true, true, Some(user)) => {
                tracing::debug!(%user, "Kafka client identified by its certificate");
                SaslState::Certificate(user)
            }
            (true, true, None) => SaslState::Start,
        }
    }

    /// The largest request the connection may send now.
    pub fn request_bytes_max(&self, configured: usize) -> usize {
        match self {
            SaslState::NotRequired
            | SaslState::Authenticated(_)
            | SaslState::Certificate(_)
            | SaslState::Listener(_) => configured,
            _ => configured.min(UNAUTHENTICATED_REQUEST_BYTES_MAX),
        }
    }

    /// The user logged in, if any.
    pub fn principal(&self) -> Option<&str> {
        match self {
            SaslState::Authenticated(user) | SaslState::Certificate(user) | SaslState::Listener(user) => {
                Some(user)
            }
            _ => None,
        }
    }

    /// Answers the SASL requests; `Ok(None)` lets any other request through when the
    /// connection may make it, and fails with [`ProtocolError::Unauthenticated`] when it
    /// may not.
    pub fn intercept(
        &mut self,
        broker: &Broker,
        host: &str,
        api_key: ApiKey,
        body: &RequestKind,
    ) -> Result<Option<ResponseKind>, ProtocolError> {
        match body {
            RequestKind::SaslHandshake(r) => Ok(Some(ResponseKind::SaslHandshake(self.handshake(r)))),
            RequestKind::SaslAuthenticate(r) => Ok(Some(ResponseKind::SaslAuthenticate(
                self.authenticate(broker, host, r),
            ))),
            _ => match self {
                SaslState::NotRequired
                | SaslState::Authenticated(_)
                | SaslState::Certificate(_)
                | SaslState::Listener(_) => Ok(None),
                _ if api_key == ApiKey::ApiVersions && !matches!(self, SaslState::Failed) => Ok(None),
                _ => Err(ProtocolError::Unauthenticated {
                    api_key: api_key as i16,
                }),
            },
        }
    }

    fn handshake(&mut self, r: &SaslHandshakeRequest) -> SaslHandshakeResponse {
        let offered = || MECHANISMS.iter().map(|m| StrBytes::from_static_str(m)).collect();
        let response = SaslHandshakeResponse::default().with_mechanisms(offered());
        match self {
            SaslState::NotRequired | SaslState::Listener(_) => {
                return SaslHandshakeResponse::default().with_error_code(ec::UNSUPPORTED_SASL_MECHANISM)
            }
            SaslState::Start | SaslState::Certificate(_) => {}
            _ => return response.with_error_code(ec::ILLEGAL_SASL_STATE),
        }
        let name = r.mechanism.as_str();
        if name == "PLAIN" {
            *self = SaslState::Plain;
        } else if let Some(m) = Mechanism::from_name(name) {
            *self = SaslState::ScramFirst(m);
        } else {
            tracing::info!(mechanism = name, "SASL mechanism not offered");
            return response.with_error_code(ec::UNSUPPORTED_SASL_MECHANISM);
        }
        response
    }

    fn authenticate(
        &mut self,
        broker: &Broker,
        host: &str,
        r: &SaslAuthenticateRequest,
    ) -> SaslAuthenticateResponse {
        let state = std::mem::replace(self, SaslState::Failed);
        let (next, answer) = step(state, broker, host, &r.auth_bytes);
        *self = next;
        match answer {
            Ok(bytes) => SaslAuthenticateResponse::default().with_auth_bytes(bytes.into()),
            Err((code, message)) => SaslAuthenticateResponse::default()
                .with_error_code(code)
                .with_error_message(Some(StrBytes::from_string(message))),
        }
    }
}

type Step = (SaslState, Result<Vec<u8>, (i16, String)>);

fn failed(broker: &Broker, host: &str, user: &str, mechanism: &str, e: &AuthError) -> Step {
    broker.login_failed(host, "kafka", user);
    let message = match e {
        AuthError::InvalidCredentials => {
            format!("Authentication failed during authentication due to invalid credentials with SASL mechanism {mechanism}")
        }
        other => format!("Authentication failed: {other}"),
    };
    (SaslState::Failed, Err((ec::SASL_AUTHENTICATION_FAILED, message)))
}

/// One SaslAuthenticate: the next state and the bytes to send back, or the error.
fn step(state: SaslState, broker: &Broker, host: &str, bytes: &[u8]) -> Step {
    let throttled = || {
        let message = "Authentication failed: too many failed logins from this address; try again later";
        (
            SaslState::Failed,
            Err((ec::SASL_AUTHENTICATION_FAILED, message.to_string())),
        )
    };
    match state {
        SaslState::NotRequired => (
            SaslState::NotRequired,
            Err((
                ec::ILLEGAL_SASL_STATE,
                "this listener requires no authentication".into(),
            )),
        ),
        SaslState::Plain if !broker.login_allowed(host) => throttled(),
        SaslState::Plain => match parse_plain(bytes) {
            Err(e) => failed(broker, host, "", "PLAIN", &e),
            Ok(login) if broker.verify_password(&login.username, &login.password) => {
                tracing::debug!(user = %login.username, "Kafka client logged in (PLAIN)");
                (SaslState::Authenticated(login.username), Ok(Vec::new()))
            }
            Ok(login) => failed(
                broker,
                host,
                &login.username,
                "PLAIN",
                &AuthError::InvalidCredentials,
            ),
        },
        SaslState::ScramFirst(_) if !broker.login_allowed(host) => throttled(),
        SaslState::ScramFirst(m) => {
            let started = ClientFirst::parse(m, bytes).and_then(|first| {
                let credential = broker.scram_credential(&first.username, m);
                ScramExchange::start(m, first, credential)
            });
            match started {
                Ok((exchange, server_first)) => (SaslState::ScramFinal(Box::new(exchange)), Ok(server_first)),
                Err(e) => failed(broker, host, "", m.name(), &e),
            }
        }
        SaslState::ScramFinal(exchange) => {
            let user = exchange.username().to_string();
            let m = mechanism_of(&exchange);
            match exchange.finish(bytes) {
                Ok(server_final) => {
                    tracing::debug!(%user, "Kafka client logged in (SCRAM)");
                    (SaslState::Authenticated(user), Ok(server_final))
                }
                Err(e) => failed(broker, host, &user, m, &e),
            }
        }
        other => (
            other,
            Err((ec::ILLEGAL_SASL_STATE, "SaslAuthenticate out of order".into())),
        ),
    }
}

fn mechanism_of(exchange: &ScramExchange) -> &'static str {
    exchange.mechanism().name()
}
