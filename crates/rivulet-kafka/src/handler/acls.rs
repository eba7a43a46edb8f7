//! CreateAcls, DescribeAcls and DeleteAcls: Kafka's admin tools (kafka-acls, AdminClient,
//! rpk) manage Rivulet's ACLs. Managing them needs alter (describing them, describe) on
//! the cluster.

use std::collections::BTreeMap;

use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_response::{DeleteAclsFilterResult, DeleteAclsMatchingAcl};
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use rivulet_broker::acl::{
    AclBinding, AclError, AclFilter, Operation, PatternType, Permission, ResourceType,
};

use super::{str_bytes, ClientInfo, Handler};
use crate::errors as ec;

fn acl_error_code(e: &AclError) -> i16 {
    match e {
        AclError::Invalid(_) => ec::INVALID_REQUEST,
        AclError::LimitReached => ec::POLICY_VIOLATION,
        AclError::Storage(_) => ec::KAFKA_STORAGE_ERROR,
    }
}

fn code<T>(parse: fn(i8) -> Option<T>, value: i8, what: &str) -> Result<T, AclError> {
    parse(value).ok_or_else(|| AclError::Invalid(format!("unknown {what} code {value}")))
}

/// A filter from the wire fields shared by DescribeAcls and DeleteAcls.
struct WireFilter<'a> {
    resource_type: i8,
    resource_name: Option<&'a StrBytes>,
    pattern_type: i8,
    principal: Option<&'a StrBytes>,
    host: Option<&'a StrBytes>,
    operation: i8,
    permission: i8,
}

fn filter_of(w: WireFilter<'_>) -> Result<AclFilter, AclError> {
    Ok(AclFilter {
        resource_type: Some(code(ResourceType::from_code, w.resource_type, "resource type")?),
        resource_name: w.resource_name.map(|s| s.to_string()),
        pattern_type: Some(code(PatternType::from_code, w.pattern_type, "pattern type")?),
        principal: w.principal.map(|s| s.to_string()),
        host: w.host.map(|s| s.to_string()),
        operation: Some(code(Operation::from_code, w.operation, "operation")?),
        permission: Some(code(Permission::from_code, w.permission, "permission")?),
    })
}

fn binding_of(c: &create_acls_request::AclCreation) -> Result<AclBinding, AclError> {
    Ok(AclBinding {
        resource_type: code(ResourceType::from_code, c.resource_type, "resource type")?,
        resource_name: c.resource_name.to_string(),
        pattern_type: code(PatternType::from_code, c.resource_pattern_type, "pattern type")?,
        principal: c.principal.to_string(),
        host: c.host.to_string(),
        operation: code(Operation::from_code, c.operation, "operation")?,
        permission: code(Permission::from_code, c.permission_type, "permission")?,
    })
}

impl Handler {
    pub(super) fn create_acls(&self, r: CreateAclsRequest, client: &ClientInfo) -> CreateAclsResponse {
        let refused = |e: &AclError| {
            AclCreationResult::default()
                .with_error_code(acl_error_code(e))
                .with_error_message(Some(str_bytes(e.to_string())))
        };
        if !self.may_cluster(client, Operation::Alter) {
            let denied = AclCreationResult::default().with_error_code(ec::CLUSTER_AUTHORIZATION_FAILED);
            return CreateAclsResponse::default().with_results(vec![denied; r.creations.len()]);
        }
        let parsed: Vec<Result<AclBinding, AclError>> = r.creations.iter().map(binding_of).collect();
        let valid: Vec<AclBinding> = parsed.iter().filter_map(|p| p.as_ref().ok().cloned()).collect();
        let stored = self.broker.acl_create(valid);
        let mut stored = match stored {
            Ok(results) => results.into_iter(),
            Err(e) => {
                tracing::error!(error = %e, "CreateAcls failed");
                return CreateAclsResponse::default().with_results(vec![refused(&e); r.creations.len()]);
            }
        };
        let results = parsed
            .iter()
            .map(|p| match p {
                Err(e) => refused(e),
                Ok(_) => match stored.next() {
                    Some(Err(e)) => refused(&e),
                    _ => AclCreationResult::default(),
                },
            })
            .collect();
        CreateAclsResponse::default().with_results(results)
    }

