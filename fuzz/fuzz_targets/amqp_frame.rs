//! AMQP 0-9-1 framing and method decoding, as the AMQP front end runs it on every byte a
//! client sends: `rivulet_amqp::frame::next_frame` over a buffer, with a small `frame_max`
//! so oversized frames are exercised too. Every method that decodes must encode, decode
//! and encode again to the same bytes. Nothing here may panic.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use rivulet_amqp::frame::{self, Frame};

fuzz_target!(|data: &[u8]| {
    let Some((&limit, rest)) = data.split_first() else {
        return;
    };
    // frame_max between 4096 and about 1 MiB.
    let frame_max = frame::FRAME_MIN_BYTES + u32::from(limit) * 4096;
    let mut buf = BytesMut::from(rest);
    for _ in 0..1_000 {
        match frame::next_frame(&mut buf, frame_max) {
            Ok(Some(Frame::Method(channel, method))) => {
                // Compared as bytes, not values: a field table may hold a NaN, which is not
                // equal to itself.
                let mut encoded = Vec::new();
                frame::put_method(&mut encoded, channel, &method);
                let mut again = BytesMut::from(&encoded[..]);
                match frame::next_frame(&mut again, u32::MAX) {
                    Ok(Some(Frame::Method(c, m))) => {
                        assert_eq!(c, channel);
                        let mut reencoded = Vec::new();
                        frame::put_method(&mut reencoded, c, &m);
                        assert_eq!(reencoded, encoded, "a method survives encode and decode");
                    }
                    other => panic!("an encoded method does not decode: {other:?}"),
                }
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return,
        }
    }
});
