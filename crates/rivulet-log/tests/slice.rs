//! `read_slice` finds exactly the batches `read` returns, without reading them.

use proptest::prelude::*;
use rivulet_log::{FsyncPolicy, Log, LogConfig};

use crate::common::*;

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 16 * 1024,
        index_interval_bytes: 512,
        fsync: FsyncPolicy::None,
        retention_ms: None,
        ..LogConfig::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn slices_hold_the_same_batches_as_reads(
        sizes in proptest::collection::vec(1usize..40, 1..120),
        probes in proptest::collection::vec((any::<prop::sample::Index>(), 0usize..6000), 1..40),
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = Log::open(dir.path().join("p"), config()).expect("open");
        for (i, n) in sizes.iter().enumerate() {
            log.append(&batch_of(&format!("b{i}"), *n, 2, 1_000)).expect("append");
        }
        let end = log.high_watermark();
        for (at, max_bytes) in probes {
            let offset = at.index(end as usize) as i64;
            let read = log.read(offset, max_bytes).expect("read");
            let sliced = log.read_slice(offset, max_bytes).expect("slice");
            let bytes = sliced.slice.as_ref().map(|s| s.read().expect("copy")).unwrap_or_default();
            prop_assert_eq!(&bytes[..], &read.records[..], "offset {} max {}", offset, max_bytes);
            prop_assert_eq!(sliced.high_watermark, read.high_watermark);
            let last = records_of(&bytes).last().map(|r| r.0 + 1);
            if let Some(last) = last {
                prop_assert_eq!(sliced.next_offset, last);
            }
        }
        let tail = log.read_slice(end, 1 << 20).expect("slice at the end");
        prop_assert!(tail.slice.is_none());
    }
}
