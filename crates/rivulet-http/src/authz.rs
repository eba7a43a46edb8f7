//! Authorization on the HTTP gateway: each route needs an operation on a resource, the
//! same ACLs the Kafka and AMQP front ends check (see `rivulet_broker::acl`). The login
//! middleware ([`crate::auth`]) puts the user in the request; this maps the route to what
//! it needs and answers 403 when the user may not. Lists (topics, queues, groups,
//! transactions) show only what the user may describe; see [`Caller`].

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rivulet_broker::acl::{Operation, ResourceType, Who, CLUSTER_NAME};
use rivulet_broker::Broker;

use crate::AppState;

/// The logged-in user of a request (absent when logins are off).
#[derive(Debug, Clone)]
pub(crate) struct User(pub String);

/// Who calls a handler, for filtering lists by what they may describe.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    user: Option<String>,
    host: String,
}

impl Caller {
    fn of(request: &Request) -> Caller {
        let host = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map_or_else(|| "unknown".to_string(), |c| c.0.ip().to_string());
        let user = request.extensions().get::<User>().map(|u| u.0.clone());
        Caller { user, host }
    }

    fn who(&self) -> Who<'_> {
        Who {
            protocol: "http",
            user: self.user.as_deref(),
            host: &self.host,
        }
    }

    /// May the caller create the topic: create on the cluster or on the topic?
    pub(crate) fn may_create_topic(&self, broker: &Broker, name: &str) -> bool {
        broker.authorized(self.who(), Operation::Create, ResourceType::Cluster, CLUSTER_NAME)
            || broker.authorize(self.who(), Operation::Create, ResourceType::Topic, name)
    }

    /// May the caller do `op` on the resource? (A refusal is logged and counted.)
    pub(crate) fn may(&self, broker: &Broker, op: Operation, kind: ResourceType, name: &str) -> bool {
        broker.authorize(self.who(), op, kind, name)
    }

    /// May the caller describe the resource? (Silent: for filtering lists.)
    pub(crate) fn sees(&self, broker: &Broker, kind: ResourceType, name: &str) -> bool {
        broker.authorized(self.who(), Operation::Describe, kind, name)
    }
}

/// One thing a route needs.
type Need = (Operation, ResourceType, String);

fn cluster(op: Operation) -> Need {
    (op, ResourceType::Cluster, CLUSTER_NAME.to_string())
}

fn topic(op: Operation, name: &str) -> Need {
    (op, ResourceType::Topic, name.to_string())
}

/// What a route needs; empty for routes any logged-in user may call (lists filter their
/// items; topic creation checks in its handler, where the name is known).
fn needs(method: &Method, segments: &[&str], group: Option<&str>, user: Option<&str>) -> Vec<Need> {
    use Operation::*;
    let get = method == Method::GET;
    let delete = method == Method::DELETE;
    let group_read = group.map(|g| (Read, ResourceType::Group, g.to_string()));
    match segments {
        ["v1", "topics", t] if get => vec![topic(Describe, t)],
        ["v1", "topics", t] if delete => vec![topic(Delete, t)],
        ["v1", "topics", t, "records"] => vec![topic(Write, t)],
        ["v1", "topics", t, "partitions"] => vec![topic(Alter, t)],
        ["v1", "topics", t, "partitions", _, "delete-records"] => vec![topic(Delete, t)],
        ["v1", "topics", t, "partitions", _, "producers"] => vec![topic(Read, t)],
        ["v1", "topics", t, "partitions", _, "records"] | ["v1", "topics", t, "events"] => {
            std::iter::once(topic(Read, t)).chain(group_read).collect()
        }
        ["v1", "groups", g, "reset-offsets"] => vec![(Read, ResourceType::Group, g.to_string())],
        ["v1", "topics", t, "configs"] => vec![topic(AlterConfigs, t)],
        ["v1", "dead-letters", t, "redrive"] => vec![topic(Read, t)],
        ["v1", "stats", ..] => group
            .map(|g| (Describe, ResourceType::Group, g.to_string()))
            .into_iter()
            .collect(),
        ["v1", "groups", g, "offsets", t] => {
            vec![(Delete, ResourceType::Group, g.to_string()), topic(Read, t)]
        }
        ["v1", "groups", g] if get => vec![(Describe, ResourceType::Group, g.to_string())],
        ["v1", "jobs"] => vec![topic(Describe, "rivulet.jobs")],
        ["v1", "jobs", j] => vec![
            topic(Describe, "rivulet.jobs"),
            (Describe, ResourceType::Group, j.to_string()),
        ],
        ["v1", "groups", g] => vec![(Delete, ResourceType::Group, g.to_string())],
        ["v1", "queues" | "exchanges", q] if get => vec![topic(Describe, q)],
        ["v1", "queues" | "exchanges", q] => vec![topic(Delete, q)],
        ["v1", "queues", q, "purge"] => vec![topic(Delete, q)],
        ["v1", "transactions", id] => vec![(Describe, ResourceType::TransactionalId, id.to_string())],
        ["v1", "transactions", id, "abort"] => vec![(Write, ResourceType::TransactionalId, id.to_string())],
        // A user may change its own password; other user changes need alter on the cluster.
        ["v1", "users", u] if method == Method::PUT && Some(*u) == user => Vec::new(),
        ["v1", "users", ..] if get => vec![cluster(Describe)],
        ["v1", "users", ..] => vec![cluster(Alter)],
        ["v1", "acls", ..] if get => vec![cluster(Describe)],
        ["v1", "acls", ..] => vec![cluster(Alter)],
        _ => Vec::new(),
    }
}

