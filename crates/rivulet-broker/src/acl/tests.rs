use proptest::prelude::*;

use super::*;
use crate::BrokerConfig;

fn open(dir: &std::path::Path, auth: bool) -> Broker {
    Broker::open(BrokerConfig {
        data_dir: dir.to_path_buf(),
        auth_required: auth,
        superusers: vec!["root".into()],
        journal: None,
        ..BrokerConfig::default()
    })
    .expect("open")
}

fn binding(
    kind: ResourceType,
    name: &str,
    pattern: PatternType,
    user: &str,
    op: Operation,
    perm: Permission,
) -> AclBinding {
    AclBinding {
        resource_type: kind,
        resource_name: name.into(),
        pattern_type: pattern,
        principal: format!("User:{user}"),
        host: "*".into(),
        operation: op,
        permission: perm,
    }
}

fn who(user: &str) -> Who<'_> {
    Who {
        protocol: "test",
        user: Some(user),
        host: "10.0.0.1",
    }
}

fn create(broker: &Broker, bindings: Vec<AclBinding>) {
    for r in broker.acl_create(bindings).expect("stored") {
        r.expect("valid");
    }
}

#[test]
fn nothing_is_allowed_without_a_binding_but_superusers_may_do_everything() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = open(dir.path(), true);
    let topic = ResourceType::Topic;
    assert!(!broker.authorized(who("alice"), Operation::Read, topic, "orders"));
    assert!(broker.authorized(who("root"), Operation::Delete, topic, "orders"));
    let anonymous = Who {
        user: None,
        ..who("x")
    };
    assert!(!broker.authorized(anonymous, Operation::Describe, topic, "orders"));
}

#[test]
fn without_logins_everything_is_allowed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = open(dir.path(), false);
    let anonymous = Who {
        user: None,
        ..who("x")
    };
    assert!(broker.authorized(anonymous, Operation::Write, ResourceType::Topic, "t"));
    assert!(broker.authorized_any(anonymous, Operation::Write, ResourceType::Topic));
}

#[test]
fn deny_wins_implications_hold_and_prefixes_and_wildcards_match() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = open(dir.path(), true);
    use Operation::*;
    use PatternType::*;
    use Permission::*;
    use ResourceType::*;
    create(
        &broker,
        vec![
            binding(Topic, "orders-", Prefixed, "alice", Read, Allow),
            binding(Topic, "orders-secret", Literal, "alice", All, Deny),
            binding(Topic, "*", Literal, "*", Describe, Allow),
            binding(Group, "billing", Literal, "alice", Read, Allow),
            binding(Cluster, CLUSTER_NAME, Literal, "ops", AlterConfigs, Allow),
        ],
    );
    assert!(broker.authorized(who("alice"), Read, Topic, "orders-eu"));
    assert!(!broker.authorized(who("alice"), Write, Topic, "orders-eu"));
    assert!(!broker.authorized(who("alice"), Read, Topic, "orders-secret"));
    assert!(!broker.authorized(who("alice"), Describe, Topic, "orders-secret"));
    assert!(broker.authorized(who("bob"), Describe, Topic, "anything"));
    assert!(!broker.authorized(who("bob"), Read, Topic, "anything"));
    assert!(
        broker.authorized(who("alice"), Describe, Group, "billing"),
        "read implies describe"
    );
    assert!(!broker.authorized(who("alice"), Delete, Group, "billing"));
    assert!(broker.authorized(who("ops"), DescribeConfigs, Cluster, CLUSTER_NAME));
    assert!(!broker.authorized(who("ops"), Alter, Cluster, CLUSTER_NAME));
    assert!(broker.authorized_any(who("alice"), Read, Topic));
    assert!(!broker.authorized_any(who("alice"), Write, Topic));
}

#[test]
fn a_binding_for_one_host_does_not_apply_to_another() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = open(dir.path(), true);
    let mut b = binding(
        ResourceType::Topic,
        "t",
        PatternType::Literal,
        "alice",
        Operation::Write,
        Permission::Allow,
    );
    b.host = "10.0.0.1".into();
    create(&broker, vec![b]);
    assert!(broker.authorized(who("alice"), Operation::Write, ResourceType::Topic, "t"));
    let elsewhere = Who {
        host: "10.0.0.2",
        ..who("alice")
    };
    assert!(!broker.authorized(elsewhere, Operation::Write, ResourceType::Topic, "t"));
}

