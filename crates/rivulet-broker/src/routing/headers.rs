//! Headers exchange matching: a binding's arguments against a message's headers.
//!
//! `x-match` chooses the rule: `all` (the default: every binding argument is present with an
//! equal value), `any` (at least one is), and `all-with-x` / `any-with-x`, which also compare
//! arguments whose names start with `x-` (the plain forms skip them). A binding argument
//! without a value (`Void`) only asks for the header to be present.

use std::collections::BTreeMap;

/// A header or argument value, as protocol front ends decode them.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    /// No value.
    Void,
    /// A boolean.
    Bool(bool),
    /// Any integer width.
    Int(i64),
    /// Any floating-point width.
    Float(f64),
    /// Text.
    Str(String),
    /// Raw bytes, or a value of a type the router does not compare (tables, arrays).
    Bytes(Vec<u8>),
}

/// Header names to values.
pub type Headers = BTreeMap<String, FieldValue>;

/// True when a message with `headers` matches a binding with `arguments`.
pub fn matches(arguments: &Headers, headers: &Headers) -> bool {
    let rule = match arguments.get("x-match") {
        Some(FieldValue::Str(s)) => s.as_str(),
        _ => "all",
    };
    let (any, with_x) = match rule {
        "any" => (true, false),
        "all-with-x" => (false, true),
        "any-with-x" => (true, true),
        _ => (false, false),
    };
    let mut compared = arguments
        .iter()
        .filter(|(k, _)| k.as_str() != "x-match" && (with_x || !k.starts_with("x-")))
        .map(|(k, want)| match headers.get(k) {
            None => false,
            Some(got) => *want == FieldValue::Void || got == want,
        });
    if any {
        compared.any(|m| m)
    } else {
        compared.all(|m| m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, FieldValue)]) -> Headers {
        pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
    }

    #[test]
    fn all_any_and_the_x_forms() {
        let msg = h(&[
            ("format", FieldValue::Str("pdf".into())),
            ("type", FieldValue::Str("report".into())),
            ("x-tenant", FieldValue::Int(7)),
        ]);
        let all = h(&[
            ("format", FieldValue::Str("pdf".into())),
            ("type", FieldValue::Str("report".into())),
        ]);
        assert!(matches(&all, &msg));
        let wrong = h(&[
            ("format", FieldValue::Str("pdf".into())),
            ("type", FieldValue::Str("log".into())),
        ]);
        assert!(!matches(&wrong, &msg));
        let mut any = wrong.clone();
        any.insert("x-match".into(), FieldValue::Str("any".into()));
        assert!(matches(&any, &msg));
        // The plain forms ignore x- arguments; the with-x forms compare them.
        let tenant = h(&[
            ("x-tenant", FieldValue::Int(8)),
            ("format", FieldValue::Str("pdf".into())),
        ]);
        assert!(matches(&tenant, &msg));
        let mut tenant_x = tenant.clone();
        tenant_x.insert("x-match".into(), FieldValue::Str("all-with-x".into()));
        assert!(!matches(&tenant_x, &msg));
        // A void argument asks for presence only.
        assert!(matches(&h(&[("type", FieldValue::Void)]), &msg));
        assert!(!matches(&h(&[("missing", FieldValue::Void)]), &msg));
        // Values compare with their type.
        assert!(!matches(
            &h(&[
                ("x-tenant", FieldValue::Str("7".into())),
                ("x-match", FieldValue::Str("all-with-x".into()))
            ]),
            &msg
        ));
    }
}
