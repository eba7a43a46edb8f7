//! `rivulet acl`: the ACLs every front end enforces once logins are on (`rivulet serve
//! --auth`), through the HTTP admin API. Kafka tools (kafka-acls, AdminClient, rpk) manage
//! the same bindings with CreateAcls, DescribeAcls and DeleteAcls.

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use super::admin_http::HttpArgs;
use super::output::{emit, emit_json, Table};
use super::{ConnArgs, Format};

/// Arguments of `rivulet acl`.
#[derive(Debug, Args)]
pub struct AclArgs {
    #[command(subcommand)]
    command: AclCommand,
    #[command(flatten)]
    http: HttpArgs,
    #[command(flatten)]
    conn: ConnArgs,
}

/// The resources an ACL command names (any number of each).
#[derive(Debug, Args, Default)]
struct Resources {
    /// Topic names (AMQP queues and exchanges are topics too); `*` for every topic
    #[arg(long = "topic", value_name = "NAME")]
    topics: Vec<String>,
    /// Consumer group names; `*` for every group
    #[arg(long = "group", value_name = "NAME")]
    groups: Vec<String>,
    /// Transactional ids; `*` for every id
    #[arg(long = "transactional-id", value_name = "ID")]
    transactional_ids: Vec<String>,
    /// The cluster (creating topics, managing users and ACLs, describing the broker)
    #[arg(long)]
    cluster: bool,
    /// The names are prefixes: every resource whose name starts with one
    #[arg(long)]
    prefixed: bool,
}

impl Resources {
    /// (resource type, name) pairs.
    fn list(&self) -> Vec<(&'static str, String)> {
        let named = |kind: &'static str, names: &[String]| {
            names.iter().map(move |n| (kind, n.clone())).collect::<Vec<_>>()
        };
        let mut out = named("topic", &self.topics);
        out.extend(named("group", &self.groups));
        out.extend(named("transactional_id", &self.transactional_ids));
        if self.cluster {
            out.push(("cluster", "kafka-cluster".to_string()));
        }
        out
    }

    fn pattern(&self, kind: &str) -> &'static str {
        if self.prefixed && kind != "cluster" {
            "prefixed"
        } else {
            "literal"
        }
    }
}

#[derive(Debug, Subcommand)]
enum AclCommand {
    /// Allow (or with --deny, refuse) users operations on resources.
    Create {
        /// Users the ACLs are for; `*` for every user
        #[arg(long = "user", value_name = "NAME", required = true)]
        users: Vec<String>,
        /// Operations: all, read, write, create, delete, alter, describe, describe_configs,
        /// alter_configs, idempotent_write (comma-separated)
        #[arg(long = "operation", value_name = "OP", value_delimiter = ',', required = true)]
        operations: Vec<String>,
        #[command(flatten)]
        resources: Resources,
        /// Only for clients from this address (default: any)
        #[arg(long, default_value = "*")]
        host: String,
        /// Refuse instead of allow (a deny wins over every allow)
        #[arg(long)]
        deny: bool,
    },
    /// List ACLs, all or those of a user or resource.
    List {
        /// Only this user's ACLs
        #[arg(long = "user", id = "acl_user", value_name = "NAME")]
        user: Option<String>,
        #[command(flatten)]
        resources: Resources,
    },
    /// Delete the ACLs of a user and/or resource (at least one must be given).
    Delete {
        /// Only this user's ACLs
        #[arg(long = "user", id = "acl_user", value_name = "NAME")]
        user: Option<String>,
        /// Only ACLs of this operation
        #[arg(long)]
        operation: Option<String>,
        #[command(flatten)]
        resources: Resources,
    },
}

