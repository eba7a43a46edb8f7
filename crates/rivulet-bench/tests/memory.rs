//! The run loop against an in-memory driver: no broker, so it checks the loop itself (waiting
//! for the consumers, the window, acknowledgements, the drain, unavailable levels) through
//! the public [`Driver`] trait.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rivulet_bench::run::{measure, Target};
use rivulet_bench::{
    ConsumerCtx, Driver, Durability, DurabilityChoice, Prepared, ProducerCtx, Result, Setup, WorkloadArgs,
};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

/// One unbounded channel per destination; D1 is unavailable.
#[derive(Default)]
struct Memory {
    senders: Mutex<HashMap<String, UnboundedSender<Vec<u8>>>>,
    receivers: Mutex<HashMap<String, UnboundedReceiver<Vec<u8>>>>,
}

impl Driver for Memory {
    fn name(&self) -> &'static str {
        "memory"
    }

    async fn prepare(&self, level: Durability, name: &str, partitions: usize) -> Result<Setup> {
        if level == Durability::D1 {
            return Ok(Setup::Unavailable(vec!["memory never syncs".to_string()]));
        }
        let destinations: Vec<String> = (0..partitions).map(|i| format!("{name}-{i}")).collect();
        for d in &destinations {
            let (tx, rx) = unbounded_channel();
            self.senders.lock().expect("lock").insert(d.clone(), tx);
            self.receivers.lock().expect("lock").insert(d.clone(), rx);
        }
        Ok(Setup::Ready(Prepared {
            partitions: destinations.len(),
            destinations,
            settings: vec!["in memory".to_string()],
        }))
    }

    async fn produce(self: Arc<Self>, mut ctx: ProducerCtx) -> Result<()> {
        let acks = ctx.acks();
        loop {
            let destination = ctx.destinations()[ctx.next_destination()].clone();
            let Some((intended, payload)) = ctx.next_record().await else {
                return Ok(());
            };
            let sender = self.senders.lock().expect("lock").get(&destination).cloned();
            match sender.map(|s| s.send(payload)) {
                Some(Ok(())) => acks.acked(intended),
                _ => acks.failed(),
            }
        }
    }

    async fn consume(self: Arc<Self>, mut ctx: ConsumerCtx) -> Result<()> {
        let mut receivers: Vec<UnboundedReceiver<Vec<u8>>> = ctx
            .destinations()
            .iter()
            .filter_map(|d| self.receivers.lock().expect("lock").remove(d))
            .collect();
        ctx.ready();
        while !ctx.stopped() {
            let mut idle = true;
            for rx in &mut receivers {
                while let Ok(payload) = rx.try_recv() {
                    ctx.received(&payload);
                    idle = false;
                }
            }
            if idle {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        Ok(())
    }

    async fn cleanup(&self, prepared: &Prepared) -> Result<()> {
        for d in &prepared.destinations {
            self.senders.lock().expect("lock").remove(d);
        }
        Ok(())
    }
}

fn load() -> WorkloadArgs {
    WorkloadArgs {
        producers: 2,
        consumers: 2,
        partitions: 3,
        record_size: 64,
        duration: 1,
        warmup: 0,
        rate: Some(2_000),
        durability: DurabilityChoice::Both,
        broker_pid: None,
        baseline: false,
        baseline_dir: None,
        baseline_secs: None,
        report_interval: 1,
    }
}

#[test]
fn every_acknowledged_record_is_consumed_and_timed() {
    let target = Target {
        server: "memory".to_string(),
        client: "channels".to_string(),
        prefix: "t".to_string(),
    };
    let report = measure(Memory::default(), &load(), &target, None).expect("run");
    assert_eq!(report.system, "memory");
    assert_eq!(report.workload.mode, "fixed-rate");
    assert_eq!(report.runs.len(), 2);

    let d0 = &report.runs[0];
    assert!(d0.controllable);
    assert_eq!(d0.topic_configs, ["in memory"]);
    let m = d0.measured.as_ref().expect("d0 measured");
    assert_eq!(m.topic, "t-d0-0,t-d0-1,t-d0-2");
    // 2,000 records/s for 1 s, both producers together.
    assert!((1_900..=2_000).contains(&m.produced_records), "{m:?}");
    assert_eq!(m.consumed_records, m.produced_records, "{m:?}");
    assert_eq!(m.failed_records, 0);
    assert!((m.produce_records_per_sec - 2_000.0).abs() <= 100.0, "{m:?}");
    let publish = m.publish_latency_ms.as_ref().expect("publish latency");
    let e2e = m.e2e_latency_ms.as_ref().expect("end-to-end latency");
    assert!(publish.p50 <= publish.p99 && publish.p99 <= publish.max);
    assert!(e2e.p50 <= e2e.p99 && e2e.p99 <= e2e.max);
    assert!(!m.intervals.is_empty(), "{m:?}");

    let d1 = &report.runs[1];
    assert!(!d1.controllable);
    assert!(d1.measured.is_none());
    assert_eq!(d1.topic_configs, ["memory never syncs"]);
}

#[test]
fn bad_arguments_are_config_errors() {
    let mut load = load();
    load.rate = Some(0);
    let target = Target {
        server: String::new(),
        client: String::new(),
        prefix: "t".to_string(),
    };
    let error = measure(Memory::default(), &load, &target, None).expect_err("refused");
    assert!(matches!(error, rivulet_bench::BenchError::Config(_)), "{error}");
}
