//! `/v1/tokens`: bearer tokens for the logged-in user (see `rivulet_broker::tokens`).
//! Issuing one needs the password (basic auth), so a token cannot renew itself; `DELETE`
//! revokes the token the request carries.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use rivulet_broker::tokens::{TOKEN_TTL_DEFAULT, TOKEN_TTL_MAX};
use serde::Deserialize;
use serde_json::json;

use crate::authz::User;
use crate::error::ApiError;
use crate::AppState;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct IssueRequest {
    /// Lifetime in seconds.
    ttl_s: Option<u64>,
}

/// Issues a token for the user of the request's basic auth.
pub(crate) async fn issue(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    if crate::auth::bearer_token(&request).is_some() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            40303,
            "a token cannot issue tokens: log in with the password",
        ));
    }
    let Some(User(user)) = request.extensions().get::<User>().cloned() else {
        return Err(ApiError::bad_request("logins are off: no token is needed"));
    };
    let body: Result<Bytes, BytesRejection> = <Bytes as FromRequest<()>>::from_request(request, &()).await;
    let body = body.map_err(crate::produce::body_error)?;
    let asked: IssueRequest = if body.iter().all(u8::is_ascii_whitespace) {
        IssueRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("expected {{\"ttl_s\"}}: {e}")))?
    };
    let ttl = asked.ttl_s.map_or(TOKEN_TTL_DEFAULT, Duration::from_secs);
    if ttl.is_zero() || ttl > TOKEN_TTL_MAX {
        return Err(ApiError::bad_request(format!(
            "ttl_s must be 1 to {}",
            TOKEN_TTL_MAX.as_secs()
        )));
    }
    let issued = state
        .broker
        .token_issue(&user, ttl)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.code(), e.to_string()))?;
    tracing::info!(%user, ttl_s = ttl.as_secs(), "Token issued");
    let body = json!({"token": issued.token, "user": issued.user, "expires_at_ms": issued.expires_ms});
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// Revokes the token the request carries.
pub(crate) async fn revoke(State(state): State<AppState>, request: Request) -> Result<StatusCode, ApiError> {
    let Some(token) = crate::auth::bearer_token(&request) else {
        return Err(ApiError::bad_request(
            "send the token to revoke as Authorization: Bearer",
        ));
    };
    state.broker.token_revoke(&token);
    Ok(StatusCode::NO_CONTENT)
}
