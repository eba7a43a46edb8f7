//! `/v1/acls`: the ACLs every front end enforces (`rivulet acl`; Kafka's CreateAcls,
//! DescribeAcls and DeleteAcls manage the same bindings). Filters are query parameters
//! with the field names of a binding; a missing field matches everything.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use rivulet_broker::acl::{
    AclBinding, AclError, AclFilter, Operation, PatternType, Permission, ResourceType,
};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::AppState;

/// Bindings one request may create at most.
pub const ACLS_PER_REQUEST_MAX: usize = 1_000;

fn acl_error(e: AclError) -> ApiError {
    let status = match &e {
        AclError::Invalid(_) => StatusCode::BAD_REQUEST,
        AclError::LimitReached => StatusCode::CONFLICT,
        AclError::Storage(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    ApiError::new(status, e.code(), e.to_string())
}

/// A binding as posted: pattern, host and permission may be left out.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewAcl {
    resource_type: ResourceType,
    resource_name: String,
    #[serde(default = "literal")]
    pattern_type: PatternType,
    principal: String,
    #[serde(default = "any_host")]
    host: String,
    operation: Operation,
    #[serde(default = "allow")]
    permission: Permission,
}

fn literal() -> PatternType {
    PatternType::Literal
}
fn any_host() -> String {
    "*".to_string()
}
fn allow() -> Permission {
    Permission::Allow
}

impl From<NewAcl> for AclBinding {
    fn from(a: NewAcl) -> AclBinding {
        AclBinding {
            resource_type: a.resource_type,
            resource_name: a.resource_name,
            pattern_type: a.pattern_type,
            principal: a.principal,
            host: a.host,
            operation: a.operation,
            permission: a.permission,
        }
    }
}

/// The query of `GET` and `DELETE`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct FilterQuery {
    resource_type: Option<ResourceType>,
    resource_name: Option<String>,
    pattern_type: Option<PatternType>,
    principal: Option<String>,
    host: Option<String>,
    operation: Option<Operation>,
    permission: Option<Permission>,
}

impl From<FilterQuery> for AclFilter {
    fn from(q: FilterQuery) -> AclFilter {
        AclFilter {
            resource_type: q.resource_type,
            resource_name: q.resource_name,
            pattern_type: q.pattern_type,
            principal: q.principal,
            host: q.host,
            operation: q.operation,
            permission: q.permission,
        }
    }
}

fn filter_of(query: Result<Query<FilterQuery>, QueryRejection>) -> Result<AclFilter, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(format!("ACL filter: {e}")))?;
    Ok(q.into())
}

/// The bindings a filter selects.
pub(crate) async fn list(
    State(state): State<AppState>,
    query: Result<Query<FilterQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let filter = filter_of(query)?;
    Ok(Json(json!({ "acls": state.broker.acls(&filter) })))
}

/// Creates one binding (an object) or several (`{"acls": [...]}`); all or none.
pub(crate) async fn create(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let body = body.map_err(crate::produce::body_error)?;
    let expected = "expected an ACL {resource_type, resource_name, principal, operation[, pattern_type, host, permission]} or {\"acls\": [...]}";
    let value: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("{expected}: {e}")))?;
    // Parsed by shape, so the error names the field at fault.
    let acls: Vec<NewAcl> = match value.get("acls") {
        Some(list) => serde_json::from_value(list.clone()),
        None => serde_json::from_value(value).map(|one| vec![one]),
    }
    .map_err(|e| ApiError::bad_request(format!("{expected}: {e}")))?;
    let acls: Vec<AclBinding> = acls.into_iter().map(AclBinding::from).collect();
    if acls.len() > ACLS_PER_REQUEST_MAX {
        return Err(ApiError::bad_request(format!(
            "at most {ACLS_PER_REQUEST_MAX} ACLs per request"
        )));
    }
    // Validate all first, so a bad one creates none.
    for a in &acls {
        a.validate().map_err(acl_error)?;
    }
    for result in state.broker.acl_create(acls.clone()).map_err(acl_error)? {
        result.map_err(acl_error)?;
    }
    Ok((StatusCode::CREATED, Json(json!({ "created": acls }))))
}

/// Deletes the bindings a filter selects. An empty filter is refused, so one request
/// cannot remove every ACL by accident (`resource_type=any` says it on purpose).
pub(crate) async fn delete(
    State(state): State<AppState>,
    query: Result<Query<FilterQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let filter = filter_of(query)?;
    if filter == AclFilter::default() {
        return Err(ApiError::bad_request(
            "an empty filter would delete every ACL: name at least one field (resource_type=any selects all)",
        ));
    }
    let removed = state.broker.acl_delete(&[filter]).map_err(acl_error)?;
    Ok(Json(
        json!({ "deleted": removed.into_iter().flatten().collect::<Vec<_>>() }),
    ))
}
