//! Incremental fetch sessions (KIP-227) against a real broker: a session opens with a full
//! fetch, then requests name only moved partitions and answers carry only news.

use std::collections::BTreeMap;

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{
    FetchRequest, FetchResponse, RequestHeader, RequestKind, ResponseKind, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use rivulet_broker::{Broker, BrokerConfig, Create};
use rivulet_kafka::codec::Request;
use rivulet_kafka::handler::ClientInfo;
use rivulet_kafka::{Handler, HandlerConfig};
use rivulet_log::record::Record;

const TOPIC: &str = "sessions";

struct Fixture {
    _dir: tempfile::TempDir,
    broker: Broker,
    handler: Handler,
    _stop: tokio::sync::watch::Sender<bool>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::open(BrokerConfig {
        data_dir: dir.path().to_path_buf(),
        ..BrokerConfig::default()
    })
    .expect("broker");
    broker
        .create_topic(TOPIC, 4, 1, BTreeMap::new(), false)
        .expect("topic");
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let handler = Handler::new(broker.clone(), HandlerConfig::default(), stop_rx, 8 << 20);
    Fixture {
        _dir: dir,
        broker,
        handler,
        _stop: stop,
    }
}

async fn produce(broker: &Broker, partition: i32, value: &str) {
    let batch = rivulet_log::batch::build(0, 1, None, &[Record::new(None, Some(value.as_bytes().to_vec()))]);
    let out = broker
        .produce(TOPIC, partition, &Bytes::from(batch), Create::Never)
        .expect("produce");
    out.durable.wait().await.expect("durable");
}

fn fetch(session_id: i32, epoch: i32, parts: &[(i32, i64)]) -> FetchRequest {
    let partitions = parts
        .iter()
        .map(|&(p, o)| {
            FetchPartition::default()
                .with_partition(p)
                .with_fetch_offset(o)
                .with_partition_max_bytes(1 << 20)
        })
        .collect();
    let topics = if parts.is_empty() {
        Vec::new()
    } else {
        vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_static_str(TOPIC)))
            .with_partitions(partitions)]
    };
    FetchRequest::default()
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(1 << 20)
        .with_session_id(session_id)
        .with_session_epoch(epoch)
        .with_topics(topics)
}

async fn send(f: &Fixture, request: FetchRequest) -> FetchResponse {
    let request = Request {
        api_key: kafka_protocol::messages::ApiKey::Fetch,
        version: 11,
        header: RequestHeader::default(),
        body: RequestKind::Fetch(request),
    };
    let client = ClientInfo {
        host: "127.0.0.1".to_string(),
        connection: 1,
        user: None,
        listener: 0,
    };
    match f.handler.handle(request, &client).await.map(|r| r.body) {
        Some(ResponseKind::Fetch(r)) => r,
        other => panic!("not a fetch response: {other:?}"),
    }
}

/// `(partition, high watermark, has records)` of every partition in a response.
fn carried(r: &FetchResponse) -> Vec<(i32, i64, bool)> {
    r.responses
        .iter()
        .flat_map(|t| t.partitions.iter())
        .map(|p| {
            (
                p.partition_index,
                p.high_watermark,
                p.records.as_ref().is_some_and(|b| !b.is_empty()),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_carry_only_moved_partitions_and_news() {
    let f = fixture();
    produce(&f.broker, 1, "before").await;
    let all = [(0, 0), (1, 0), (2, 0), (3, 0)];
    let first = send(&f, fetch(0, 0, &all)).await;
    assert_eq!(first.error_code, 0);
    let id = first.session_id;
    assert!(id > 0, "a full fetch with epoch 0 opens a session");
    assert_eq!(
        carried(&first).len(),
        4,
        "the opening answer carries every partition"
    );
    assert!(carried(&first).contains(&(1, 1, true)));

    // Epoch 1 moves partition 1 past its record; nothing else is new.
    let r = send(&f, fetch(id, 1, &[(1, 1)])).await;
    assert_eq!((r.error_code, r.session_id), (0, id));
    assert!(carried(&r).is_empty(), "nothing new: {:?}", carried(&r));

    // A record on partition 2: only partition 2 is in the answer, found at the session's
    // remembered position although the request names no partition.
    produce(&f.broker, 2, "news").await;
    let r = send(&f, fetch(id, 2, &[])).await;
    assert_eq!(carried(&r), vec![(2, 1, true)]);

    // Wrong epochs and unknown sessions are top-level errors.
    assert_eq!(send(&f, fetch(id, 9, &[])).await.error_code, 71);
    assert_eq!(send(&f, fetch(id + 1000, 1, &[])).await.error_code, 70);

    // The final epoch closes the session; it is unknown afterwards.
    let closed = send(&f, fetch(id, -1, &all)).await;
    assert_eq!((closed.error_code, closed.session_id), (0, 0));
    assert_eq!(
        carried(&closed).len(),
        4,
        "a sessionless fetch carries every partition"
    );
    assert_eq!(send(&f, fetch(id, 3, &[])).await.error_code, 70);
}
