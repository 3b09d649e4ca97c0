//! TLS 1.3 configurations for both ends of the tunnel.
//!
//! The management plane requires a client certificate chaining to its CA *and* accepted by
//! a [`PeerCheck`] (the registry of live clusters), so an unknown, removed or superseded
//! certificate is refused during the handshake, before any HTTP/2 byte is exchanged.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore,
    ServerConfig, SignatureScheme,
};

use crate::fingerprint::fingerprint_sha256;

/// A TLS configuration that could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    /// rustls refused the certificates or keys.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client verifier could not be built from the CA.
    #[error("client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// The system's trust store could not be loaded.
    #[error("system root certificates: {0}")]
    NativeRoots(String),
}

/// The crypto provider used everywhere (ring: small, fast to build).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Decides whether an already chain-verified client certificate belongs to a live peer.
///
/// Called synchronously inside the TLS handshake, so implementations must be fast
/// (an in-memory lookup). Returning `Err(CertificateError::Revoked)` sends the
/// `certificate_revoked` alert, which the agent reports as "removed or superseded".
pub trait PeerCheck: Send + Sync + std::fmt::Debug {
    /// `fingerprint` is the hex SHA-256 of `end_entity`.
    fn check(
        &self,
        fingerprint: &str,
        end_entity: &CertificateDer<'_>,
    ) -> Result<(), CertificateError>;
}

#[derive(Debug)]
struct RegisteredClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    check: Arc<dyn PeerCheck>,
}

impl ClientCertVerifier for RegisteredClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.inner
            .verify_client_cert(end_entity, intermediates, now)
            .inspect_err(|e| tracing::warn!("tunnel client certificate refused: {e}"))?;
        let fingerprint = fingerprint_sha256(end_entity);
        self.check
            .check(&fingerprint, end_entity)
            .map_err(rustls::Error::InvalidCertificate)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Server side of the tunnel: TLS 1.3 only, client certificate mandatory, verified against
/// `ca` and then `check`; ALPN `h2`.
pub fn tunnel_server_config(
    ca: &[CertificateDer<'static>],
    cert_chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    check: Arc<dyn PeerCheck>,
) -> Result<ServerConfig, TlsConfigError> {
    let mut roots = RootCertStore::empty();
    for c in ca {
        roots.add(c.clone())?;
    }
    let inner = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider()).build()?;
    let verifier = Arc::new(RegisteredClientVerifier { inner, check });
    let mut cfg = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(cert_chain, key)?;
    cfg.alpn_protocols = vec![crate::ALPN_TUNNEL.to_vec()];
    // Tunnels are long-lived; resumption buys nothing and would keep ticket keys around.
    cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    Ok(cfg)
}

/// Which roots the agent trusts for the management plane.
#[derive(Clone, Debug)]
pub enum ServerRoots {
    /// Only the management plane's own CA.
    Ca(Vec<CertificateDer<'static>>),
    /// The operating system's trust store.
    System,
}

/// Root store for `roots`.
pub fn root_store(roots: &ServerRoots) -> Result<RootCertStore, TlsConfigError> {
    let mut store = RootCertStore::empty();
    match roots {
        ServerRoots::Ca(certs) => {
            for c in certs {
                store.add(c.clone())?;
            }
        }
        ServerRoots::System => {
            let loaded = rustls_native_certs::load_native_certs();
            if loaded.certs.is_empty() {
                return Err(TlsConfigError::NativeRoots(format!("{:?}", loaded.errors)));
            }
            let (_added, _ignored) = store.add_parsable_certificates(loaded.certs);
        }
    }
    Ok(store)
}

/// Agent side of the tunnel: TLS 1.3, presents the cluster's client certificate.
pub fn tunnel_client_config(
    roots: &ServerRoots,
    cert_chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<ClientConfig, TlsConfigError> {
    let mut cfg = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(root_store(roots)?)
        .with_client_auth_cert(cert_chain, key)?;
    cfg.alpn_protocols = vec![crate::ALPN_TUNNEL.to_vec()];
    Ok(cfg)
}

/// HTTPS server config for people-facing listeners: TLS 1.3, ALPN h2 and http/1.1
/// (kubectl needs HTTP/1.1 for SPDY/WebSocket upgrades).
pub fn https_server_config(
    cert_chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<ServerConfig, TlsConfigError> {
    let mut cfg = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(cert_chain, key)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

/// HTTPS client config trusting `roots` (TLS 1.2 allowed: kube-apiservers and proxies in
/// the wild still negotiate it).
pub fn https_client_config(roots: &ServerRoots) -> Result<ClientConfig, TlsConfigError> {
    Ok(ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(root_store(roots)?)
        .with_no_client_auth())
}

/// Why a TLS peer refused us or we refused it, in words an operator can act on.
pub fn explain(err: &rustls::Error) -> String {
    use rustls::AlertDescription as A;
    match err {
        rustls::Error::AlertReceived(A::CertificateRevoked) => {
            "the management plane refused this cluster's certificate: it was revoked (the cluster was removed or its certificate superseded); re-register the cluster".into()
        }
        rustls::Error::AlertReceived(A::UnknownCA) => {
            "the management plane refused this cluster's certificate: it was not issued by the management plane's CA (foreign certificate)".into()
        }
        rustls::Error::AlertReceived(A::CertificateExpired) => {
            "the management plane refused this cluster's certificate: it has expired; re-register the cluster".into()
        }
        rustls::Error::AlertReceived(A::BadCertificate) | rustls::Error::AlertReceived(A::CertificateUnknown) => {
            "the management plane refused this cluster's certificate (not registered)".into()
        }
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
            "the management plane's certificate is not signed by the CA in this agent's configuration (wrong CA)".into()
        }
        rustls::Error::InvalidCertificate(CertificateError::NotValidForName)
        | rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext { .. }) => {
            "the management plane's certificate does not match the address this agent dials".into()
        }
        rustls::Error::InvalidCertificate(CertificateError::Expired)
        | rustls::Error::InvalidCertificate(CertificateError::ExpiredContext { .. }) => {
            "the management plane's certificate has expired".into()
        }
        other => format!("TLS: {other}"),
    }
}

/// Whether retrying can help after `err` (false for refusals that only a person can fix).
pub fn is_permanent(err: &rustls::Error) -> bool {
    use rustls::AlertDescription as A;
    matches!(
        err,
        rustls::Error::AlertReceived(A::CertificateRevoked)
            | rustls::Error::AlertReceived(A::UnknownCA)
            | rustls::Error::AlertReceived(A::CertificateExpired)
            | rustls::Error::InvalidCertificate(_)
    )
}

/// Finds a rustls error inside an error chain (hyper and tokio wrap it in `io::Error`).
pub fn find_rustls_error<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a rustls::Error> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(r) = e.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
            && let Some(r) = inner.downcast_ref::<rustls::Error>()
        {
            return Some(r);
        }
        cur = e.source();
    }
    None
}
