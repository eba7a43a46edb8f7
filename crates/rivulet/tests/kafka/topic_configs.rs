//! Topic configs with an effect, through librdkafka: `compression.type` recompresses what
//! an uncompressed producer sends (and consumers read it back), and
//! `message.timestamp.before.max.ms` refuses records stamped too long ago.

use std::time::Duration;

use rdkafka::producer::FutureRecord;
use rdkafka::types::RDKafkaErrorCode;

use crate::harness::Rivulet;
use crate::rdkafka_clients::{
    assign_from_beginning, consume_n, consumer, create_topic, produce_all, producer, runtime,
};

/// Bytes of a partition's segment files.
fn partition_bytes(server: &Rivulet, topic: &str) -> u64 {
    let dir = server.data_dir().join("topics").join(topic).join("0");
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

#[test]
fn compression_type_stores_compressed_and_consumers_read_it_back() {
    let server = Rivulet::start();
    let messages: Vec<(String, String)> = (0..200)
        .map(|i| {
            (
                format!("k{i}"),
                format!("order {i} {}", "lorem ipsum ".repeat(20)),
            )
        })
        .collect();
    let plain = producer(&server, &[("compression.codec", "none"), ("linger.ms", "20")]);
    create_topic(&server, "as-sent", 1, &[]);
    produce_all(&plain, "as-sent", &messages);
    let sent_bytes = partition_bytes(&server, "as-sent");
    for codec in ["gzip", "snappy", "lz4", "zstd"] {
        let topic = format!("stored-{codec}");
        create_topic(&server, &topic, 1, &[("compression.type", codec)]);
        produce_all(&plain, &topic, &messages);
        let stored = partition_bytes(&server, &topic);
        assert!(
            stored * 3 < sent_bytes,
            "{codec}: {stored} bytes stored for {sent_bytes} sent uncompressed"
        );
        let c = consumer(&server, &format!("reader-{codec}"), &[]);
        assign_from_beginning(&c, &topic, 1);
        let got = consume_n(&c, messages.len(), Duration::from_secs(30));
        assert_eq!(got.len(), messages.len(), "{codec}: consumed {}", got.len());
        for (i, (_, offset, key, value)) in got.iter().enumerate() {
            assert_eq!((*offset, key, value), (i as i64, &messages[i].0, &messages[i].1));
        }
    }
}

#[test]
fn records_stamped_too_long_ago_are_refused_with_invalid_timestamp() {
    let server = Rivulet::start();
    create_topic(
        &server,
        "fresh-only",
        1,
        &[("message.timestamp.before.max.ms", "3600000")],
    );
    let p = producer(&server, &[("retries", "0")]);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let send = |timestamp_ms: i64| {
        let record = FutureRecord::to("fresh-only")
            .key("k")
            .payload("v")
            .timestamp(timestamp_ms);
        // The delivery's offset, or the error code it failed with.
        runtime()
            .block_on(p.send(record, Duration::from_secs(30)))
            .map(|d| d.offset)
            .map_err(|(e, _)| e.rdkafka_error_code())
    };
    assert_eq!(send(now_ms), Ok(0), "a fresh record is delivered");
    assert_eq!(
        send(now_ms - 2 * 3_600_000),
        Err(Some(RDKafkaErrorCode::InvalidTimestamp)),
        "a record two hours old is refused"
    );
    assert_eq!(send(now_ms), Ok(1), "the refusal wrote nothing");
}
