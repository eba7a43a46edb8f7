//! The ACL model: Kafka's, so its admin tools work unchanged. An ACL binding says that a
//! principal from a host may (or may not) perform an operation on resources of a type whose
//! names match a pattern. Numeric codes are Kafka's and stable.

use serde::{Deserialize, Serialize};

use super::AclError;

/// The name of the one cluster resource.
pub const CLUSTER_NAME: &str = "kafka-cluster";
/// The wildcard: any principal (`User:*`), any host, any literal resource name.
pub const WILDCARD: &str = "*";
/// Longest resource name, principal or host in a binding.
pub const NAME_BYTES_MAX: usize = 1_024;

macro_rules! coded {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $code:expr, $text:expr;)* }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vdoc])* $variant,)*
        }

        impl $name {
            /// Kafka's numeric code.
            pub fn code(self) -> i8 {
                match self { $($name::$variant => $code,)* }
            }

            /// The value of a Kafka code, `None` for unknown codes.
            pub fn from_code(code: i8) -> Option<$name> {
                match code { $($code => Some($name::$variant),)* _ => None }
            }

            /// The lower-case name used by the CLI and the HTTP API.
            pub fn name(self) -> &'static str {
                match self { $($name::$variant => $text,)* }
            }

            /// Parses [`Self::name`] (case and `-`/`_` insensitive).
            pub fn parse(text: &str) -> Option<$name> {
                let wanted = text.to_ascii_lowercase().replace('-', "_");
                [$($name::$variant),*].into_iter().find(|v| v.name() == wanted)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

coded!(
    /// The kind of resource an ACL applies to.
    ResourceType {
        /// Filters only: every type.
        Any = 1, "any";
        /// A topic (AMQP queues and streams are topics).
        Topic = 2, "topic";
        /// A consumer group (also share groups).
        Group = 3, "group";
        /// The cluster: creating topics, managing users and ACLs, describing the node.
        Cluster = 4, "cluster";
        /// A transactional producer id.
        TransactionalId = 5, "transactional_id";
    }
);

coded!(
    /// How a binding's resource name matches.
    PatternType {
        /// Filters only: literal or prefixed.
        Any = 1, "any";
        /// Filters only: every binding that applies to the filter's (concrete) name.
        Match = 2, "match";
        /// The name itself, or every name when it is `*`.
        Literal = 3, "literal";
        /// Every name that starts with it.
        Prefixed = 4, "prefixed";
    }
);

coded!(
    /// What a principal does to a resource.
    Operation {
        /// Filters only: every operation.
        Any = 1, "any";
        /// Every operation.
        All = 2, "all";
        /// Consume from a topic, join or commit in a group.
        Read = 3, "read";
        /// Produce to a topic or with a transactional id.
        Write = 4, "write";
        /// Create topics.
        Create = 5, "create";
        /// Delete topics, records or groups.
        Delete = 6, "delete";
        /// Add partitions; manage users and ACLs (on the cluster).
        Alter = 7, "alter";
        /// See that a resource exists and its state.
        Describe = 8, "describe";
        /// Broker-to-broker actions (accepted in bindings; unused by one node).
        ClusterAction = 9, "cluster_action";
        /// Read configuration.
        DescribeConfigs = 10, "describe_configs";
        /// Change configuration.
        AlterConfigs = 11, "alter_configs";
        /// Idempotent produce without a transactional id.
        IdempotentWrite = 12, "idempotent_write";
    }
);

coded!(
    /// Whether a binding grants or refuses.
    Permission {
        /// Filters only: both.
        Any = 1, "any";
        /// Refuses; a matching deny wins over every allow.
        Deny = 2, "deny";
        /// Grants.
        Allow = 3, "allow";
    }
);

impl Operation {
    /// True when a grant of `self` also grants `wanted` (Kafka's implications: a principal
    /// that may read, write, delete or alter may describe; one that may alter configs may
    /// describe them).
    pub fn implies(self, wanted: Operation) -> bool {
        use Operation::*;
        self == wanted
            || self == All
            || (wanted == Describe && matches!(self, Read | Write | Delete | Alter))
            || (wanted == DescribeConfigs && self == AlterConfigs)
    }
}

/// One ACL.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AclBinding {
    /// The resource type.
    pub resource_type: ResourceType,
    /// The resource name or prefix.
    pub resource_name: String,
    /// Literal or prefixed.
    pub pattern_type: PatternType,
    /// `User:<name>` or `User:*`.
    pub principal: String,
    /// A client address, or `*`.
    pub host: String,
    /// The operation.
    pub operation: Operation,
    /// Allow or deny.
    pub permission: Permission,
}