/// Percent-encodes a query value.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Filter queries: one per resource named, or one for all resources.
fn filters(user: Option<&str>, operation: Option<&str>, resources: &Resources) -> Vec<String> {
    let mut base = Vec::new();
    if let Some(u) = user {
        base.push(format!("principal={}", encode(&format!("User:{u}"))));
    }
    if let Some(op) = operation {
        base.push(format!("operation={}", encode(op)));
    }
    let listed = resources.list();
    if listed.is_empty() {
        return vec![base.join("&")];
    }
    listed
        .into_iter()
        .map(|(kind, name)| {
            let mut q = base.clone();
            q.push(format!("resource_type={kind}"));
            q.push(format!("resource_name={}", encode(&name)));
            q.push(format!("pattern_type={}", resources.pattern(kind)));
            q.join("&")
        })
        .collect()
}

fn table_of(acls: &[Value]) -> String {
    let mut table = Table::new(&[
        "principal",
        "host",
        "resource",
        "name",
        "pattern",
        "operation",
        "permission",
    ]);
    for a in acls {
        let cell = |k: &str| a[k].as_str().unwrap_or("?").to_string();
        table.row(vec![
            cell("principal"),
            cell("host"),
            cell("resource_type"),
            cell("resource_name"),
            cell("pattern_type"),
            cell("operation"),
            cell("permission"),
        ]);
    }
    table.render()
}

/// Runs `rivulet acl`.
pub fn run_acl(args: AclArgs) -> Result<()> {
    let timeout = args.conn.timeout();
    let json = args.conn.format == Format::Json;
    match &args.command {
        AclCommand::Create {
            users,
            operations,
            resources,
            host,
            deny,
        } => {
            let listed = resources.list();
            if listed.is_empty() {
                bail!("name a resource: --topic, --group, --transactional-id or --cluster");
            }
            let mut acls = Vec::new();
            for user in users {
                for op in operations {
                    for (kind, name) in &listed {
                        acls.push(json!({
                            "resource_type": kind, "resource_name": name,
                            "pattern_type": resources.pattern(kind), "principal": format!("User:{user}"),
                            "host": host, "operation": op.trim(),
                            "permission": if *deny { "deny" } else { "allow" },
                        }));
                    }
                }
            }
            let body = json!({ "acls": acls });
            let created = args.http.call_with("POST", "/v1/acls", Some(&body), timeout)?;
            if json {
                return emit_json(&created);
            }
            emit(&format!("Created {} ACLs\n", acls.len()))
        }
        AclCommand::List { user, resources } => {
            let mut all = Vec::new();
            for q in filters(user.as_deref(), None, resources) {
                let value = args.http.call("GET", &format!("/v1/acls?{q}"), timeout)?;
                all.extend(value["acls"].as_array().cloned().unwrap_or_default());
            }
            if json {
                return emit_json(&json!({ "acls": all }));
            }
            emit(&table_of(&all))
        }
        AclCommand::Delete {
            user,
            operation,
            resources,
        } => {
            if user.is_none() && resources.list().is_empty() {
                bail!("name a user (--user) or a resource (--topic, --group, --transactional-id, --cluster)");
            }
            let mut deleted = Vec::new();
            for q in filters(user.as_deref(), operation.as_deref(), resources) {
                let value = args.http.call("DELETE", &format!("/v1/acls?{q}"), timeout)?;
                deleted.extend(value["deleted"].as_array().cloned().unwrap_or_default());
            }
            if json {
                return emit_json(&json!({ "deleted": deleted }));
            }
            emit(&format!("Deleted {} ACLs\n{}", deleted.len(), table_of(&deleted)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_name_each_resource_or_none() {
        let r = Resources {
            topics: vec!["a b".into()],
            cluster: true,
            ..Resources::default()
        };
        let f = filters(Some("alice"), Some("read"), &r);
        assert_eq!(f.len(), 2);
        assert_eq!(
            f[0],
            "principal=User%3Aalice&operation=read&resource_type=topic&resource_name=a%20b&pattern_type=literal"
        );
        assert!(f[1].ends_with("resource_type=cluster&resource_name=kafka-cluster&pattern_type=literal"));
        assert_eq!(filters(None, None, &Resources::default()), vec![String::new()]);
    }
}
