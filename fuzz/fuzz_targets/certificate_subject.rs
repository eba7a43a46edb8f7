//! Client certificates as a TLS client presents them: the DER bytes Kafka connections take
//! their user from (`rivulet_tls::common_name`). The handshake verifies a certificate
//! before its subject is read, but the reader must not panic or loop on any bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(name) = rivulet_tls::common_name(data) {
        assert!(name.len() <= data.len(), "a name longer than the certificate");
    }
});
