//! `/v1/users`: the users every front end logs in with (`rivulet user`). Passwords go in,
//! never out: a user is listed with the SCRAM mechanisms it has and their iterations.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use rivulet_broker::users::UserError;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::AppState;

/// Shortest password accepted.
pub const PASSWORD_CHARS_MIN: usize = 8;

/// The body of `PUT /v1/users/{user}`.
#[derive(Deserialize)]
pub(crate) struct SetPassword {
    password: String,
}

fn user_error(e: UserError) -> ApiError {
    let status = match &e {
        UserError::NotFound(_) => StatusCode::NOT_FOUND,
        UserError::InvalidName(_) | UserError::Credential(_) => StatusCode::BAD_REQUEST,
        UserError::LimitReached => StatusCode::CONFLICT,
        UserError::Storage(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    ApiError::new(status, e.code(), e.to_string())
}

/// Every user with its mechanisms.
pub(crate) async fn list(State(state): State<AppState>) -> Json<Value> {
    let users: Vec<Value> = state
        .broker
        .users()
        .into_iter()
        .map(|u| {
            let credentials: Vec<Value> = u
                .credentials
                .iter()
                .map(|(m, iterations)| json!({"mechanism": m.name(), "iterations": iterations}))
                .collect();
            json!({"name": u.name, "credentials": credentials})
        })
        .collect();
    Json(json!({ "users": users }))
}

/// Creates a user or sets its password (both SCRAM mechanisms).
pub(crate) async fn set_password(
    State(state): State<AppState>,
    Path(user): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let body = body.map_err(crate::produce::body_error)?;
    let body: SetPassword = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("expected {{\"password\"}}: {e}")))?;
    if body.password.chars().count() < PASSWORD_CHARS_MIN {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            40011,
            format!("a password needs at least {PASSWORD_CHARS_MIN} characters"),
        ));
    }
    let broker = state.broker.clone();
    let name = user.clone();
    // PBKDF2 for two mechanisms: a few milliseconds, off the async threads.
    tokio::task::spawn_blocking(move || broker.user_set_password(&name, &body.password))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, 50001, e.to_string()))?
        .map_err(user_error)?;
    tracing::info!(%user, "User password set");
    Ok(Json(json!({"name": user})))
}

/// Removes a user.
pub(crate) async fn delete(
    State(state): State<AppState>,
    Path(user): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.broker.user_delete(&user).map_err(user_error)?;
    tracing::info!(%user, "User deleted");
    Ok(StatusCode::NO_CONTENT)
}
