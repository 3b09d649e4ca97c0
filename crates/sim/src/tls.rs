//! HTTPS for `--tls-dir`: a self-signed CA (kept in the directory and reused
//! across restarts, so clients that trust `ca.crt` keep working) and a fresh
//! serving certificate for localhost and the listen address.
//!
//! Files: `ca.crt`, `ca.key`, `tls.crt`, `tls.key`; keys are mode 0600.

use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// What [`load_or_create`] produces.
pub struct TlsMaterial {
    /// Ready-to-use server configuration (ALPN h2 and http/1.1).
    pub config: Arc<rustls::ServerConfig>,
    /// PEM of the CA, for clients' trust stores.
    pub ca_pem: String,
}

fn write_file(path: &Path, contents: &str, mode: u32) -> anyhow::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(contents.as_bytes())?;
    Ok(())
}

fn ca_params(cluster: &str) -> anyhow::Result<CertificateParams> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name
        .push(DnType::CommonName, format!("cattery-sim {cluster} CA"));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(p)
}

/// Loads the CA from `dir` (or creates it) and issues a serving certificate.
pub fn load_or_create(
    dir: &Path,
    cluster: &str,
    listen: SocketAddr,
) -> anyhow::Result<TlsMaterial> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let (ca_crt, ca_key) = (dir.join("ca.crt"), dir.join("ca.key"));
    let (ca_pem, issuer) = if ca_crt.exists() && ca_key.exists() {
        let pem = std::fs::read_to_string(&ca_crt)?;
        let key =
            KeyPair::from_pem(&std::fs::read_to_string(&ca_key)?).context("parsing ca.key")?;
        let issuer = Issuer::from_ca_cert_pem(&pem, key).context("parsing ca.crt")?;
        (pem, issuer)
    } else {
        let key = KeyPair::generate()?;
        let params = ca_params(cluster)?;
        let pem = params.self_signed(&key)?.pem();
        write_file(&ca_key, &key.serialize_pem(), 0o600)?;
        write_file(&ca_crt, &pem, 0o644)?;
        (pem, Issuer::new(params, key))
    };

    let mut names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    if !listen.ip().is_unspecified() && !names.contains(&listen.ip().to_string()) {
        names.push(listen.ip().to_string());
    }
    let mut params = CertificateParams::new(names)?;
    params
        .distinguished_name
        .push(DnType::CommonName, format!("cattery-sim {cluster}"));
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    write_file(&dir.join("tls.key"), &key.serialize_pem(), 0o600)?;
    write_file(&dir.join("tls.crt"), &cert.pem(), 0o644)?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(cert.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsMaterial {
        config: Arc::new(config),
        ca_pem,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn creates_then_reuses_the_ca_and_keeps_keys_private() {
        let dir = tempfile::tempdir().unwrap();
        let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let first = load_or_create(dir.path(), "t", addr).unwrap();
        let second = load_or_create(dir.path(), "t", addr).unwrap();
        assert_eq!(first.ca_pem, second.ca_pem);
        assert!(first.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        for key in ["ca.key", "tls.key"] {
            let mode = std::fs::metadata(dir.path().join(key))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{key}");
        }
    }
}