#[test]
fn invalid_bindings_are_refused_one_by_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = open(dir.path(), true);
    let good = binding(
        ResourceType::Topic,
        "t",
        PatternType::Literal,
        "a",
        Operation::Read,
        Permission::Allow,
    );
    let mut bad_principal = good.clone();
    bad_principal.principal = "Group:x".into();
    let mut bad_cluster = good.clone();
    bad_cluster.resource_type = ResourceType::Cluster;
    let mut bad_host = good.clone();
    bad_host.host = "not-an-ip".into();
    let mut any_op = good.clone();
    any_op.operation = Operation::Any;
    let results = broker
        .acl_create(vec![good, bad_principal, bad_cluster, bad_host, any_op])
        .expect("stored");
    assert!(results[0].is_ok());
    assert!(results[1..]
        .iter()
        .all(|r| matches!(r, Err(AclError::Invalid(_)))));
    assert_eq!(broker.acls(&AclFilter::default()).len(), 1);
}

#[test]
fn bindings_survive_a_restart_and_filters_delete_what_they_select() {
    let dir = tempfile::tempdir().expect("tempdir");
    use Operation::*;
    use PatternType::*;
    use Permission::*;
    use ResourceType::*;
    {
        let broker = open(dir.path(), true);
        create(
            &broker,
            vec![
                binding(Topic, "a", Literal, "alice", Read, Allow),
                binding(Topic, "a", Literal, "bob", Read, Allow),
                binding(Topic, "a-", Prefixed, "bob", Write, Allow),
                binding(Group, "g", Literal, "bob", Read, Allow),
            ],
        );
        broker.close().expect("close");
    }
    let broker = open(dir.path(), true);
    assert_eq!(broker.acls(&AclFilter::default()).len(), 4);
    let matching = AclFilter {
        resource_type: Some(Topic),
        resource_name: Some("a-1".into()),
        pattern_type: Some(Match),
        ..AclFilter::default()
    };
    assert_eq!(broker.acls(&matching).len(), 1, "only the prefix applies to a-1");
    let bobs_topics = AclFilter {
        resource_type: Some(Topic),
        principal: Some("User:bob".into()),
        ..AclFilter::default()
    };
    let removed = broker.acl_delete(&[bobs_topics]).expect("deleted");
    assert_eq!(removed[0].len(), 2);
    assert!(!broker.authorized(who("bob"), Read, Topic, "a"));
    assert!(broker.authorized(who("bob"), Read, Group, "g"));
    broker.close().expect("close");
    drop(broker);
    assert_eq!(open(dir.path(), true).acls(&AclFilter::default()).len(), 2);
}

fn arb_binding() -> impl Strategy<Value = AclBinding> {
    use Operation::*;
    let names = prop::sample::select(vec!["*", "a", "ab", "abc", "b"]);
    let users = prop::sample::select(vec!["*", "u1", "u2"]);
    let ops = prop::sample::select(vec![
        All,
        Read,
        Write,
        Describe,
        Alter,
        AlterConfigs,
        DescribeConfigs,
    ]);
    let kinds = prop::sample::select(vec![ResourceType::Topic, ResourceType::Group]);
    (kinds, names, any::<bool>(), users, ops, any::<bool>()).prop_map(|(k, n, prefixed, u, op, allow)| {
        let pattern = if prefixed && n != "*" {
            PatternType::Prefixed
        } else {
            PatternType::Literal
        };
        let perm = if allow {
            Permission::Allow
        } else {
            Permission::Deny
        };
        binding(k, n, pattern, u, op, perm)
    })
}

/// The decision by a plain scan of every binding: what the index must agree with.
fn reference(bindings: &[AclBinding], user: &str, op: Operation, kind: ResourceType, name: &str) -> bool {
    let applying: Vec<_> = bindings
        .iter()
        .filter(|b| b.applies_to(kind, name))
        .filter(|b| b.principal == format!("User:{user}") || b.principal == "User:*")
        .collect();
    let denied = applying
        .iter()
        .any(|b| b.permission == Permission::Deny && (b.operation == op || b.operation == Operation::All));
    !denied
        && applying
            .iter()
            .any(|b| b.permission == Permission::Allow && b.operation.implies(op))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn the_index_decides_as_a_scan_of_every_binding(
        bindings in prop::collection::vec(arb_binding(), 0..12),
        queries in prop::collection::vec((prop::sample::select(vec!["u1", "u2"]),
            prop::sample::select(vec![Operation::Read, Operation::Write, Operation::Describe, Operation::DescribeConfigs]),
            prop::sample::select(vec![ResourceType::Topic, ResourceType::Group]),
            prop::sample::select(vec!["a", "ab", "abc", "b", "c", "*"])), 1..16),
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let broker = open(dir.path(), true);
        create(&broker, bindings.clone());
        for (user, op, kind, name) in queries {
            let expected = reference(&bindings, user, op, kind, name);
            prop_assert_eq!(broker.authorized(who(user), op, kind, name), expected, "{} {:?} {:?} {}", user, op, kind, name);
        }
    }
}
