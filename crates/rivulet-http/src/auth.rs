//! Logins on the HTTP gateway: when the broker requires them (`rivulet serve --auth`),
//! every route but `/healthz` and `/readyz` needs HTTP basic auth with one of the broker's
//! users, or a bearer token one of them was issued (`POST /v1/tokens`). A verified login is remembered for [`VERIFIED_TTL`] (by a hash of the password,
//! never the password), so a script does not pay PBKDF2 on every request.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;

use crate::authz::User;
use crate::AppState;

/// How long a verified login is remembered.
pub const VERIFIED_TTL: Duration = Duration::from_secs(60);
/// Logins remembered at most (all are forgotten beyond, then verified again).
const VERIFIED_MAX: usize = 1_024;

/// Logins verified lately: (user, password fingerprint) to when, and the users'
/// generation then (any change to the users makes them stale).
#[derive(Debug, Default)]
pub(crate) struct Verified(Mutex<HashMap<LoginKey, (Instant, u64)>>);

/// A user and the fingerprint of the password it logged in with.
type LoginKey = (String, Vec<u8>);

impl Verified {
    fn fresh(&self, key: &LoginKey, generation: u64) -> bool {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.get(key)
            .is_some_and(|(at, g)| *g == generation && at.elapsed() < VERIFIED_TTL)
    }

    fn remember(&self, key: LoginKey, generation: u64) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= VERIFIED_MAX {
            map.clear();
        }
        map.insert(key, (Instant::now(), generation));
    }
}

/// Header the console sends, so its requests get no `WWW-Authenticate` challenge (which
/// would make the browser open its own login dialog over the console's).
const CONSOLE_HEADER: &str = "x-rivulet-console";

fn unauthorized(request: &Request, message: &str) -> Response {
    let body = axum::Json(serde_json::json!({"error_code": 40101, "message": message}));
    if request.headers().contains_key(CONSOLE_HEADER) {
        return (StatusCode::UNAUTHORIZED, body).into_response();
    }
    (
        StatusCode::UNAUTHORIZED,
        [(
            header::WWW_AUTHENTICATE,
            "Basic realm=\"rivulet\", charset=\"UTF-8\"",
        )],
        body,
    )
        .into_response()
}

/// The user and password of a `Basic` authorization header.
fn basic_credentials(request: &Request) -> Option<(String, String)> {
    let value = request.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// The bearer token of a request: `Authorization: Bearer <token>`, or an `access_token`
/// query parameter (a browser's `EventSource` cannot set headers).
pub(crate) fn bearer_token(request: &Request) -> Option<String> {
    let header = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_string());
    header.or_else(|| {
        let query: axum::extract::Query<HashMap<String, String>> =
            axum::extract::Query::try_from_uri(request.uri()).ok()?;
        query.get("access_token").cloned()
    })
}

/// The URI without its `access_token` query parameter; `None` when it has none.
fn without_access_token(uri: &axum::http::Uri) -> Option<axum::http::Uri> {
    let query = uri.query()?;
    let kept: Vec<&str> = query
        .split('&')
        .filter(|p| !p.starts_with("access_token=") && *p != "access_token")
        .collect();
    if kept.len() == query.split('&').count() {
        return None;
    }
    let path = if kept.is_empty() {
        uri.path().to_string()
    } else {
        format!("{}?{}", uri.path(), kept.join("&"))
    };
    path.parse().ok()
}

/// The middleware: lets a request through when no login is required, for the health
/// routes, or with a valid login (basic auth or a bearer token).
pub(crate) async fn require_login(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    let open = path == "/healthz" || path == "/readyz" || crate::console::is_console_path(path);
    if !state.broker.auth_required() || open {
        return next.run(request).await;
    }
    let host = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| "unknown".to_string(), |c| c.0.ip().to_string());
    if let Some(token) = bearer_token(&request) {
        if !state.broker.login_allowed(&host) {
            return unauthorized(
                &request,
                "too many failed logins from this address; try again later",
            );
        }
        let Some(user) = state.broker.token_user(&token) else {
            state.broker.login_failed(&host, "http", "(token)");
            return unauthorized(&request, "invalid or expired token");
        };
        // Handlers never see the token (their queries refuse unknown parameters).
        if let Some(uri) = without_access_token(request.uri()) {
            *request.uri_mut() = uri;
        }
        request.extensions_mut().insert(User(user));
        return next.run(request).await;
    }
    let Some((user, password)) = basic_credentials(&request) else {
        return unauthorized(
            &request,
            "this broker requires a login: HTTP basic auth with a Rivulet user, or a bearer token",
        );
    };
    let key = (user.clone(), rivulet_auth::fingerprint(&password));
    let generation = state.broker.users_generation();
    if state.verified.fresh(&key, generation) {
        request.extensions_mut().insert(User(user));
        return next.run(request).await;
    }
    if !state.broker.login_allowed(&host) {
        return unauthorized(
            &request,
            "too many failed logins from this address; try again later",
        );
    }
    let broker = state.broker.clone();
    let checked_user = user.clone();
    let ok = tokio::task::spawn_blocking(move || broker.verify_password(&checked_user, &password))
        .await
        .unwrap_or(false);
    if !ok {
        state.broker.login_failed(&host, "http", &user);
        return unauthorized(&request, "invalid user or password");
    }
    state.verified.remember(key, generation);
    request.extensions_mut().insert(User(user));
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_access_token_is_taken_out_of_the_query() {
        let uri: axum::http::Uri = "/v1/topics/t/events?from=start&access_token=abc&group=g"
            .parse()
            .expect("uri");
        let stripped = without_access_token(&uri).expect("had one");
        assert_eq!(stripped.to_string(), "/v1/topics/t/events?from=start&group=g");
        let only: axum::http::Uri = "/v1/x?access_token=abc".parse().expect("uri");
        assert_eq!(without_access_token(&only).expect("had one").to_string(), "/v1/x");
        assert!(without_access_token(&"/v1/x?from=start".parse().expect("uri")).is_none());
    }
}