    pub(super) fn describe_acls(&self, r: DescribeAclsRequest, client: &ClientInfo) -> DescribeAclsResponse {
        let fail = |code: i16, message: String| {
            DescribeAclsResponse::default()
                .with_error_code(code)
                .with_error_message(Some(str_bytes(message)))
        };
        if !self.may_cluster(client, Operation::Describe) {
            return fail(
                ec::CLUSTER_AUTHORIZATION_FAILED,
                "not authorized to describe ACLs".into(),
            );
        }
        let filter = filter_of(WireFilter {
            resource_type: r.resource_type_filter,
            resource_name: r.resource_name_filter.as_ref(),
            pattern_type: r.pattern_type_filter,
            principal: r.principal_filter.as_ref(),
            host: r.host_filter.as_ref(),
            operation: r.operation,
            permission: r.permission_type,
        });
        let filter = match filter {
            Ok(f) => f,
            Err(e) => return fail(acl_error_code(&e), e.to_string()),
        };
        let mut resources: BTreeMap<(i8, String, i8), Vec<AclDescription>> = BTreeMap::new();
        for b in self.broker.acls(&filter) {
            let key = (b.resource_type.code(), b.resource_name, b.pattern_type.code());
            resources.entry(key).or_default().push(
                AclDescription::default()
                    .with_principal(str_bytes(b.principal))
                    .with_host(str_bytes(b.host))
                    .with_operation(b.operation.code())
                    .with_permission_type(b.permission.code()),
            );
        }
        let resources = resources
            .into_iter()
            .map(|((kind, name, pattern), acls)| {
                DescribeAclsResource::default()
                    .with_resource_type(kind)
                    .with_resource_name(str_bytes(name))
                    .with_pattern_type(pattern)
                    .with_acls(acls)
            })
            .collect();
        DescribeAclsResponse::default().with_resources(resources)
    }

    pub(super) fn delete_acls(&self, r: DeleteAclsRequest, client: &ClientInfo) -> DeleteAclsResponse {
        let fail = |code: i16, message: String| {
            DeleteAclsFilterResult::default()
                .with_error_code(code)
                .with_error_message(Some(str_bytes(message)))
        };
        if !self.may_cluster(client, Operation::Alter) {
            let denied = fail(
                ec::CLUSTER_AUTHORIZATION_FAILED,
                "not authorized to delete ACLs".into(),
            );
            return DeleteAclsResponse::default().with_filter_results(vec![denied; r.filters.len()]);
        }
        let parsed: Vec<Result<AclFilter, AclError>> = r
            .filters
            .iter()
            .map(|f| {
                filter_of(WireFilter {
                    resource_type: f.resource_type_filter,
                    resource_name: f.resource_name_filter.as_ref(),
                    pattern_type: f.pattern_type_filter,
                    principal: f.principal_filter.as_ref(),
                    host: f.host_filter.as_ref(),
                    operation: f.operation,
                    permission: f.permission_type,
                })
            })
            .collect();
        let valid: Vec<AclFilter> = parsed.iter().filter_map(|p| p.as_ref().ok().cloned()).collect();
        let mut removed = match self.broker.acl_delete(&valid) {
            Ok(removed) => removed.into_iter(),
            Err(e) => {
                tracing::error!(error = %e, "DeleteAcls failed");
                let failed = fail(acl_error_code(&e), e.to_string());
                return DeleteAclsResponse::default().with_filter_results(vec![failed; r.filters.len()]);
            }
        };
        let results = parsed
            .iter()
            .map(|p| match p {
                Err(e) => fail(acl_error_code(e), e.to_string()),
                Ok(_) => DeleteAclsFilterResult::default().with_matching_acls(
                    removed
                        .next()
                        .unwrap_or_default()
                        .into_iter()
                        .map(matching)
                        .collect(),
                ),
            })
            .collect();
        DeleteAclsResponse::default().with_filter_results(results)
    }
}

fn matching(b: AclBinding) -> DeleteAclsMatchingAcl {
    DeleteAclsMatchingAcl::default()
        .with_resource_type(b.resource_type.code())
        .with_resource_name(str_bytes(b.resource_name))
        .with_pattern_type(b.pattern_type.code())
        .with_principal(str_bytes(b.principal))
        .with_host(str_bytes(b.host))
        .with_operation(b.operation.code())
        .with_permission_type(b.permission.code())
}
