//! Reading PEM certificates and keys with errors that say which input is wrong.

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// PEM input that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum PemError {
    /// Not parseable as PEM of the expected type.
    #[error("{what}: not a valid PEM {kind}: {source}")]
    Invalid {
        /// Which input (file path or description).
        what: String,
        /// `certificate` or `private key`.
        kind: &'static str,
        /// Parser error.
        source: rustls_pki_types::pem::Error,
    },
    /// Valid PEM but no object of the expected type in it.
    #[error("{what}: contains no PEM {kind}")]
    Missing {
        /// Which input.
        what: String,
        /// `certificate` or `private key`.
        kind: &'static str,
    },
}

/// All certificates in `pem`; at least one.
pub fn certs(what: &str, pem: &str) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| PemError::Invalid {
            what: what.into(),
            kind: "certificate",
            source,
        })?;
    if certs.is_empty() {
        return Err(PemError::Missing {
            what: what.into(),
            kind: "certificate",
        });
    }
    Ok(certs)
}

/// The private key in `pem`.
pub fn private_key(what: &str, pem: &str) -> Result<PrivateKeyDer<'static>, PemError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|source| match source {
        rustls_pki_types::pem::Error::NoItemsFound => PemError::Missing {
            what: what.into(),
            kind: "private key",
        },
        source => PemError::Invalid {
            what: what.into(),
            kind: "private key",
            source,
        },
    })
}
