//! The API's own resources as `wire::decode` reads request bodies and files (JSON or YAML):
//! ManagedCluster and Token, and the names the API validates.

use cattery_api::wire::decode;
use cattery_api::{ManagedCluster, Token, validate_dns1123_label};
use serde::{Serialize, de::DeserializeOwned};
use std::fmt::Debug;

/// Decodes as `T`; when that works, JSON-encoding and decoding again gives the same value.
fn round_trip<T: DeserializeOwned + Serialize + PartialEq + Debug>(data: &[u8]) -> Option<T> {
    let v: T = decode(data).ok()?;
    let json = serde_json::to_vec(&v).expect("a decoded resource serialises");
    let again: T = decode(&json).expect("a serialised resource decodes");
    assert_eq!(again, v, "decode(serialise(x)) != x");
    Some(v)
}

/// Runs one input; panics when an invariant breaks.
pub fn check(data: &[u8]) {
    if let Some(c) = round_trip::<ManagedCluster>(data) {
        check_name(&c.metadata.name);
    }
    if let Some(t) = round_trip::<Token>(data) {
        check_name(&t.metadata.name);
    }
    if let Ok(s) = std::str::from_utf8(data) {
        check_name(s);
    }
}

/// A name the validator accepts is a DNS-1123 label, and the validator says so for exactly
/// those names.
fn check_name(name: &str) {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    assert_eq!(
        validate_dns1123_label(name).is_ok(),
        ok,
        "validate_dns1123_label({name:?})"
    );
}
