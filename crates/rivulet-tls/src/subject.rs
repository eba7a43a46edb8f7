//! The user a client certificate names: the common name (CN) of its subject, read from the
//! DER encoding (RFC 5280: Certificate, then TBSCertificate's sixth field, a sequence of
//! relative distinguished names). Kafka's SSL principal builder can map a subject to its
//! CN the same way (`ssl.principal.mapping.rules=RULE:^CN=([^,]+).*$/$1/`).
//!
//! The reader walks only the few elements on the way, with every length checked against
//! what is left: the handshake has verified the certificate, but nothing here may panic on
//! any bytes (a fuzz target checks it).

/// DER tags met on the way.
const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
const VERSION: u8 = 0xa0;
const UTF8_STRING: u8 = 0x0c;
const PRINTABLE_STRING: u8 = 0x13;
const IA5_STRING: u8 = 0x16;
/// id-at-commonName (2.5.4.3), encoded.
const COMMON_NAME: [u8; 3] = [0x55, 0x04, 0x03];
/// Elements read from one sequence or set at most.
const ELEMENTS_MAX: usize = 64;

/// Consecutive DER elements.
struct Elements<'a>(&'a [u8]);

impl<'a> Elements<'a> {
    /// The next element's tag and content; `None` at the end or on malformed bytes.
    fn next(&mut self) -> Option<(u8, &'a [u8])> {
        let (&tag, rest) = self.0.split_first()?;
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 {
                return None;
            }
            let bytes = rest.get(..n)?;
            let len = bytes.iter().fold(0usize, |a, b| (a << 8) | usize::from(*b));
            (len, &rest[n..])
        };
        let content = rest.get(..len)?;
        self.0 = &rest[len..];
        Some((tag, content))
    }

    /// The content of the next element, which must have `tag`.
    fn expect(&mut self, tag: u8) -> Option<&'a [u8]> {
        self.next().filter(|(t, _)| *t == tag).map(|(_, c)| c)
    }
}

/// The subject's common name of a DER certificate; `None` when it has none or the bytes
/// are not a certificate.
pub fn common_name(certificate_der: &[u8]) -> Option<String> {
    let certificate = Elements(certificate_der).expect(SEQUENCE)?;
    let mut tbs = Elements(Elements(certificate).expect(SEQUENCE)?);
    let (tag, _) = tbs.next()?;
    // The optional version comes first; without it, that was the serial number.
    if tag == VERSION {
        tbs.next()?;
    }
    for _ in 0..3 {
        tbs.next()?; // signature, issuer, validity
    }
    let mut rdns = Elements(tbs.expect(SEQUENCE)?);
    let mut name = None;
    for _ in 0..ELEMENTS_MAX {
        let Some(set) = rdns.expect(SET) else { break };
        let mut attributes = Elements(set);
        for _ in 0..ELEMENTS_MAX {
            let Some(attribute) = attributes.expect(SEQUENCE) else {
                break;
            };
            let mut fields = Elements(attribute);
            if fields.expect(OID)? == COMMON_NAME {
                name = directory_string(fields.next()?);
            }
        }
    }
    name
}

/// A DirectoryString's text (UTF8String, PrintableString or IA5String).
fn directory_string((tag, content): (u8, &[u8])) -> Option<String> {
    match tag {
        UTF8_STRING | PRINTABLE_STRING | IA5_STRING => String::from_utf8(content.to_vec()).ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn certificate(cn: Option<&str>) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).expect("params");
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Rivulet");
        if let Some(cn) = cn {
            params.distinguished_name.push(rcgen::DnType::CommonName, cn);
        }
        params.self_signed(&key).expect("sign").der().to_vec()
    }

    #[test]
    fn the_subjects_common_name_is_read() {
        assert_eq!(common_name(&certificate(Some("alice"))).as_deref(), Some("alice"));
        assert_eq!(
            common_name(&certificate(Some("Zoë Ünïcode"))).as_deref(),
            Some("Zoë Ünïcode")
        );
        assert_eq!(common_name(&certificate(None)), None);
    }

    #[test]
    fn garbage_is_no_name_not_a_panic() {
        let good = certificate(Some("alice"));
        assert_eq!(common_name(b""), None);
        assert_eq!(common_name(&good[..good.len() / 2]), None);
        let mut flipped = good.clone();
        for i in (0..flipped.len()).step_by(7) {
            flipped[i] ^= 0x5a;
            let _ = common_name(&flipped);
        }
    }
}
