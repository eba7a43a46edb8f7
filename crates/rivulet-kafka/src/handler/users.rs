//! DescribeUserScramCredentials and AlterUserScramCredentials: Kafka's admin tools
//! (kafka-configs, AdminClient) manage Rivulet's users.

use std::collections::BTreeSet;

use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse, DescribeUserScramCredentialsRequest,
    DescribeUserScramCredentialsResponse,
};
use kafka_protocol::protocol::StrBytes;
use rivulet_auth::{Credential, Mechanism};
use rivulet_broker::users::UserError;

use super::Handler;
use crate::errors as ec;

fn user_error_code(e: &UserError) -> i16 {
    match e {
        UserError::NotFound(_) => ec::RESOURCE_NOT_FOUND,
        UserError::InvalidName(_) | UserError::Credential(_) | UserError::LimitReached => {
            ec::UNACCEPTABLE_CREDENTIAL
        }
        UserError::Storage(_) => ec::KAFKA_STORAGE_ERROR,
    }
}

impl Handler {
    pub(super) fn describe_user_scram_credentials(
        &self,
        r: DescribeUserScramCredentialsRequest,
    ) -> DescribeUserScramCredentialsResponse {
        let users = self.broker.users();
        let wanted: Option<Vec<String>> = r
            .users
            .map(|list| list.into_iter().map(|u| u.name.to_string()).collect());
        let names: Vec<String> = match &wanted {
            Some(list) => list.clone(),
            None => users.iter().map(|u| u.name.clone()).collect(),
        };
        let mut seen = BTreeSet::new();
        let results = names
            .into_iter()
            .map(|name| {
                let result = DescribeUserScramCredentialsResult::default()
                    .with_user(StrBytes::from_string(name.clone()));
                if !seen.insert(name.clone()) {
                    return result
                        .with_error_code(ec::DUPLICATE_RESOURCE)
                        .with_error_message(Some(StrBytes::from_string(format!(
                            "user {name:?} asked twice"
                        ))));
                }
                match users.iter().find(|u| u.name == name) {
                    Some(u) => result.with_credential_infos(
                        u.credentials
                            .iter()
                            .map(|(m, iterations)| {
                                CredentialInfo::default()
                                    .with_mechanism(m.kafka_type())
                                    .with_iterations(i32::try_from(*iterations).unwrap_or(i32::MAX))
                            })
                            .collect(),
                    ),
                    None => result
                        .with_error_code(ec::RESOURCE_NOT_FOUND)
                        .with_error_message(Some(StrBytes::from_string(format!(
                            "Attempt to describe a user credential that does not exist: {name}"
                        )))),
                }
            })
            .collect();
        DescribeUserScramCredentialsResponse::default().with_results(results)
    }

    pub(super) fn alter_user_scram_credentials(
        &self,
        r: AlterUserScramCredentialsRequest,
    ) -> AlterUserScramCredentialsResponse {
        let mut results = Vec::new();
        let mut outcome = |name: &str, result: Result<(), (i16, String)>| {
            let mut out =
                AlterUserScramCredentialsResult::default().with_user(StrBytes::from_string(name.to_string()));
            if let Err((code, message)) = result {
                out = out
                    .with_error_code(code)
                    .with_error_message(Some(StrBytes::from_string(message)));
            }
            results.push(out);
        };
        let failed = |e: UserError| (user_error_code(&e), e.to_string());
        let unknown_mechanism = |m: i8| {
            (
                ec::UNSUPPORTED_SASL_MECHANISM,
                format!("unknown SCRAM mechanism {m}"),
            )
        };
        for d in r.deletions {
            let result = match Mechanism::from_kafka_type(d.mechanism) {
                None => Err(unknown_mechanism(d.mechanism)),
                Some(m) => self.broker.user_delete_credential(&d.name, m).map_err(failed),
            };
            outcome(&d.name, result);
        }
        for u in r.upsertions {
            let result = match Mechanism::from_kafka_type(u.mechanism) {
                None => Err(unknown_mechanism(u.mechanism)),
                Some(m) => u32::try_from(u.iterations)
                    .map_err(|_| (ec::UNACCEPTABLE_CREDENTIAL, "negative iterations".to_string()))
                    .and_then(|iterations| {
                        Credential::from_salted_password(m, &u.salted_password, u.salt.to_vec(), iterations)
                            .map_err(|e| failed(UserError::Credential(e)))
                    })
                    .and_then(|c| self.broker.user_set_credential(&u.name, c).map_err(failed)),
            };
            if result.is_ok() {
                tracing::info!(user = %u.name, mechanism = u.mechanism, "SCRAM credential set");
            }
            outcome(&u.name, result);
        }
        AlterUserScramCredentialsResponse::default().with_results(results)
    }
}
