//! SASL messages as a Kafka client sends them in SaslAuthenticate, and as AMQP clients
//! send PLAIN in connection.start-ok: the first byte picks what the rest is read as (PLAIN,
//! or a SCRAM-SHA-256/512 client-first followed, after a NUL, by a client-final). A SCRAM
//! exchange for a user with a known credential runs to the end: a final message must be
//! refused unless it carries the right proof, which random bytes never do. Nothing here may
//! panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rivulet_auth::{parse_plain, ClientFirst, Credential, Mechanism, ScramExchange};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    if pick % 3 == 0 {
        let _ = parse_plain(rest);
        return;
    }
    let mechanism = if pick % 3 == 1 {
        Mechanism::ScramSha256
    } else {
        Mechanism::ScramSha512
    };
    let (first, last) = match rest.iter().position(|b| *b == 0) {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (rest, &[][..]),
    };
    let Ok(first) = ClientFirst::parse(mechanism, first) else {
        return;
    };
    let credential = Credential::from_salted_password(mechanism, &vec![1u8; mechanism.key_bytes()], vec![2u8; 16], 4096)
        .expect("a valid credential");
    let Ok((exchange, server_first)) = ScramExchange::start(mechanism, first, Some(credential)) else {
        return;
    };
    assert!(server_first.starts_with(b"r="));
    assert!(exchange.finish(last).is_err(), "random bytes carried a valid proof");
});
