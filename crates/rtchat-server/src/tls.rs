//! TLS for the HTTPS listener: the user's own PEM files, or a self-signed development
//! certificate for `localhost`, `127.0.0.1` and `::1` made once with rcgen and kept in the
//! data directory, so HTTP/2 in the browser needs no manual `openssl` step.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::ring::default_provider;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

/// Where the certificate comes from.
#[derive(Debug, Clone)]
pub enum CertSource {
    /// `--tls-cert FILE --tls-key FILE`.
    Files { cert: PathBuf, key: PathBuf },
    /// The generated development certificate, kept in `<data dir>/tls/`.
    Generated { data_dir: PathBuf },
}

/// A ready TLS configuration and what to tell the user about it.
pub struct Tls {
    pub config: Arc<rustls::ServerConfig>,
    pub cert_path: PathBuf,
    /// SHA-256 of the leaf certificate, `AB:CD:...`.
    pub fingerprint: String,
    /// True when this start generated the certificate.
    pub generated: bool,
}

/// Why TLS could not be set up; the text is shown to the user as is.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{path} holds no PEM certificate")]
    NoCert { path: PathBuf },
    #[error("{path} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)")]
    NoKey { path: PathBuf },
    #[error("the private key {key} does not belong to the certificate {cert}")]
    Mismatch { cert: PathBuf, key: PathBuf },
    #[error("the certificate or key is not usable: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("cannot write the development certificate to {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot generate a certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

/// Loads (or first generates) the certificate and builds a rustls configuration that offers
/// `h2` and `http/1.1` by ALPN.
pub fn load(source: &CertSource) -> Result<Tls, TlsError> {
    let (cert_path, key_path, generated) = match source {
        CertSource::Files { cert, key } => (cert.clone(), key.clone(), false),
        CertSource::Generated { data_dir } => ensure_dev_cert(data_dir)?,
    };
    let certs = read_certs(&cert_path)?;
    let key = read_key(&key_path)?;
    let provider = Arc::new(default_provider());
    let signing_key = provider
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|_| TlsError::NoKey {
            path: key_path.clone(),
        })?;
    let certified = rustls::sign::CertifiedKey::new(certs.clone(), signing_key);
    if certified.keys_match().is_err() {
        return Err(TlsError::Mismatch {
            cert: cert_path,
            key: key_path,
        });
    }
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs.clone(), key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Tls {
        config: Arc::new(config),
        fingerprint: fingerprint(&certs[0]),
        cert_path,
        generated,
    })
}

/// The generated certificate's files in `data_dir`, making them first if needed. Returns
/// `(cert, key, generated_now)`.
pub fn ensure_dev_cert(data_dir: &Path) -> Result<(PathBuf, PathBuf, bool), TlsError> {
    let dir = data_dir.join("tls");
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    if cert.exists() && key.exists() {
        return Ok((cert, key, false));
    }
    let rcgen::CertifiedKey {
        cert: made,
        signing_key,
    } = rcgen::generate_simple_self_signed(vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ])?;
    // Write into a private temporary folder and rename it into place, so two servers
    // starting at once never pair one's certificate with the other's key.
    let write_err = |path: &Path| {
        let path = path.to_owned();
        move |source| TlsError::Write { path, source }
    };
    std::fs::create_dir_all(data_dir).map_err(write_err(data_dir))?;
    let tmp = data_dir.join(format!("tls.tmp-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).map_err(write_err(&tmp))?;
    std::fs::write(tmp.join("cert.pem"), made.pem()).map_err(write_err(&tmp))?;
    write_private(&tmp.join("key.pem"), signing_key.serialize_pem().as_bytes())
        .map_err(write_err(&tmp))?;
    match std::fs::rename(&tmp, &dir) {
        Ok(()) => Ok((cert, key, true)),
        Err(_) if cert.exists() && key.exists() => {
            // Another rtchat won the race: use its certificate.
            let _ = std::fs::remove_dir_all(&tmp);
            Ok((cert, key, false))
        }
        Err(source) => {
            let _ = std::fs::remove_dir_all(&tmp);
            Err(TlsError::Write { path: dir, source })
        }
    }
}

fn write_private(path: &Path, data: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(data)
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let data = std::fs::read(path).map_err(|source| TlsError::Read {
        what: "certificate",
        path: path.to_owned(),
        source,
    })?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&data)
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(TlsError::NoCert {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let data = std::fs::read(path).map_err(|source| TlsError::Read {
        what: "private key",
        path: path.to_owned(),
        source,
    })?;
    PrivateKeyDer::from_pem_slice(&data).map_err(|_| TlsError::NoKey {
        path: path.to_owned(),
    })
}

/// The SHA-256 fingerprint of a certificate as browsers show it: `AB:CD:...`.
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    Sha256::digest(cert.as_ref())
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Where the certificate is, its fingerprint, and how to trust it: what `rtchat cert` prints.
pub fn describe_trust(tls: &Tls) -> String {
    let path = tls.cert_path.display();
    format!(
        "certificate: {path}\n\
         SHA-256 fingerprint: {fp}\n\
         \n\
         To trust it:\n\
         - curl:     curl --cacert {path} https://localhost:8443/poll\n\
         - Debian/Ubuntu system store: sudo cp {path} /usr/local/share/ca-certificates/rtchat.crt && sudo update-ca-certificates\n\
         - Chromium/Chrome (Linux, NSS): certutil -d sql:$HOME/.pki/nssdb -A -t 'P,,' -n rtchat -i {path}\n\
         - Firefox: Settings → Privacy & Security → Certificates → View Certificates → Servers → Add Exception\n\
         - macOS: sudo security add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain {path}",
        fp = tls.fingerprint
    )
}
