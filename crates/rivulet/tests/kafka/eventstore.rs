//! The event store through `rivulet serve`: the official KurrentDB clients (Node and
//! Python) unchanged over gRPC, the HTTP API, and kill -9 during appends.

use std::collections::{BTreeMap, HashSet};
use std::process::Command;
use std::sync::{Arc, Mutex};

use crate::harness::{
    assert_client_checks, curl, repo_root, start_with_auth, which, Rivulet, ADMIN, ADMIN_PASSWORD,
};

fn python() -> std::path::PathBuf {
    repo_root().join(".venv/bin/python")
}

/// A client program, stopped after two minutes so a hung client fails the test rather than
/// the suite.
fn client(program: &std::path::Path) -> Command {
    let mut cmd = Command::new("timeout");
    cmd.arg("120").arg(program);
    cmd
}

#[test]
fn kurrentdb_node_client_runs_unchanged() {
    if which("node").is_none() {
        println!("SKIPPED kurrentdb_node_client_runs_unchanged: node is missing");
        return;
    }
    let server = Rivulet::start();
    let output = client(std::path::Path::new("node"))
        .current_dir(repo_root().join("tests/clients"))
        .args(["kurrentdb_node.mjs", &server.eventstore_address(), "n1"])
        .output()
        .expect("run node");
    assert_client_checks(
        &output,
        &[
            "ok: append with no_stream starts at revision 0",
            "ok: the conflict names the actual revision",
            "ok: a retried append answers its original revision",
            "ok: revisions 0..3, no duplicate of the retried append",
            "ok: $all positions grow",
            "ok: the subscription saw history then the live event once",
            "ok: a filtered $all subscription",
            "ok: one of two racing appends wins",
            "ok: revisions continue after a delete",
            "ok: reading a tombstoned stream",
            "ok: creating the same group twice",
            "ok: every job handled once",
            "ok: the retried job came back with retryCount 1",
            "ok: both consumers got jobs",
            "ok: info: one parked job, checkpoint at the last job",
            "ok: the parked job comes back on replay",
            "ok: info: nothing parked after the replay",
            "ok: a deleted group is gone",
            "ok: a filtered $all group delivers the stream's jobs in order",
            "all checks passed",
        ],
    );
    // The calls' latency and the group's lag in /metrics.
    let (code, metrics) = curl(&server, "GET", "/metrics", &[]);
    assert_eq!(code, "200");
    let calls = |api: &str| {
        metrics
            .lines()
            .find(|l| {
                l.starts_with("rivulet_request_duration_seconds_count{")
                    && l.contains(&format!("api=\"{api}\""))
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    assert!(calls("Streams.Read") >= 5, "read latencies observed");
    assert!(calls("Streams.BatchAppend") >= 1, "the client's appends observed");
    assert!(
        calls("PersistentSubscriptions.Create") >= 3,
        "group creations observed"
    );
    assert!(
        metrics.contains("rivulet_request_errors_total{protocol=\"kurrentdb\",error=\"already_exists\"}"),
        "the refused second creation of a group counted"
    );
    assert!(
        metrics.contains("rivulet_eventstore_subscription_lag{source=\"work-n1\",group=\"idle\"} 6"),
        "the idle group's lag"
    );
    // The group the client left behind, in the operator views, and after a kill -9.
    let mut server = server;
    for round in 0..2 {
        let (ok, out, err) = cli(&server, &["stream", "groups", "--source", "work-n1"]);
        assert!(ok, "{err}");
        let row = out.lines().find(|l| l.contains("idle")).unwrap_or_default();
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(
            cells,
            ["work-n1", "idle", "Idle", "0", "0", "6", "0", "0"],
            "round {round}: {out}"
        );
        let (code, body) = curl(&server, "GET", "/v1/subscriptions", &[]);
        assert_eq!(code, "200", "{body}");
        let groups = json(&body)["subscriptions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(groups.len(), 1, "only the idle group remains: {body}");
        assert_eq!(groups[0]["lag"].as_u64(), Some(6), "{body}");
        server.kill9();
        server.respawn();
    }
}

/// The official Rust client (crate `kurrentdb`), built by `scripts/test.sh` as its own program.
#[test]
fn kurrentdb_rust_client_runs_unchanged() {
    let program = repo_root().join("tests/clients/kurrentdb-rust/target/debug/kurrentdb-rust-client");
    if !program.exists() {
        println!("SKIPPED kurrentdb_rust_client_runs_unchanged: build tests/clients/kurrentdb-rust first");
        return;
    }
    let server = Rivulet::start();
    let output = client(&program)
        .args([&server.eventstore_address(), "r1"])
        .output()
        .expect("run the Rust client");
    assert_client_checks(
        &output,
        &[
            "ok: append with NoStream starts at revision 0",
            "ok: NoStream on an existing stream is a conflict",
            "ok: a retried event id answers its original revision",
            "ok: read forwards: revisions 0..3, nothing duplicated",
            "ok: a catch-up subscription sees history, then the live event once",
            "ok: two competing consumers both get events",
            "ok: the parked event comes back on replay",
            "ok: a delete at a stale revision",
            "ok: appending to a tombstoned stream",
            "all checks passed",
        ],
    );
}

#[test]
fn kurrentdb_python_client_runs_unchanged() {
    if !python().exists() {
        println!("SKIPPED kurrentdb_python_client_runs_unchanged: .venv is missing");
        return;
    }
    let server = Rivulet::start();
    let output = client(&python())
        .arg(repo_root().join("tests/clients/kurrentdb_py.py"))
        .args([&server.eventstore_address(), "p1"])
        .output()
        .expect("run python");
    assert_client_checks(
        &output,
        &[
            "ok: BatchAppend at a stale version is a conflict",
            "ok: a retried batch answers its original position",
            "ok: $all read with the client's default look-ahead filter holds our events",
            "ok: the subscription saw history then the live event",
            "ok: a deleted stream reads as missing",
            "ok: appending to a tombstoned stream",
            "ok: a third consumer of a group of at most two is refused",
            "ok: every task handled once",
            "ok: both consumers got tasks",
            "ok: one parked task in the group's info",
            "ok: the parked task comes back on replay",
            "ok: nothing parked after the replay",
            "ok: a deleted group is gone",
            "all checks passed",
        ],
    );
}

#[test]
fn with_logins_on_anonymous_kurrentdb_clients_are_refused_and_users_need_acls() {
    if !python().exists() {
        println!("SKIPPED with_logins_on_anonymous_kurrentdb_clients_are_refused: .venv is missing");
        return;
    }
    let server = start_with_auth();
    let output = client(&python())
        .arg(repo_root().join("tests/clients/kurrentdb_py.py"))
        .args([&server.eventstore_address(), "a1", "refused"])
        .output()
        .expect("run python");
    assert_client_checks(
        &output,
        &[
            "ok: an anonymous append is refused",
            "ok: an anonymous read is refused",
        ],
    );
    let admin = format!("{ADMIN}:{ADMIN_PASSWORD}");
    let body = r#"{"events":[{"type":"X","data":{}}]}"#;
    assert_eq!(
        curl(&server, "POST", "/v1/streams/s-1", &["-d", body]).0,
        "401",
        "HTTP without a login"
    );
    let (code, text) = curl(&server, "POST", "/v1/streams/s-1", &["-u", &admin, "-d", body]);
    assert_eq!(code, "200", "the bootstrap user appends: {text}");
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

#[test]
fn http_streams_append_read_conflict_and_subscribe() {
    let server = Rivulet::start();
    let append =
        |stream: &str, body: &str| curl(&server, "POST", &format!("/v1/streams/{stream}"), &["-d", body]);
    let (code, body) = append(
        "order-7",
        r#"{"expected":"no_stream","events":[{"id":"0b6c2d55-8b0e-4a43-9d0e-3c9ef4a6c001","type":"Placed","data":{"sku":"a"}}]}"#,
    );
    assert_eq!(code, "200", "{body}");
    assert_eq!(json(&body)["next_expected_revision"], 0);
    let (code, body) = append(
        "order-7",
        r#"{"expected":"no_stream","events":[{"type":"Placed","data":{}}]}"#,
    );
    assert_eq!(code, "409", "{body}");
    assert_eq!(json(&body)["actual_revision"], 0);
    let (code, body) = append(
        "order-7",
        r#"{"expected":"any","events":[{"id":"0b6c2d55-8b0e-4a43-9d0e-3c9ef4a6c001","type":"Placed","data":{"sku":"a"}}]}"#,
    );
    assert_eq!(code, "200", "{body}");
    assert_eq!(json(&body)["already_written"], true, "{body}");
    let (code, body) = append(
        "order-7",
        r#"{"expected":0,"events":[{"type":"Paid","data":{"n":1}},{"type":"Packed","data_base64":"AAE="}]}"#,
    );
    assert_eq!(code, "200", "{body}");
    assert_eq!(json(&body)["next_expected_revision"], 2);

    let (code, body) = curl(
        &server,
        "GET",
        "/v1/streams/order-7?direction=backwards&limit=2",
        &[],
    );
    assert_eq!(code, "200", "{body}");
    let read = json(&body);
    let revisions: Vec<u64> = read["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["revision"].as_u64().expect("revision"))
        .collect();
    assert_eq!(revisions, vec![2, 1]);
    assert_eq!(read["events"][0]["data_base64"], "AAE=");
    let (code, body) = curl(&server, "GET", "/v1/streams/$ce-order", &[]);
    assert_eq!(code, "200", "{body}");
    assert_eq!(json(&body)["events"].as_array().map(Vec::len), Some(3));

    let (code, body) = curl(
        &server,
        "POST",
        "/v1/streams",
        &[
            "-d",
            r#"{"appends":[
        {"stream":"acct-a","expected":"no_stream","events":[{"type":"Debited","data":{}}]},
        {"stream":"acct-b","expected":"stream_exists","events":[{"type":"Credited","data":{}}]}]}"#,
        ],
    );
    assert_eq!(code, "409", "{body}");
    assert_eq!(
        curl(&server, "GET", "/v1/streams/acct-a", &[]).0,
        "404",
        "nothing of a failed multi-stream append"
    );
    let (code, body) = curl(
        &server,
        "GET",
        "/v1/streams/order-7/events?from=start",
        &["--max-time", "2"],
    );
    assert!(
        code == "200" || code == "000" || body.contains("caught-up"),
        "{code} {body}"
    );
    let ids: Vec<&str> = body.lines().filter_map(|l| l.strip_prefix("id: ")).collect();
    assert_eq!(ids, vec!["0", "1", "2"], "{body}");
    assert!(body.contains("event: caught-up"), "{body}");

    assert_eq!(
        curl(&server, "DELETE", "/v1/streams/order-7?expected=1", &[]).0,
        "409"
    );
    assert_eq!(
        curl(
            &server,
            "DELETE",
            "/v1/streams/order-7?expected=2&tombstone=true",
            &[]
        )
        .0,
        "200"
    );
    assert_eq!(curl(&server, "GET", "/v1/streams/order-7", &[]).0, "410");
    let (code, body) = append("order-7", r#"{"events":[{"type":"X","data":{}}]}"#);
    assert_eq!(code, "410", "{body}");
    assert_eq!(curl(&server, "POST", "/v1/streams/x", &["-d", "{bad"]).0, "400");
    assert_eq!(
        curl(
            &server,
            "POST",
            "/v1/streams/$all",
            &["-d", r#"{"events":[{"type":"X"}]}"#]
        )
        .0,
        "400"
    );
}

fn cli(server: &Rivulet, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rivulet"))
        .args(args)
        .args(["--http", &server.http_base().replace("http://", "")])
        .output()
        .expect("rivulet CLI runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_cli_appends_reads_lists_and_deletes_streams() {
    let server = Rivulet::start();
    let id = "5e0d7c31-2b6a-4f55-9d7e-0a1b2c3d4e5f";
    let (ok, out, err) = cli(
        &server,
        &[
            "stream",
            "append",
            "cart-9",
            "--type",
            "Added",
            "--expected",
            "no_stream",
            "--id",
            id,
            r#"{"sku":"pear"}"#,
        ],
    );
    assert!(ok && out.contains("at revision 0"), "{out}{err}");
    let (ok, out, _) = cli(
        &server,
        &[
            "stream",
            "append",
            "cart-9",
            "--type",
            "Added",
            "--id",
            id,
            r#"{"sku":"pear"}"#,
        ],
    );
    assert!(ok && out.contains("already written"), "a repeated id: {out}");
    let (ok, _, err) = cli(
        &server,
        &[
            "stream",
            "append",
            "cart-9",
            "--type",
            "Added",
            "--expected",
            "5",
            "{}",
        ],
    );
    assert!(
        !ok && err.contains("last revision is 0"),
        "a stale revision is refused: {err}"
    );
    let (ok, out, _) = cli(
        &server,
        &[
            "stream",
            "append",
            "cart-9",
            "--type",
            "Paid",
            "--expected",
            "0",
            r#"{"n":1}"#,
        ],
    );
    assert!(ok && out.contains("at revision 1"), "{out}");
    let (ok, out, _) = cli(
        &server,
        &["stream", "read", "cart-9", "--backwards", "--limit", "1"],
    );
    assert!(ok, "{out}");
    let last = json(out.lines().next().unwrap_or_default());
    assert_eq!(
        (last["revision"].as_u64(), last["type"].as_str()),
        (Some(1), Some("Paid"))
    );
    let (ok, out, _) = cli(&server, &["stream", "list", "--prefix", "cart-"]);
    assert!(ok && out.contains("cart-9") && out.contains("live"), "{out}");
    let (ok, _, err) = cli(
        &server,
        &["stream", "delete", "cart-9", "--expected", "1", "--tombstone"],
    );
    assert!(ok, "{err}");
    let (ok, out, _) = cli(&server, &["stream", "list", "--prefix", "cart-"]);
    assert!(ok && out.contains("tombstoned"), "{out}");
}

/// `{"expected":"any","events":[...]}` with `n` events of type `t`.
fn events_body(n: usize, t: &str) -> String {
    let events: Vec<String> = (0..n)
        .map(|i| {
            format!(
                r#"{{"type":"{t}","data":{{"n":{i},"pad":"{}"}}}}"#,
                "x".repeat(64)
            )
        })
        .collect();
    format!(r#"{{"expected":"any","events":[{}]}}"#, events.join(","))
}

#[test]
fn the_cli_scavenges_a_tombstoned_stream_and_readers_see_the_rest() {
    let server = Rivulet::start();
    // Small segments, so the events below sit in sealed ones the scavenge may rewrite.
    let topic =
        r#"{"name":"eventstore.all","partitions":1,"configs":{"segment.bytes":"4096","retention.ms":"-1"}}"#;
    let (code, body) = curl(
        &server,
        "POST",
        "/v1/topics",
        &["-H", "content-type: application/json", "-d", topic],
    );
    assert!(code.starts_with('2'), "{code} {body}");
    let post =
        |stream: &str, body: &str| curl(&server, "POST", &format!("/v1/streams/{stream}"), &["-d", body]);
    for round in 0..6 {
        assert_eq!(post("gone-1", &events_body(5, "Added")).0, "200", "round {round}");
        assert_eq!(post("kept-1", &events_body(5, "Added")).0, "200", "round {round}");
    }
    let (code, body) = curl(&server, "DELETE", "/v1/streams/gone-1?tombstone=true", &[]);
    assert_eq!(code, "200", "{body}");
    for _ in 0..6 {
        assert_eq!(post("filler-1", &events_body(10, "Tick")).0, "200");
    }
    let (ok, out, err) = cli(&server, &["stream", "scavenge"]);
    assert!(
        ok && out.contains("Removed 29 events"),
        "all of gone-1 but its last: {out}{err}"
    );
    let (ok, out, _) = cli(&server, &["stream", "read", "kept-1", "--limit", "100"]);
    assert!(ok && out.lines().count() == 30, "kept-1 is whole: {out}");
    let (code, body) = curl(&server, "GET", "/v1/streams/gone-1", &[]);
    assert_eq!(code, "410", "still tombstoned: {body}");
    let (ok, out, _) = cli(&server, &["stream", "scavenge"]);
    assert!(ok && out.contains("Removed 0 events"), "{out}");
    let (_, metrics) = curl(&server, "GET", "/metrics", &[]);
    assert!(
        metrics.contains("rivulet_records_scavenged_total{topic=\"eventstore.all\"} 29"),
        "the metric counts what left the log"
    );
}

/// One writer's appends: each has a fixed event id, so a retry after a crash is the same append.
fn event_id(writer: usize, n: usize) -> String {
    format!("00000000-0000-4000-8000-{:06x}{:06x}", writer, n)
}

#[test]
fn kill9_during_appends_loses_no_acknowledged_append_and_retries_answer_the_original() {
    let mut server = Rivulet::start();
    let acked: Arc<Mutex<BTreeMap<String, (String, u64)>>> = Arc::new(Mutex::new(BTreeMap::new()));
    let mut next = [0usize; 4];
    let mut retried_original = 0;
    for round in 0..20 {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let handles: Vec<_> = (0..4)
            .map(|w| {
                let (acked, stop, http) = (acked.clone(), stop.clone(), server.http_base());
                let start = next[w];
                std::thread::spawn(move || {
                    let mut n = start;
                    // Each pass makes one append; the kill ends the loop within a request.
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let stream = format!("acct-{}", n % 5);
                        let body = format!(
                            r#"{{"events":[{{"id":"{}","type":"Deposited","data":{{"w":{w},"n":{n}}}}}]}}"#,
                            event_id(w, n)
                        );
                        let out = Command::new("curl")
                            .args(["-s", "--max-time", "5", "-X", "POST", "-d", &body])
                            .arg(format!("{http}/v1/streams/{stream}"))
                            .output()
                            .expect("curl");
                        let text = String::from_utf8_lossy(&out.stdout);
                        match serde_json::from_str::<serde_json::Value>(&text)
                            .ok()
                            .and_then(|v| v["first_revision"].as_u64())
                        {
                            Some(revision) => {
                                acked
                                    .lock()
                                    .expect("acked")
                                    .insert(event_id(w, n), (stream, revision));
                                n += 1;
                            }
                            None => return n,
                        }
                    }
                    n
                })
            })
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(150 + (round * 37 % 300) as u64));
        server.kill9();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let stopped: Vec<usize> = handles.into_iter().map(|h| h.join().expect("writer")).collect();
        server.respawn();
        // The append each writer had in flight is retried with the same id: either it was
        // written (the original revision comes back) or it is written now, once.
        for (w, n) in stopped.iter().copied().enumerate() {
            let stream = format!("acct-{}", n % 5);
            let body = format!(
                r#"{{"events":[{{"id":"{}","type":"Deposited","data":{{"w":{w},"n":{n}}}}}]}}"#,
                event_id(w, n)
            );
            let (code, text) = curl(&server, "POST", &format!("/v1/streams/{stream}"), &["-d", &body]);
            assert_eq!(code, "200", "retry after round {round}: {text}");
            let v = json(&text);
            if v["already_written"] == true {
                retried_original += 1;
            }
            acked.lock().expect("acked").insert(
                event_id(w, n),
                (stream, v["first_revision"].as_u64().expect("revision")),
            );
            next[w] = n + 1;
        }
    }
    let acked = acked.lock().expect("acked").clone();
    let mut seen = HashSet::new();
    for s in 0..5 {
        let (code, body) = curl(&server, "GET", &format!("/v1/streams/acct-{s}?limit=10000"), &[]);
        assert_eq!(code, "200", "{body}");
        let events = json(&body)["events"].as_array().cloned().unwrap_or_default();
        for (i, e) in events.iter().enumerate() {
            assert_eq!(e["revision"].as_u64(), Some(i as u64), "acct-{s} has no gap");
            let id = e["id"].as_str().expect("id").to_string();
            assert!(seen.insert(id.clone()), "event {id} stored twice");
            if let Some((stream, revision)) = acked.get(&id) {
                assert_eq!(
                    (stream.as_str(), *revision),
                    (format!("acct-{s}").as_str(), i as u64),
                    "{id} where it was acknowledged"
                );
            }
        }
    }
    let missing: Vec<&String> = acked.keys().filter(|id| !seen.contains(*id)).collect();
    assert!(missing.is_empty(), "acknowledged appends lost: {missing:?}");
    assert!(
        acked.len() > 100,
        "the writers made progress ({} appends)",
        acked.len()
    );
    println!("{} acknowledged appends over 20 kills; {retried_original} retries answered with the original revision", acked.len());
}
