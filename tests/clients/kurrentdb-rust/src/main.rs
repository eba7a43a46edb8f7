//! The official KurrentDB Rust client against Rivulet's event store: appends with every
//! expected-state kind, a conflict, an idempotent retry, reads both ways, a catch-up
//! subscription across the history/live switch, a persistent subscription with two
//! competing consumers, ack, park and replay, delete and tombstone. Prints `ok: ...` per
//! check and exits non-zero on the first failure.
//!
//! usage: kurrentdb-rust-client <host:port> <run-id>

use std::time::Duration;

use kurrentdb::{
    AppendToStreamOptions, Client, DeleteStreamOptions, Error, EventData,
    GetPersistentSubscriptionInfoOptions, NakAction, PersistentSubscriptionOptions, ReadStreamOptions,
    ReplayParkedMessagesOptions, StreamPosition, StreamState, SubscribeToPersistentSubscriptionOptions,
    SubscribeToStreamOptions, TombstoneStreamOptions,
};

fn check(ok: bool, what: &str) {
    if !ok {
        println!("FAILED: {what}");
        std::process::exit(1);
    }
    println!("ok: {what}");
}

fn job(n: u64) -> EventData {
    EventData::json("Job", &serde_json::json!({ "n": n })).expect("json")
}

async fn revisions(client: &Client, stream: &str, options: &ReadStreamOptions) -> Vec<u64> {
    let mut read = client.read_stream(stream, options).await.expect("read");
    let mut out = Vec::new();
    while let Ok(Some(e)) = read.next().await {
        out.push(e.get_original_event().revision);
    }
    out
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (address, run) = (&args[1], &args[2]);
    let settings = format!("kurrentdb://{address}?tls=false")
        .parse()
        .expect("settings");
    let client = Client::new(settings).expect("client");
    let stream = format!("ledger-{run}");
    let at = |s: StreamState| AppendToStreamOptions::default().stream_state(s);

    let first = job(0).id(uuid::Uuid::new_v4());
    let r = client
        .append_to_stream(stream.as_str(), &at(StreamState::NoStream), first.clone())
        .await;
    check(
        matches!(r, Ok(ref w) if w.next_expected_version == 0),
        "append with NoStream starts at revision 0",
    );
    let r = client
        .append_to_stream(stream.as_str(), &at(StreamState::NoStream), job(9))
        .await;
    check(
        matches!(r, Err(Error::WrongExpectedVersion { .. })),
        "NoStream on an existing stream is a conflict",
    );
    let r = client
        .append_to_stream(
            stream.as_str(),
            &at(StreamState::StreamRevision(0)),
            vec![job(1), job(2)],
        )
        .await;
    check(
        matches!(r, Ok(ref w) if w.next_expected_version == 2),
        "two events at exact revision 0 end at 2",
    );
    let r = client
        .append_to_stream(stream.as_str(), &at(StreamState::StreamExists), job(3))
        .await;
    check(
        matches!(r, Ok(ref w) if w.next_expected_version == 3),
        "StreamExists appends",
    );
    let r = client
        .append_to_stream(stream.as_str(), &at(StreamState::Any), first)
        .await;
    check(
        matches!(r, Ok(ref w) if w.next_expected_version == 0),
        "a retried event id answers its original revision",
    );

    let forwards = revisions(
        &client,
        &stream,
        &ReadStreamOptions::default()
            .forwards()
            .position(StreamPosition::Start),
    )
    .await;
    check(
        forwards == vec![0, 1, 2, 3],
        "read forwards: revisions 0..3, nothing duplicated",
    );
    let options = ReadStreamOptions::default()
        .backwards()
        .position(StreamPosition::End)
        .max_count(2);
    check(
        revisions(&client, &stream, &options).await == vec![3, 2],
        "read backwards from the end",
    );

    let mut sub = client
        .subscribe_to_stream(
            stream.as_str(),
            &SubscribeToStreamOptions::default().start_from(StreamPosition::Start),
        )
        .await;
    let mut seen = Vec::new();
    while seen.len() < 5 {
        let e = tokio::time::timeout(Duration::from_secs(10), sub.next())
            .await
            .expect("in time")
            .expect("event");
        seen.push(e.get_original_event().revision);
        if seen.len() == 4 {
            client
                .append_to_stream(stream.as_str(), &at(StreamState::StreamRevision(3)), job(4))
                .await
                .expect("live");
        }
    }
    check(
        seen == vec![0, 1, 2, 3, 4],
        "a catch-up subscription sees history, then the live event once",
    );

    let group = "rust-workers";
    let settings = PersistentSubscriptionOptions::default().start_from(StreamPosition::Start);
    client
        .create_persistent_subscription(stream.as_str(), group, &settings)
        .await
        .expect("create group");
    let again = client
        .create_persistent_subscription(stream.as_str(), group, &settings)
        .await;
    check(
        matches!(again, Err(Error::ResourceAlreadyExists)),
        "creating the same group twice",
    );
    let join = SubscribeToPersistentSubscriptionOptions::default().buffer_size(2);
    let mut a = client
        .subscribe_to_persistent_subscription(stream.as_str(), group, &join)
        .await
        .expect("a joins");
    let mut b = client
        .subscribe_to_persistent_subscription(stream.as_str(), group, &join)
        .await
        .expect("b joins");
    let (mut got_a, mut got_b) = (0, 0);
    let mut handled = 0;
    while handled < 5 {
        let (sub, count) = if handled % 2 == 0 {
            (&mut a, &mut got_a)
        } else {
            (&mut b, &mut got_b)
        };
        let Ok(Ok(e)) = tokio::time::timeout(Duration::from_secs(2), sub.next()).await else {
            let other = if handled % 2 == 0 { &mut b } else { &mut a };
            let e = tokio::time::timeout(Duration::from_secs(10), other.next())
                .await
                .expect("in time")
                .expect("event");
            if e.get_original_event().revision == 1 {
                other.nack(&e, NakAction::Park, "poison").await.expect("nack");
            } else {
                other.ack(&e).await.expect("ack");
            }
            handled += 1;
            continue;
        };
        *count += 1;
        if e.get_original_event().revision == 1 {
            sub.nack(&e, NakAction::Park, "poison").await.expect("nack");
        } else {
            sub.ack(&e).await.expect("ack");
        }
        handled += 1;
    }
    check(got_a > 0 && got_b > 0, "two competing consumers both get events");
    let mut parked = 0;
    for _ in 0..100 {
        let info = client
            .get_persistent_subscription_info(
                stream.as_str(),
                group,
                &GetPersistentSubscriptionInfoOptions::default(),
            )
            .await
            .expect("info");
        parked = info.stats.parked_message_count;
        if parked == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    check(parked == 1, "the parked event is counted");
    client
        .replay_parked_messages(stream.as_str(), group, &ReplayParkedMessagesOptions::default())
        .await
        .expect("replay");
    // The group gives the replayed event to either consumer.
    let replayed = tokio::time::timeout(Duration::from_secs(10), async {
        tokio::select! {
            e = a.next() => { let e = e.expect("event"); a.ack(&e).await.expect("ack"); e }
            e = b.next() => { let e = e.expect("event"); b.ack(&e).await.expect("ack"); e }
        }
    })
    .await
    .expect("in time");
    check(
        replayed.get_original_event().revision == 1,
        "the parked event comes back on replay",
    );
    drop((a, b));

    let r = client
        .delete_stream(
            stream.as_str(),
            &DeleteStreamOptions::default().stream_state(StreamState::StreamRevision(1)),
        )
        .await;
    // This client passes a delete's refusal on as the status it is (KurrentDB's shape).
    let stale = matches!(&r, Err(Error::Grpc { message, .. }) if message.contains("WrongExpectedVersion"));
    check(stale, &format!("a delete at a stale revision ({r:?})"));
    client
        .delete_stream(stream.as_str(), &DeleteStreamOptions::default())
        .await
        .expect("delete");
    let mut gone = client
        .read_stream(stream.as_str(), &ReadStreamOptions::default())
        .await
        .expect("read");
    check(
        matches!(gone.next().await, Err(Error::ResourceNotFound)),
        "a deleted stream reads as missing",
    );
    client
        .tombstone_stream(stream.as_str(), &TombstoneStreamOptions::default())
        .await
        .expect("tombstone");
    let r = client
        .append_to_stream(stream.as_str(), &at(StreamState::Any), job(5))
        .await;
    check(
        matches!(r, Err(Error::ResourceDeleted)),
        "appending to a tombstoned stream",
    );
    println!("all checks passed");
}