/// What an event store route needs: streams live in one topic, so reading, writing and
/// deleting streams are read, write and delete on that topic (the same permissions a Kafka
/// client reading the topic needs).
fn stream_needs(method: &Method, events_topic: &str) -> Vec<Need> {
    let op = match *method {
        Method::GET => Operation::Read,
        Method::DELETE => Operation::Delete,
        _ => Operation::Write,
    };
    vec![topic(op, events_topic)]
}

fn forbidden(op: Operation, kind: ResourceType, name: &str) -> Response {
    let message = format!("not authorized to {op} {kind} {name:?}");
    (
        StatusCode::FORBIDDEN,
        axum::Json(serde_json::json!({"error_code": 40302, "message": message})),
    )
        .into_response()
}

/// The middleware: checks what the route needs, and gives handlers the [`Caller`].
pub(crate) async fn authorize(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let caller = Caller::of(&request);
    if state.broker.auth_required() {
        let path = request.uri().path().to_string();
        let segments: Vec<String> = path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(percent_decode)
            .collect();
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        let query: Option<Query<HashMap<String, String>>> = Query::try_from_uri(request.uri()).ok();
        let group = query.as_ref().and_then(|q| q.get("group")).map(String::as_str);
        let needed = match (segments.as_slice(), &state.config.event_store) {
            (["v1", "streams", ..], Some(store)) => stream_needs(request.method(), store.topic()),
            (["v1", "subscriptions"], Some(store)) => vec![topic(Operation::Describe, store.topic())],
            // Scavenging removes records from the events topic.
            (["v1", "scavenge"], Some(store)) => vec![topic(Operation::Delete, store.topic())],
            _ => needs(request.method(), &segments, group, caller.user.as_deref()),
        };
        for (op, kind, name) in needed {
            if !state.broker.authorize(caller.who(), op, kind, &name) {
                return forbidden(op, kind, &name);
            }
        }
    }
    request.extensions_mut().insert(caller);
    next.run(request).await
}

/// Decodes `%XX` escapes of a path segment (names with spaces or slashes in them).
fn percent_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    // Each pass consumes one or three bytes: bounded by the segment's length.
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match escaped {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_map_to_what_they_need() {
        let n = |m: Method, path: &str, group: Option<&str>| {
            let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
            needs(&m, &segments, group, Some("alice"))
        };
        assert_eq!(
            n(Method::POST, "/v1/topics/t/records", None),
            vec![topic(Operation::Write, "t")]
        );
        let sse = n(Method::GET, "/v1/topics/t/events", Some("g"));
        assert_eq!(sse.len(), 2);
        assert_eq!(sse[1], (Operation::Read, ResourceType::Group, "g".to_string()));
        assert!(n(Method::PUT, "/v1/users/alice", None).is_empty(), "own password");
        assert_eq!(
            n(Method::PUT, "/v1/users/bob", None),
            vec![cluster(Operation::Alter)]
        );
        assert_eq!(
            n(Method::DELETE, "/v1/acls", None),
            vec![cluster(Operation::Alter)]
        );
        assert!(
            n(Method::GET, "/v1/topics", None).is_empty(),
            "lists filter instead"
        );
        assert_eq!(
            n(Method::PATCH, "/v1/topics/t/configs", None),
            vec![topic(Operation::AlterConfigs, "t")]
        );
        assert_eq!(
            n(Method::POST, "/v1/groups/g/reset-offsets", None),
            vec![(Operation::Read, ResourceType::Group, "g".to_string())]
        );
        assert_eq!(
            n(Method::POST, "/v1/dead-letters/t.dlq/redrive", None),
            vec![topic(Operation::Read, "t.dlq")]
        );
        assert!(n(Method::GET, "/v1/stats/events", None).is_empty());
        assert_eq!(
            n(Method::GET, "/v1/stats/events", Some("g")),
            vec![(Operation::Describe, ResourceType::Group, "g".to_string())]
        );
    }

    #[test]
    fn escapes_are_decoded() {
        assert_eq!(percent_decode("a%20b%2Fc"), "a b/c");
        assert_eq!(percent_decode("bad%zz%"), "bad%zz%");
    }
}
