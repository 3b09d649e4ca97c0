//! The management plane's certificate authority (rcgen).
//!
//! The CA signs the server's own certificates (tunnel and API listeners) and one client
//! certificate per managed cluster (CN = cluster name). Cluster private keys are handed out
//! in the installation manifest and never stored here.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

use crate::files::{write_private, write_public};

/// How long cluster client certificates are valid.
pub const CLIENT_CERT_VALIDITY: Duration = Duration::days(365);
const CA_VALIDITY: Duration = Duration::days(3650);
const SERVER_CERT_VALIDITY: Duration = Duration::days(365);

/// A CA operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// rcgen could not generate or sign.
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A certificate with its private key, both PEM.
#[derive(Clone)]
pub struct Issued {
    /// Certificate PEM.
    pub cert_pem: String,
    /// Private key PEM (PKCS#8).
    pub key_pem: String,
    /// DER of the certificate (for fingerprints).
    pub cert_der: Vec<u8>,
    /// Expiry.
    pub not_after: OffsetDateTime,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// The CA, loaded from or created in the data directory.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
}

impl Ca {
    /// Loads `dir/ca.crt` + `dir/ca.key`, creating them (key 0600) on first start.
    pub fn load_or_create(dir: &Path) -> Result<Ca, PkiError> {
        let cert_path = dir.join("ca.crt");
        let key_path = dir.join("ca.key");
        if cert_path.exists() && key_path.exists() {
            let cert_pem = std::fs::read_to_string(&cert_path).map_err(io_err(&cert_path))?;
            let key_pem = std::fs::read_to_string(&key_path).map_err(io_err(&key_path))?;
            let key = KeyPair::from_pem(&key_pem)?;
            let issuer = Issuer::from_ca_cert_pem(&cert_pem, key)?;
            return Ok(Ca { issuer, cert_pem });
        }
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        // A unique CN: certificate paths are built by issuer name, so two management planes'
        // CAs must never share one, or a foreign certificate fails as "bad signature"
        // instead of "unknown CA".
        dn.push(
            DnType::CommonName,
            format!("cattery-ca-{}", crate::auth::random_id(6)),
        );
        dn.push(DnType::OrganizationName, "Cattery");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::hours(1);
        params.not_after = now + CA_VALIDITY;
        let cert = params.self_signed(&key)?;
        write_private(&key_path, key.serialize_pem().as_bytes()).map_err(io_err(&key_path))?;
        write_public(&cert_path, cert.pem().as_bytes()).map_err(io_err(&cert_path))?;
        Ok(Ca {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// The CA certificate (PEM), as shipped to agents and clients.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Signs a client certificate for cluster `name` (CN = name, EKU clientAuth).
    pub fn issue_client(&self, name: &str) -> Result<Issued, PkiError> {
        self.issue(
            name,
            &[],
            ExtendedKeyUsagePurpose::ClientAuth,
            CLIENT_CERT_VALIDITY,
            OffsetDateTime::now_utc(),
        )
    }

    /// Signs a server certificate for `hosts` (DNS names or IP addresses).
    pub fn issue_server(&self, cn: &str, hosts: &[String]) -> Result<Issued, PkiError> {
        self.issue(
            cn,
            hosts,
            ExtendedKeyUsagePurpose::ServerAuth,
            SERVER_CERT_VALIDITY,
            OffsetDateTime::now_utc(),
        )
    }

    fn issue(
        &self,
        cn: &str,
        hosts: &[String],
        usage: ExtendedKeyUsagePurpose,
        validity: Duration,
        not_before: OffsetDateTime,
    ) -> Result<Issued, PkiError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        params.distinguished_name = dn;
        params.subject_alt_names = hosts
            .iter()
            .map(|h| match h.parse::<std::net::IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => Ok(SanType::DnsName(h.clone().try_into()?)),
            })
            .collect::<Result<_, rcgen::Error>>()?;
        params.extended_key_usages = vec![usage];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.not_before = not_before - Duration::minutes(5);
        params.not_after = not_before + validity;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().to_vec(),
            not_after: params.not_after,
        })
    }
}

/// Loads a server certificate from `dir/{stem}.crt`/`.key` if it exists, is ours and still
/// covers `hosts` for at least 30 days; otherwise issues a new one and writes it.
pub fn server_cert(ca: &Ca, dir: &Path, stem: &str, hosts: &[String]) -> Result<Issued, PkiError> {
    let cert_path = dir.join(format!("{stem}.crt"));
    let key_path = dir.join(format!("{stem}.key"));
    if let (Ok(cert_pem), Ok(key_pem)) = (
        std::fs::read_to_string(&cert_path),
        std::fs::read_to_string(&key_path),
    ) && let Some(issued) = reusable(&cert_pem, key_pem, hosts)
    {
        return Ok(issued);
    }
    let issued = ca.issue_server(&format!("cattery-{stem}"), hosts)?;
    write_private(&key_path, issued.key_pem.as_bytes()).map_err(io_err(&key_path))?;
    write_public(&cert_path, issued.cert_pem.as_bytes()).map_err(io_err(&cert_path))?;
    Ok(issued)
}

fn reusable(cert_pem: &str, key_pem: String, hosts: &[String]) -> Option<Issued> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()).ok()?;
    let cert = pem.parse_x509().ok()?;
    let not_after = cert.validity().not_after.to_datetime();
    if not_after < OffsetDateTime::now_utc() + Duration::days(30) {
        return None;
    }
    let sans: Vec<String> = cert
        .subject_alternative_name()
        .ok()??
        .value
        .general_names
        .iter()
        .filter_map(|n| match n {
            x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
            x509_parser::extensions::GeneralName::IPAddress(b) => match b.len() {
                4 => Some(std::net::IpAddr::from(<[u8; 4]>::try_from(*b).ok()?).to_string()),
                16 => Some(std::net::IpAddr::from(<[u8; 16]>::try_from(*b).ok()?).to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect();
    if !hosts.iter().all(|h| sans.contains(h)) {
        return None;
    }
    Some(Issued {
        cert_pem: cert_pem.to_string(),
        key_pem,
        cert_der: pem.contents.clone(),
        not_after,
    })
}

/// The common name of a DER certificate.
pub fn common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    cert.subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_string)
}
