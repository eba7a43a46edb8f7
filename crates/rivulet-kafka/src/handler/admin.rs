//! Topic and config admin (CreateTopics, DeleteTopics, DescribeConfigs, AlterConfigs,
//! IncrementalAlterConfigs).

use std::collections::BTreeMap;

use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::create_topics_response::{CreatableTopicConfigs, CreatableTopicResult};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::*;
use rivulet_broker::acl::Operation;
use rivulet_broker::BrokerError;

use super::codes::broker_error_code;
use super::{str_bytes, ClientInfo, Handler};
use crate::errors as ec;

impl Handler {
    pub(super) fn create_topics(
        &self,
        v: i16,
        r: CreateTopicsRequest,
        client: &ClientInfo,
    ) -> CreateTopicsResponse {
        let topics = r
            .topics
            .into_iter()
            .map(|t| {
                let overrides: BTreeMap<String, String> = t
                    .configs
                    .iter()
                    .filter_map(|c| c.value.as_ref().map(|v| (c.name.to_string(), v.to_string())))
                    .collect();
                let partitions = if t.assignments.is_empty() {
                    t.num_partitions
                } else {
                    t.assignments.len() as i32
                };
                let result = if self.may_create_topic(client, &t.name.0) {
                    self.broker.create_topic(
                        &t.name.0,
                        partitions,
                        t.replication_factor,
                        overrides,
                        r.validate_only,
                    )
                } else {
                    Err(BrokerError::NotAuthorized(format!("create topic {}", t.name.0)))
                };
                let mut out = CreatableTopicResult::default().with_name(t.name.clone());
                out.error_message = None;
                if v < 5 {
                    // Fields of v5+ keep their defaults.
                    out.configs = Some(Vec::new());
                }
                match result {
                    Ok(created) => {
                        tracing::info!(topic = %t.name.0, validate_only = r.validate_only, "CreateTopics");
                        if v >= 5 {
                            if let Some(topic) = created.or_else(|| self.broker.topic(&t.name.0)) {
                                out.num_partitions = topic.partition_count() as i32;
                                out.replication_factor = 1;
                                out.configs = Some(
                                    topic
                                        .describe_configs()
                                        .into_iter()
                                        .map(|c| {
                                            CreatableTopicConfigs::default()
                                                .with_name(str_bytes(c.name))
                                                .with_value(Some(str_bytes(c.value)))
                                                .with_config_source(if c.is_default { 5 } else { 1 })
                                        })
                                        .collect(),
                                );
                            } else {
                                out.num_partitions = partitions;
                                out.replication_factor = 1;
                            }
                        }
                    }
                    Err(e) => {
                        tracing::info!(topic = %t.name.0, error = %e, "CreateTopics refused");
                        out.error_code = broker_error_code(&e);
                        out.error_message = Some(str_bytes(e.to_string()));
                    }
                }
                out
            })
            .collect();
        CreateTopicsResponse::default().with_topics(topics)
    }

    pub(super) fn delete_topics(&self, r: DeleteTopicsRequest, client: &ClientInfo) -> DeleteTopicsResponse {
        let responses = r
            .topic_names
            .into_iter()
            .map(|name| {
                let result = if self.may_topic(client, Operation::Delete, &name.0) {
                    self.broker.delete_topic(&name.0)
                } else {
                    Err(BrokerError::NotAuthorized(format!("delete topic {}", name.0)))
                };
                let code = match result {
                    Ok(()) => ec::NONE,
                    Err(e) => {
                        tracing::info!(topic = %name.0, error = %e, "DeleteTopics refused");
                        broker_error_code(&e)
                    }
                };
                DeletableTopicResult::default()
                    .with_name(Some(name))
                    .with_error_code(code)
            })
            .collect();
        DeleteTopicsResponse::default().with_responses(responses)
    }

