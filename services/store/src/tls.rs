//! TLS to PostgreSQL over rustls, chosen as libpq chooses it: by `sslmode`
//! and `sslrootcert` in `DATABASE_URL`'s query string.
//!
//! | `sslmode`          | encrypted                  | CA verified | host name verified |
//! |--------------------|----------------------------|-------------|--------------------|
//! | `disable`          | no                         | no          | no                 |
//! | `prefer` (default) | if the server offers it    | no          | no                 |
//! | `require`          | yes                        | no          | no                 |
//! | `verify-ca`        | yes                        | yes         | no                 |
//! | `verify-full`      | yes                        | yes         | yes                |
//!
//! `sslrootcert` is a PEM file of CA certificates (any number: the RDS
//! global bundle holds one per region); `verify-ca` and `verify-full`
//! need it. It is read when the URL is parsed, so a missing or empty file
//! is reported with the other settings, before any connection.

use rustls::DigitallySignedStruct;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, RootCertStore, SignatureScheme};
use std::path::Path;
use std::sync::Arc;
use tokio_postgres_rustls::MakeRustlsConnect;

/// libpq's `sslmode` values this client supports (`allow` is not one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl std::str::FromStr for SslMode {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Ok(match value {
            "disable" => Self::Disable,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            other => {
                return Err(format!(
                    "sslmode={other} is not one of disable, prefer, require, verify-ca, verify-full"
                ));
            }
        })
    }
}

impl SslMode {
    /// What tokio-postgres should do: the verification is the connector's.
    pub fn negotiation(self) -> tokio_postgres::config::SslMode {
        match self {
            Self::Disable => tokio_postgres::config::SslMode::Disable,
            Self::Prefer => tokio_postgres::config::SslMode::Prefer,
            Self::Require | Self::VerifyCa | Self::VerifyFull => {
                tokio_postgres::config::SslMode::Require
            }
        }
    }
}

/// The rustls connector for `mode`, trusting the CAs in `root_cert`;
/// `None` for `disable`.
pub fn connector(
    mode: SslMode,
    root_cert: Option<&Path>,
) -> Result<Option<MakeRustlsConnect>, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let roots = match root_cert {
        Some(path) => Some(Arc::new(load_roots(path)?)),
        None => None,
    };
    let verifier: Arc<dyn ServerCertVerifier> = match (mode, roots) {
        (SslMode::Disable, _) => return Ok(None),
        (SslMode::Prefer | SslMode::Require, _) => Arc::new(Lenient {
            chain: None,
            algorithms: provider.signature_verification_algorithms,
        }),
        (SslMode::VerifyCa | SslMode::VerifyFull, None) => {
            return Err(format!(
                "sslmode={} needs sslrootcert=<path of a PEM file of CA certificates>",
                if mode == SslMode::VerifyCa {
                    "verify-ca"
                } else {
                    "verify-full"
                }
            ));
        }
        (SslMode::VerifyCa | SslMode::VerifyFull, Some(roots)) => {
            let webpki = WebPkiServerVerifier::builder_with_provider(roots, Arc::clone(&provider))
                .build()
                .map_err(|e| format!("cannot use the CA certificates: {e}"))?;
            if mode == SslMode::VerifyFull {
                webpki
            } else {
                Arc::new(Lenient {
                    chain: Some(webpki),
                    algorithms: provider.signature_verification_algorithms,
                })
            }
        }
    };
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS set-up: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Some(MakeRustlsConnect::new(config)))
}

/// The CA certificates of a PEM file. Certificates that cannot be parsed
/// are skipped rather than failing the whole file: bundles such as RDS's
/// hold a hundred CAs for every region and generation, and one that the
/// parser does not take (an old or unusual encoding) must not make the
/// other ones unusable. Only a file with no usable certificate fails.
fn load_roots(path: &Path) -> Result<RootCertStore, String> {
    let shown = path.display();
    let mut roots = RootCertStore::empty();
    let mut unreadable = 0;
    let mut certificates = Vec::new();
    for certificate in
        CertificateDer::pem_file_iter(path).map_err(|e| format!("sslrootcert {shown}: {e}"))?
    {
        match certificate {
            Ok(certificate) => certificates.push(certificate),
            // A PEM block that is not base64 DER: skip it as well.
            Err(_) => unreadable += 1,
        }
    }
    let (_, ignored) = roots.add_parsable_certificates(certificates);
    if roots.is_empty() {
        return Err(format!(
            "sslrootcert {shown} holds no usable CA certificate ({} could not be parsed)",
            ignored + unreadable
        ));
    }
    Ok(roots)
}

/// What libpq checks short of `verify-full`. Without a chain (`prefer`,
/// `require`) any certificate is accepted; with one (`verify-ca`) the chain
/// must lead to a trusted CA, whatever name the certificate bears.
/// Handshake signatures are checked either way, so the handshake is sound.
#[derive(Debug)]
struct Lenient {
    chain: Option<Arc<WebPkiServerVerifier>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Lenient {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName))
            | Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForNameContext { .. },
            )) => {
                // rustls checks the chain before the name: it passed.
                Ok(ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The RDS global bundle as AWS publishes it
    /// (https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem,
    /// the copy of February 2025): the Dockerfile puts the current one in
    /// the images.
    fn rds_bundle() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rds-global-bundle.pem")
    }

    #[test]
    fn the_rds_bundle_is_trusted_in_full() {
        let text = std::fs::read_to_string(rds_bundle()).unwrap();
        let blocks = text.matches("-----BEGIN CERTIFICATE-----").count();
        assert!(blocks > 100, "{blocks}");
        assert_eq!(load_roots(&rds_bundle()).unwrap().len(), blocks);
    }

    #[test]
    fn a_certificate_that_does_not_parse_is_skipped_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let bundle = dir.path().join("bundle.pem");
        let mut text = std::fs::read_to_string(rds_bundle()).unwrap();
        let blocks = text.matches("-----BEGIN CERTIFICATE-----").count();
        // A PEM block whose DER is a SEQUENCE holding one INTEGER: valid
        // PEM, not a certificate.
        text.push_str("-----BEGIN CERTIFICATE-----\nMAMCAQA=\n-----END CERTIFICATE-----\n");
        std::fs::write(&bundle, text).unwrap();
        assert_eq!(load_roots(&bundle).unwrap().len(), blocks);

        std::fs::write(
            &bundle,
            "-----BEGIN CERTIFICATE-----\nMAMCAQA=\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let err = load_roots(&bundle).unwrap_err();
        assert!(
            err.ends_with("holds no usable CA certificate (1 could not be parsed)"),
            "{err}"
        );
    }
}
