//! Certificate fingerprints: the identity the management plane keys clusters on.

use sha2::{Digest, Sha256};

/// Lower-case hex SHA-256 of a DER certificate.
pub fn fingerprint_sha256(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}