    /// AlterConfigs: replaces a topic's config overrides with the given set (Kafka's
    /// non-incremental semantics: keys not given return to their defaults).
    pub(super) async fn alter_configs(
        &self,
        r: AlterConfigsRequest,
        client: &ClientInfo,
    ) -> AlterConfigsResponse {
        const TOPIC: i8 = 2;
        let mut responses = Vec::with_capacity(r.resources.len());
        for res in r.resources {
            let mut out = AlterConfigsResourceResponse::default()
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name.clone());
            let allowed = self.may_config(
                client,
                Operation::AlterConfigs,
                res.resource_type,
                &res.resource_name,
            );
            if let Err(code) = allowed {
                responses.push(out.with_error_code(code));
                continue;
            }
            if res.resource_type != TOPIC {
                out.error_code = ec::INVALID_REQUEST;
                out.error_message = Some(str_bytes("only topic configs can be altered on Rivulet"));
                responses.push(out);
                continue;
            }
            let overrides: std::collections::BTreeMap<String, String> = res
                .configs
                .iter()
                .filter_map(|c| c.value.as_ref().map(|v| (c.name.to_string(), v.to_string())))
                .collect();
            let name = res.resource_name.to_string();
            let result = if self.broker.topic(&name).is_none() {
                Err(BrokerError::UnknownTopic(name.clone()))
            } else if r.validate_only {
                self.broker.validate_topic_configs(&overrides)
            } else {
                let broker = self.broker.clone();
                let topic = name.clone();
                tokio::task::spawn_blocking(move || broker.set_topic_configs(&topic, overrides))
                    .await
                    .unwrap_or_else(|e| Err(BrokerError::LimitReached(format!("config task failed: {e}"))))
            };
            if let Err(e) = result {
                tracing::info!(topic = %name, error = %e, "AlterConfigs refused");
                out.error_code = match &e {
                    BrokerError::InvalidConfig { .. } => ec::INVALID_CONFIG,
                    other => broker_error_code(other),
                };
                out.error_message = Some(str_bytes(e.to_string()));
            }
            responses.push(out);
        }
        AlterConfigsResponse::default().with_responses(responses)
    }

    pub(super) async fn incremental_alter_configs(
        &self,
        r: IncrementalAlterConfigsRequest,
        client: &ClientInfo,
    ) -> IncrementalAlterConfigsResponse {
        use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse as Out;
        const TOPIC: i8 = 2;
        const GROUP: i8 = 32;
        let mut responses = Vec::with_capacity(r.resources.len());
        for res in r.resources {
            let mut out = Out::default()
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name.clone());
            let name = res.resource_name.to_string();
            let allowed = self.may_config(client, Operation::AlterConfigs, res.resource_type, &name);
            let result = match res.resource_type {
                _ if allowed.is_err() => {
                    Err((allowed.err().unwrap_or_default(), "not authorized".to_string()))
                }
                TOPIC => self.apply_incremental(&name, &res.configs, r.validate_only).await,
                GROUP => {
                    self.apply_group_incremental(&name, &res.configs, r.validate_only)
                        .await
                }
                _ => Err((
                    ec::INVALID_REQUEST,
                    "only topic and group configs can be altered on Rivulet".to_string(),
                )),
            };
            if let Err((code, message)) = result {
                tracing::info!(topic = %name, error = %message, "IncrementalAlterConfigs refused");
                out.error_code = code;
                out.error_message = Some(str_bytes(message));
            }
            responses.push(out);
        }
        IncrementalAlterConfigsResponse::default().with_responses(responses)
    }

    /// Applies SET (0) and DELETE (1) to a group's config overrides and stores the result.
    async fn apply_group_incremental(
        &self,
        group: &str,
        ops: &[kafka_protocol::messages::incremental_alter_configs_request::AlterableConfig],
        validate_only: bool,
    ) -> Result<(), (i16, String)> {
        use rivulet_broker::groups::configs::{self, GroupConfigError};
        let coordinator = self.broker.groups();
        let mut overrides = coordinator.group_configs(group);
        for op in ops {
            let key = op.name.to_string();
            match op.config_operation {
                0 => {
                    overrides.insert(key, op.value.as_deref().unwrap_or_default().to_string());
                }
                1 => {
                    overrides.remove(&key);
                }
                2 | 3 => {
                    return Err((
                        ec::INVALID_CONFIG,
                        format!("{key} is not a list: APPEND and SUBTRACT do not apply"),
                    ))
                }
                other => return Err((ec::INVALID_REQUEST, format!("unknown config operation {other}"))),
            }
        }
        let refused = |e: GroupConfigError| match e {
            GroupConfigError::Storage => (ec::KAFKA_STORAGE_ERROR, e.to_string()),
            other => (ec::INVALID_CONFIG, other.to_string()),
        };
        for (k, v) in &overrides {
            configs::check(k, v).map_err(refused)?;
        }
        if validate_only {
            return Ok(());
        }
        coordinator
            .set_group_configs(group, overrides)
            .await
            .map_err(refused)
    }

    /// Applies SET (0), DELETE (1), APPEND (2) and SUBTRACT (3) to a topic's overrides and
    /// stores the result.
    async fn apply_incremental(
        &self,
        topic: &str,
        ops: &[kafka_protocol::messages::incremental_alter_configs_request::AlterableConfig],
        validate_only: bool,
    ) -> Result<(), (i16, String)> {
        let fail = |e: BrokerError| {
            let code = match &e {
                BrokerError::InvalidConfig { .. } => ec::INVALID_CONFIG,
                other => broker_error_code(other),
            };
            (code, e.to_string())
        };
        let current = self.broker.existing_topic(topic).map_err(fail)?;
        let mut overrides = current.overrides();
        for op in ops {
            let key = op.name.to_string();
            let value = op.value.as_ref().map(|v| v.to_string()).unwrap_or_default();
            let described = current.describe_configs();
            let effective = || {
                overrides
                    .get(&key)
                    .cloned()
                    .or_else(|| described.iter().find(|c| c.name == key).map(|c| c.value.clone()))
            };
            match op.config_operation {
                0 => {
                    overrides.insert(key, value);
                }
                1 => {
                    overrides.remove(&key);
                }
                2 | 3 if key != "cleanup.policy" => {
                    return Err((
                        ec::INVALID_CONFIG,
                        format!("{key} is not a list: APPEND and SUBTRACT do not apply"),
                    ));
                }
                2 => {
                    let mut items = list_items(&effective().unwrap_or_default());
                    for item in list_items(&value) {
                        if !items.contains(&item) {
                            items.push(item);
                        }
                    }
                    overrides.insert(key, items.join(","));
                }
                3 => {
                    let remove = list_items(&value);
                    let items: Vec<String> = list_items(&effective().unwrap_or_default())
                        .into_iter()
                        .filter(|i| !remove.contains(i))
                        .collect();
                    overrides.insert(key, items.join(","));
                }
                other => return Err((ec::INVALID_REQUEST, format!("unknown config operation {other}"))),
            }
        }
        if validate_only {
            return self.broker.validate_topic_configs(&overrides).map_err(fail);
        }
        let broker = self.broker.clone();
        let name = topic.to_string();
        tokio::task::spawn_blocking(move || broker.set_topic_configs(&name, overrides))
            .await
            .unwrap_or_else(|e| Err(BrokerError::LimitReached(format!("config task failed: {e}"))))
            .map_err(fail)
    }

    pub(super) fn describe_configs(
        &self,
        r: DescribeConfigsRequest,
        client: &ClientInfo,
    ) -> DescribeConfigsResponse {
        const TOPIC: i8 = 2;
        const BROKER: i8 = 4;
        const GROUP: i8 = 32;
        // Kafka's config sources: a group's own value, and the default.
        const GROUP_CONFIG: i8 = 8;
        const DEFAULT_CONFIG: i8 = 5;
        let results = r
            .resources
            .into_iter()
            .map(|res| {
                let mut out = DescribeConfigsResult::default()
                    .with_resource_type(res.resource_type)
                    .with_resource_name(res.resource_name.clone());
                let wanted = |name: &str| {
                    res.configuration_keys
                        .as_ref()
                        .is_none_or(|keys| keys.iter().any(|k| &**k == name))
                };
                let entry = |name: String, value: String, source: i8| {
                    DescribeConfigsResourceResult::default()
                        .with_name(str_bytes(name))
                        .with_value(Some(str_bytes(value)))
                        .with_config_source(source)
                };
                let allowed = self.may_config(
                    client,
                    Operation::DescribeConfigs,
                    res.resource_type,
                    &res.resource_name,
                );
                match res.resource_type {
                    _ if allowed.is_err() => {
                        out.error_code = allowed.err().unwrap_or_default();
                        out.error_message = Some(str_bytes("not authorized"));
                    }
                    TOPIC => match self.broker.topic(&res.resource_name) {
                        Some(topic) => {
                            out.configs = topic
                                .describe_configs()
                                .into_iter()
                                .filter(|c| wanted(&c.name))
                                .map(|c| {
                                    let source = if c.is_default { 5 } else { 1 };
                                    entry(c.name, c.value, source)
                                })
                                .collect();
                        }
                        None => {
                            out.error_code = ec::UNKNOWN_TOPIC_OR_PARTITION;
                            out.error_message = Some(str_bytes("unknown topic"));
                        }
                    },
                    BROKER => {
                        let cfg = self.broker.config();
                        let defaults = &cfg.default_log_config;
                        let mut all = vec![
                            (
                                "auto.create.topics.enable".to_string(),
                                cfg.auto_create_topics.to_string(),
                            ),
                            ("num.partitions".to_string(), cfg.default_partitions.to_string()),
                            (
                                "rivulet.version".to_string(),
                                env!("CARGO_PKG_VERSION").to_string(),
                            ),
                            (
                                "rivulet.log.dirs.size.bytes".to_string(),
                                self.broker
                                    .topics()
                                    .iter()
                                    .map(|t| t.size_bytes())
                                    .sum::<u64>()
                                    .to_string(),
                            ),
                        ];
                        for key in rivulet_broker::topics::TOPIC_CONFIG_KEYS {
                            if let Some(value) = rivulet_broker::topics::topic_config_value(defaults, key) {
                                all.push((format!("log.{key}"), value));
                            }
                        }
                        out.configs = all
                            .into_iter()
                            .filter(|(k, _)| wanted(k))
                            .map(|(k, val)| entry(k, val, 4))
                            .collect();
                    }
                    GROUP => {
                        out.configs = self
                            .broker
                            .groups()
                            .describe_group_configs(&res.resource_name)
                            .into_iter()
                            .filter(|(k, _, _)| wanted(k))
                            .map(|(k, v, is_default)| {
                                entry(k, v, if is_default { DEFAULT_CONFIG } else { GROUP_CONFIG })
                            })
                            .collect();
                    }
                    other => {
                        out.error_code = ec::INVALID_REQUEST;
                        out.error_message =
                            Some(str_bytes(format!("resource type {other} is not supported")));
                    }
                }
                out
            })
            .collect();
        DescribeConfigsResponse::default().with_results(results)
    }
}

/// The items of a comma-separated list config.
fn list_items(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}
