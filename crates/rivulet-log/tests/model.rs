//! Property test: random appends, reads, rolls, retention and reopens agree with a simple
//! in-memory model of the log.

use proptest::prelude::*;
use rivulet_log::{FsyncPolicy, Log, LogConfig, LogError};

use crate::common::*;

#[derive(Debug, Clone)]
enum Op {
    Append { records: usize, value_bytes: usize },
    Read { at_permille: u16, max_bytes: usize },
    Reopen { clean: bool },
    Retain { bytes: u64 },
    Timestamp { at_permille: u16 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1usize..6, 0usize..300).prop_map(|(records, value_bytes)| Op::Append { records, value_bytes }),
        3 => (0u16..1001, 1usize..3000).prop_map(|(at_permille, max_bytes)| Op::Read { at_permille, max_bytes }),
        1 => any::<bool>().prop_map(|clean| Op::Reopen { clean }),
        1 => (1024u64..16_384).prop_map(|bytes| Op::Retain { bytes }),
        1 => (0u16..1001).prop_map(|at_permille| Op::Timestamp { at_permille }),
    ]
}

fn config(retention_bytes: Option<u64>) -> LogConfig {
    LogConfig {
        segment_bytes: 2048,
        index_interval_bytes: 128,
        fsync: FsyncPolicy::None,
        retention_ms: None,
        retention_bytes,
        ..LogConfig::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn log_agrees_with_model(ops in proptest::collection::vec(op(), 1..60)) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = Log::open(dir.path(), config(None)).expect("open");
        // The model: (offset, value, timestamp) of every record ever appended.
        let mut model: Vec<(i64, Vec<u8>, i64)> = Vec::new();
        let mut start = 0i64;
        for (step, op) in ops.into_iter().enumerate() {
            match op {
                Op::Append { records, value_bytes } => {
                    let ts = 1_000 + step as i64;
                    let values: Vec<Vec<u8>> = (0..records)
                        .map(|i| {
                            let mut v = format!("{step}-{i}-").into_bytes();
                            v.resize(v.len() + value_bytes, b'x');
                            v
                        })
                        .collect();
                    let recs: Vec<_> = values
                        .iter()
                        .map(|v| rivulet_log::record::Record::new(None, Some(v.clone())))
                        .collect();
                    let out = log.append(&rivulet_log::batch::build(0, ts, None, &recs)).expect("append");
                    prop_assert_eq!(out.base_offset, model.len() as i64);
                    for v in values {
                        model.push((model.len() as i64, v, ts));
                    }
                }
                Op::Read { at_permille, max_bytes } => {
                    let span = model.len() as i64 - start;
                    let offset = start + span * i64::from(at_permille) / 1000;
                    let r = log.read(offset, max_bytes).expect("read");
                    let recs = records_of(&r.records);
                    if offset == model.len() as i64 {
                        prop_assert!(recs.is_empty());
                    } else {
                        prop_assert!(recs.iter().any(|(o, _, _)| *o == offset), "offset {} not in its read", offset);
                        for (o, _, v) in recs {
                            prop_assert_eq!(v.as_deref(), Some(&model[o as usize].1[..]));
                        }
                    }
                }
                Op::Reopen { clean } => {
                    if clean {
                        log.close().expect("close");
                    }
                    drop(log);
                    log = Log::open(dir.path(), config(None)).expect("reopen");
                }
                Op::Retain { bytes } => {
                    log.set_config(config(Some(bytes))).expect("config");
                    log.enforce_retention(rivulet_log::now_ms()).expect("retention");
                    prop_assert!(log.size_bytes() <= bytes + 2048 + 400, "size {} over {}", log.size_bytes(), bytes);
                    log.set_config(config(None)).expect("config");
                }
                Op::Timestamp { at_permille } => {
                    let target = 1_000 + 60 * i64::from(at_permille) / 1000;
                    let want = model.iter().skip(start as usize).find(|(_, _, ts)| *ts >= target);
                    let got = log.offset_for_timestamp(target).expect("lookup");
                    prop_assert_eq!(got.map(|g| g.offset), want.map(|w| w.0));
                }
            }
            let new_start = log.log_start_offset();
            prop_assert!(new_start >= start, "log start went backwards");
            start = new_start;
            prop_assert_eq!(log.log_end_offset(), model.len() as i64);
            if start > 0 {
                let below = log.read(start - 1, 100);
                prop_assert!(matches!(below, Err(LogError::OffsetOutOfRange { .. })), "read below start served");
            }
        }
        let all = read_all(&log, start);
        let want: Vec<_> = model[start as usize..].iter().map(|(o, v, _)| (*o, v.clone())).collect();
        let got: Vec<_> = all.into_iter().map(|(o, _, v)| (o, v.expect("value"))).collect();
        prop_assert_eq!(got, want);
    }
}
