//! TLS for `wss://` endpoints: the dialer's trust (the system's roots, plus `--ca-file`) and
//! a node's own certificate (`--tls-cert`, `--tls-key`). Shell code: it reads files.
//!
//! TLS here only gets a connection through middleboxes (proxies, firewalls that pass only
//! HTTPS); the Noise session inside still authenticates the instance and the person, so a
//! wrong certificate can only ever deny service, never impersonate a peer.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

/// The TLS files of one instance, as given on the command line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// `--ca-file`: PEM certificates trusted besides the system's roots (a private CA, or a
    /// node's self-signed certificate, which is then trusted as itself).
    pub ca_file: Option<PathBuf>,
    /// `--tls-cert`: the node's certificate chain (PEM), leaf first.
    pub cert: Option<PathBuf>,
    /// `--tls-key`: the node's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
}

/// Why the TLS files cannot be used; each names the file and what to give instead.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// `--ca-file` unreadable or without a certificate.
    #[error("cannot use --ca-file {path}: {why}; give a PEM file with the CA (or the node's self-signed) certificate")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// `--tls-cert` unreadable or without a certificate.
    #[error(
        "cannot use --tls-cert {path}: {why}; give the node's certificate chain as PEM, leaf first"
    )]
    Cert {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// `--tls-key` unreadable or not a key.
    #[error("cannot use --tls-key {path}: {why}; give the certificate's private key as PEM (PKCS#8, PKCS#1 or SEC1)")]
    Key {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The key does not belong to the certificate, or rustls refuses the pair.
    #[error("--tls-cert and --tls-key do not make a usable pair: {0}; give the key that belongs to the certificate")]
    Pair(String),
}

/// ring, not aws-lc-rs: no C toolchain beyond `cc`, and the primitives are the same.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The dialer's side: what `wss://` connections trust. The system's roots are read on the
/// first `wss://` dial (they cost milliseconds to parse, and most instances only dial
/// `ws://`); `--ca-file` is read at start so a bad path fails at once.
#[derive(Debug)]
pub struct TlsClient {
    extra: Vec<CertificateDer<'static>>,
    config: OnceLock<Arc<ClientConfig>>,
}

impl TlsClient {
    /// Trust the system's roots and the certificates in `ca_file`.
    pub fn new(ca_file: Option<&Path>) -> Result<TlsClient, TlsError> {
        let Some(path) = ca_file else {
            return Ok(TlsClient::system());
        };
        let bad = |why: String| TlsError::CaFile {
            path: path.to_path_buf(),
            why,
        };
        let extra = read_certs(path).map_err(bad)?;
        // Each must be usable as a trust anchor, or it would be dropped silently.
        let mut probe = RootCertStore::empty();
        for c in &extra {
            probe
                .add(c.clone())
                .map_err(|e| bad(format!("a certificate in it is not usable: {e}")))?;
        }
        Ok(TlsClient {
            extra,
            config: OnceLock::new(),
        })
    }

    /// Trust the system's roots only.
    pub fn system() -> TlsClient {
        TlsClient {
            extra: Vec::new(),
            config: OnceLock::new(),
        }
    }

    /// The rustls configuration for a `wss://` dial.
    pub fn config(&self) -> Arc<ClientConfig> {
        self.config.get_or_init(|| self.build()).clone()
    }

    fn build(&self) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for e in &native.errors {
            tracing::warn!("reading the system's TLS roots: {e}");
        }
        let (added, ignored) = roots.add_parsable_certificates(native.certs);
        tracing::debug!(added, ignored, "system TLS roots loaded");
        for c in &self.extra {
            // Checked in `new`.
            let _ = roots.add(c.clone());
        }
        let verifier = Pinned {
            webpki: if roots.is_empty() {
                None
            } else {
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
                    .build()
                    .ok()
            },
            pinned: self.extra.clone(),
            provider: provider(),
        };
        let config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("ring's default provider supports the default protocol versions")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        Arc::new(config)
    }
}

/// The web PKI's verdict, except that a certificate given in `--ca-file` is trusted as
/// itself when the node presents exactly it: a self-signed certificate made with
/// `openssl req -x509` is marked as a CA, or carries its name only in the CN, and the web
/// PKI refuses both as a server's certificate. The handshake signature is still checked
/// against the certificate's key, so only the holder of its private key gets through.
#[derive(Debug)]
struct Pinned {
    webpki: Option<Arc<WebPkiServerVerifier>>,
    pinned: Vec<CertificateDer<'static>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verdict = match &self.webpki {
            Some(v) => v.verify_server_cert(end_entity, intermediates, server_name, ocsp, now),
            None => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer,
            )),
        };
        match verdict {
            Err(rustls::Error::InvalidCertificate(_))
                if self
                    .pinned
                    .iter()
                    .any(|p| p.as_ref() == end_entity.as_ref()) =>
            {
                Ok(ServerCertVerified::assertion())
            }
            v => v,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A node's TLS acceptor from `--tls-cert` and `--tls-key`.
pub fn acceptor(cert: &Path, key: &Path) -> Result<tokio_rustls::TlsAcceptor, TlsError> {
    let chain = read_certs(cert).map_err(|why| TlsError::Cert {
        path: cert.to_path_buf(),
        why,
    })?;
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: key.to_path_buf(),
        why: pem_why(&e),
    })?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring's default provider supports the default protocol versions")
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| TlsError::Pair(e.to_string()))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Every certificate in a PEM file; none is an error.
fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_why(&e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_why(&e))?;
    if certs.is_empty() {
        return Err("it holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into());
    }
    Ok(certs)
}

fn pem_why(e: &rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error as E;
    match e {
        E::Io(io) => io.to_string(),
        E::NoItemsFound => "it holds no PEM item of this kind".into(),
        other => format!("not valid PEM ({other:?})"),
    }
}

/// Why a `wss://` dial failed, for people: an untrusted certificate says how to trust it.
pub fn untrusted_why(e: &tokio_tungstenite::tungstenite::Error) -> Option<String> {
    use tokio_tungstenite::tungstenite::error::TlsError as T;
    use tokio_tungstenite::tungstenite::Error as W;
    let inner = match e {
        W::Tls(T::Rustls(r)) => r,
        W::Io(io) => io.get_ref()?.downcast_ref::<rustls::Error>()?,
        _ => return None,
    };
    matches!(inner, rustls::Error::InvalidCertificate(_)).then(|| inner.to_string())
}
