//! The `*_authorized_operations` bit sets of Metadata, DescribeGroups and DescribeCluster.
//!
//! Kafka numbers its ACL operations (READ 3, WRITE 4, CREATE 5, DELETE 6, ALTER 7,
//! DESCRIBE 8, CLUSTER_ACTION 9, DESCRIBE_CONFIGS 10, ALTER_CONFIGS 11, IDEMPOTENT_WRITE 12)
//! and reports, per resource, a bit for each one the caller may perform. Rivulet has no
//! authorization yet, so every operation a resource type supports is allowed and reported.

const READ: i32 = 1 << 3;
const WRITE: i32 = 1 << 4;
const CREATE: i32 = 1 << 5;
const DELETE: i32 = 1 << 6;
const ALTER: i32 = 1 << 7;
const DESCRIBE: i32 = 1 << 8;
const CLUSTER_ACTION: i32 = 1 << 9;
const DESCRIBE_CONFIGS: i32 = 1 << 10;
const ALTER_CONFIGS: i32 = 1 << 11;
const IDEMPOTENT_WRITE: i32 = 1 << 12;

/// What a client may do with a topic.
pub const TOPIC: i32 = READ | WRITE | CREATE | DESCRIBE | DELETE | ALTER | DESCRIBE_CONFIGS | ALTER_CONFIGS;
/// What a client may do with a consumer group.
pub const GROUP: i32 = READ | DESCRIBE | DELETE;
/// What a client may do with the cluster.
pub const CLUSTER: i32 =
    ALTER | CREATE | DESCRIBE | CLUSTER_ACTION | DESCRIBE_CONFIGS | ALTER_CONFIGS | IDEMPOTENT_WRITE;

/// The value of an `*_authorized_operations` field: the set when the client asked for it,
/// Kafka's "not asked" marker (`Integer.MIN_VALUE`) otherwise.
pub fn reported(asked: bool, set: i32) -> i32 {
    if asked {
        set
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
        assert_eq!(TOPIC, 0b1101_1111_1000);
        assert_eq!(GROUP, 0b1_0100_1000);
        assert_eq!(CLUSTER, 0b1_1111_1010_0000);
        assert_eq!(reported(false, TOPIC), i32::MIN);
        assert_eq!(reported(true, GROUP), GROUP);
    }
}
