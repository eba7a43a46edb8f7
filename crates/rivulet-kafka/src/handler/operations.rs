//! The `*_authorized_operations` bit sets of Metadata, DescribeGroups and DescribeCluster.
//!
//! Kafka numbers its ACL operations (READ 3, WRITE 4, CREATE 5, DELETE 6, ALTER 7,
//! DESCRIBE 8, CLUSTER_ACTION 9, DESCRIBE_CONFIGS 10, ALTER_CONFIGS 11, IDEMPOTENT_WRITE 12)
//! and reports, per resource, a bit for each one the caller may perform: every operation a
//! resource type supports when logins are off or for a superuser, what the ACLs grant
//! otherwise.

use rivulet_broker::acl::{Operation, ResourceType, CLUSTER_NAME};

use super::{ClientInfo, Handler};

/// The operations each resource type supports.
const TOPIC_OPS: &[Operation] = &[
    Operation::Read,
    Operation::Write,
    Operation::Create,
    Operation::Delete,
    Operation::Alter,
    Operation::Describe,
    Operation::DescribeConfigs,
    Operation::AlterConfigs,
];
const GROUP_OPS: &[Operation] = &[Operation::Read, Operation::Describe, Operation::Delete];
const CLUSTER_OPS: &[Operation] = &[
    Operation::Create,
    Operation::Alter,
    Operation::Describe,
    Operation::ClusterAction,
    Operation::DescribeConfigs,
    Operation::AlterConfigs,
    Operation::IdempotentWrite,
];

fn bits(ops: &[Operation], mut allowed: impl FnMut(Operation) -> bool) -> i32 {
    ops.iter()
        .filter(|op| allowed(**op))
        .fold(0, |set, op| set | (1 << op.code()))
}

impl Handler {
    fn operations(&self, client: &ClientInfo, kind: ResourceType, name: &str, ops: &[Operation]) -> i32 {
        bits(ops, |op| self.broker.authorized(client.who(), op, kind, name))
    }

    /// What the client may do with a topic.
    pub(super) fn topic_operations(&self, client: &ClientInfo, topic: &str) -> i32 {
        self.operations(client, ResourceType::Topic, topic, TOPIC_OPS)
    }

    /// What the client may do with a group.
    pub(super) fn group_operations(&self, client: &ClientInfo, group: &str) -> i32 {
        self.operations(client, ResourceType::Group, group, GROUP_OPS)
    }

    /// What the client may do with the cluster.
    pub(super) fn cluster_operations(&self, client: &ClientInfo) -> i32 {
        self.operations(client, ResourceType::Cluster, CLUSTER_NAME, CLUSTER_OPS)
    }
}

/// The value of an `*_authorized_operations` field: the set when the client asked for it,
/// Kafka's "not asked" marker (`Integer.MIN_VALUE`) otherwise.
pub fn reported(asked: bool, set: impl FnOnce() -> i32) -> i32 {
    if asked {
        set()
    } else {
        i32::MIN
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_hold_kafkas_bits() {
        // The values Kafka reports for a superuser (computed from its AclOperation codes).
        assert_eq!(bits(TOPIC_OPS, |_| true), 0b1101_1111_1000);
        assert_eq!(bits(GROUP_OPS, |_| true), 0b1_0100_1000);
        assert_eq!(bits(CLUSTER_OPS, |_| true), 0b1_1111_1010_0000);
        assert_eq!(bits(GROUP_OPS, |op| op == Operation::Read), 0b1000);
        assert_eq!(reported(false, || 1), i32::MIN);
        assert_eq!(reported(true, || 7), 7);
    }
}