impl AclBinding {
    /// Checks the binding can be stored: concrete type, pattern, operation and permission;
    /// a `User:` principal; a prefix that is not empty; the cluster named `kafka-cluster`.
    pub fn validate(&self) -> Result<(), AclError> {
        let bad = |reason: &str| Err(AclError::Invalid(reason.to_string()));
        if self.resource_type == ResourceType::Any {
            return bad("resource type any is for filters only");
        }
        if !matches!(self.pattern_type, PatternType::Literal | PatternType::Prefixed) {
            return bad("pattern type must be literal or prefixed");
        }
        if self.operation == Operation::Any || self.permission == Permission::Any {
            return bad("operation and permission must be concrete");
        }
        let user = self.principal.strip_prefix("User:").unwrap_or_default();
        if user.is_empty() || user.chars().any(char::is_control) {
            return bad("principal must be User:<name> or User:*");
        }
        if self.host.is_empty() || (self.host != WILDCARD && self.host.parse::<std::net::IpAddr>().is_err()) {
            return bad("host must be * or an IP address");
        }
        if self.resource_name.is_empty() {
            return bad("resource name must not be empty");
        }
        if self.resource_type == ResourceType::Cluster
            && (self.resource_name != CLUSTER_NAME || self.pattern_type != PatternType::Literal)
        {
            return bad("the cluster resource is the literal name kafka-cluster");
        }
        let long = [&self.resource_name, &self.principal, &self.host];
        if long.iter().any(|s| s.len() > NAME_BYTES_MAX) {
            return bad("names are at most 1024 bytes");
        }
        Ok(())
    }

    /// True when the binding applies to the resource `(kind, name)`.
    pub fn applies_to(&self, kind: ResourceType, name: &str) -> bool {
        self.resource_type == kind
            && match self.pattern_type {
                PatternType::Literal => self.resource_name == name || self.resource_name == WILDCARD,
                PatternType::Prefixed => name.starts_with(&self.resource_name),
                PatternType::Any | PatternType::Match => false,
            }
    }
}

/// Selects bindings (DescribeAcls, DeleteAcls): `None` and the `Any` values match all.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AclFilter {
    /// The resource type, `None` for any.
    pub resource_type: Option<ResourceType>,
    /// The resource name, `None` for any.
    pub resource_name: Option<String>,
    /// How `resource_name` matches; `None` is [`PatternType::Any`].
    pub pattern_type: Option<PatternType>,
    /// The principal, `None` for any.
    pub principal: Option<String>,
    /// The host, `None` for any.
    pub host: Option<String>,
    /// The operation, `None` for any.
    pub operation: Option<Operation>,
    /// The permission, `None` for any.
    pub permission: Option<Permission>,
}

fn same<T: PartialEq>(filter: &Option<T>, value: &T) -> bool {
    filter.as_ref().is_none_or(|f| f == value)
}

impl AclFilter {
    /// True when `b` is selected.
    pub fn matches(&self, b: &AclBinding) -> bool {
        let any_type = matches!(self.resource_type, None | Some(ResourceType::Any));
        let type_ok = any_type || self.resource_type == Some(b.resource_type);
        let op_ok =
            matches!(self.operation, None | Some(Operation::Any)) || self.operation == Some(b.operation);
        let perm_ok =
            matches!(self.permission, None | Some(Permission::Any)) || self.permission == Some(b.permission);
        type_ok
            && op_ok
            && perm_ok
            && same(&self.principal, &b.principal)
            && same(&self.host, &b.host)
            && self.name_matches(b)
    }

    fn name_matches(&self, b: &AclBinding) -> bool {
        let pattern = self.pattern_type.unwrap_or(PatternType::Any);
        let Some(name) = &self.resource_name else {
            return match pattern {
                PatternType::Any | PatternType::Match => true,
                p => p == b.pattern_type,
            };
        };
        match pattern {
            PatternType::Any => &b.resource_name == name,
            PatternType::Match => b.applies_to(b.resource_type, name),
            p => p == b.pattern_type && &b.resource_name == name,
        }
    }
}
