//! TLS for the HTTPS listener: the user's own PEM files, or a self-signed development
//! certificate for `localhost`, `127.0.0.1` and `::1` made once with rcgen and kept in the
//! data directory, so HTTP/2 in the browser needs no manual `openssl` step. The development
//! certificate, "rtchat development certificate", is valid for a year; a start that finds it
//! expiring within 30 days renews it with the same key (a pinned SPKI hash stays valid).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::ring::default_provider;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};

/// The generated certificate's subject common name.
pub const DEV_CERT_NAME: &str = "rtchat development certificate";
/// The names the generated certificate is valid for.
pub const DEV_CERT_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];
/// How long a generated (or renewed) certificate is valid, from now.
pub const DEV_CERT_VALIDITY: Duration = Duration::days(365);
/// How far in the past its validity starts (clocks that lag a little still accept it).
pub const DEV_CERT_BACKDATE: Duration = Duration::days(1);
/// A start renews the generated certificate when it expires within this.
pub const DEV_CERT_RENEW_WITHIN: Duration = Duration::days(30);

/// What this start did with the development certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DevCert {
    /// Used the one in the data directory as is.
    Kept,
    /// Made a new key and certificate.
    Generated,
    /// The certificate was expiring: issued a new one for the same key.
    Renewed,
}

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
    /// True when this start renewed the generated certificate (same key, new validity).
    pub renewed: bool,
    /// The leaf certificate's validity (not before, not after), when it could be read.
    pub validity: Option<(OffsetDateTime, OffsetDateTime)>,
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
    let (cert_path, key_path, made) = match source {
        CertSource::Files { cert, key } => (cert.clone(), key.clone(), DevCert::Kept),
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
        validity: CertInfo::parse(&certs[0]).map(|info| info.validity),
        cert_path,
        generated: made == DevCert::Generated,
        renewed: made == DevCert::Renewed,
    })
}

/// What rtchat reads from a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// The subject's common name, if any.
    pub common_name: Option<String>,
    /// Not before, not after.
    pub validity: (OffsetDateTime, OffsetDateTime),
    /// The DER SubjectPublicKeyInfo (what an SPKI pin hashes).
    pub spki: Vec<u8>,
}

impl CertInfo {
    /// Parses a DER certificate; `None` if it is not one.
    pub fn parse(der: &CertificateDer<'_>) -> Option<CertInfo> {
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
        let validity = cert.validity();
        let common_name = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_owned);
        Some(CertInfo {
            common_name,
            validity: (
                validity.not_before.to_datetime(),
                validity.not_after.to_datetime(),
            ),
            spki: cert.public_key().raw.to_vec(),
        })
    }
}

/// The development certificate for `key`, valid from a day ago for a year.
fn make_dev_cert(key: &rcgen::KeyPair) -> Result<rcgen::Certificate, rcgen::Error> {
    let mut params = rcgen::CertificateParams::new(DEV_CERT_NAMES.map(str::to_owned).to_vec())?;
    let mut name = rcgen::DistinguishedName::new();
    name.push(rcgen::DnType::CommonName, DEV_CERT_NAME);
    params.distinguished_name = name;
    let now = OffsetDateTime::now_utc();
    params.not_before = now - DEV_CERT_BACKDATE;
    params.not_after = now + DEV_CERT_VALIDITY;
    // A fresh serial each time: rcgen's default derives it from the key, and a renewed
    // certificate with the same issuer and serial as the old one confuses browsers.
    let mut serial = Sha256::new();
    serial.update(now.unix_timestamp_nanos().to_be_bytes());
    serial.update(std::process::id().to_be_bytes());
    serial.update(rcgen::PublicKeyData::der_bytes(key));
    let mut serial = serial.finalize()[..16].to_vec();
    serial[0] &= 0x7f;
    params.serial_number = Some(serial.into());
    params.self_signed(key)
}

/// Whether the certificate in `cert` (PEM) expires within [`DEV_CERT_RENEW_WITHIN`]; false
/// when it cannot be read (loading it then says why).
fn expires_soon(cert: &Path) -> bool {
    let Ok(certs) = read_certs(cert) else {
        return false;
    };
    CertInfo::parse(&certs[0])
        .is_some_and(|info| info.validity.1 - OffsetDateTime::now_utc() < DEV_CERT_RENEW_WITHIN)
}

/// Replaces `cert` with a new certificate for the key in `key`.
fn renew_dev_cert(cert: &Path, key: &Path) -> Result<(), TlsError> {
    let pem = std::fs::read_to_string(key).map_err(|source| TlsError::Read {
        what: "private key",
        path: key.to_owned(),
        source,
    })?;
    let pair = rcgen::KeyPair::from_pem(&pem).map_err(|_| TlsError::NoKey {
        path: key.to_owned(),
    })?;
    let made = make_dev_cert(&pair)?;
    // Write beside it and rename into place: a reader sees the old or the new file whole.
    let tmp = cert.with_extension(format!("pem.tmp-{}", std::process::id()));
    let write_err = |source| TlsError::Write {
        path: cert.to_owned(),
        source,
    };
    std::fs::write(&tmp, made.pem()).map_err(write_err)?;
    std::fs::rename(&tmp, cert).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        write_err(e)
    })
}

/// The generated certificate's files in `data_dir`, making them first if needed, or renewing
/// the certificate (same key) when it expires within [`DEV_CERT_RENEW_WITHIN`]. Returns
/// `(cert, key, what was done)`.
pub fn ensure_dev_cert(data_dir: &Path) -> Result<(PathBuf, PathBuf, DevCert), TlsError> {
    let dir = data_dir.join("tls");
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    if cert.exists() && key.exists() {
        if expires_soon(&cert) {
            renew_dev_cert(&cert, &key)?;
            return Ok((cert, key, DevCert::Renewed));
        }
        return Ok((cert, key, DevCert::Kept));
    }
    let signing_key = rcgen::KeyPair::generate()?;
    let made = make_dev_cert(&signing_key)?;
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
        Ok(()) => Ok((cert, key, DevCert::Generated)),
        Err(_) if cert.exists() && key.exists() => {
            // Another rtchat won the race: use its certificate.
            let _ = std::fs::remove_dir_all(&tmp);
            Ok((cert, key, DevCert::Kept))
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
    let validity = match tls.validity {
        Some((from, until)) => format!(
            "valid from {} until {}{}",
            utc(from),
            utc(until),
            if tls.renewed {
                " (renewed now, same key)"
            } else {
                ""
            }
        ),
        None => "validity: unknown".to_owned(),
    };
    format!(
        "certificate: {path}\n\
         {validity}\n\
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

/// `2026-12-02 20:00:00 UTC`.
fn utc(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh, empty data directory for one test.
    fn data_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "rtchat-tls-{name}-{}-{}",
            std::process::id(),
            OffsetDateTime::now_utc().unix_timestamp_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn info(path: &Path) -> CertInfo {
        CertInfo::parse(&read_certs(path).unwrap()[0]).unwrap()
    }

    /// `a` is `b` give or take a few minutes (the test's own run time).
    fn near(a: OffsetDateTime, b: OffsetDateTime) -> bool {
        (a - b).abs() < Duration::minutes(5)
    }

    #[test]
    fn the_generated_certificate_is_named_and_valid_for_a_year() {
        let dir = data_dir("new");
        let (cert, key, made) = ensure_dev_cert(&dir).unwrap();
        assert_eq!(made, DevCert::Generated);
        let now = OffsetDateTime::now_utc();
        let got = info(&cert);
        assert_eq!(got.common_name.as_deref(), Some(DEV_CERT_NAME));
        assert!(near(got.validity.0, now - DEV_CERT_BACKDATE), "{got:?}");
        assert!(near(got.validity.1, now + DEV_CERT_VALIDITY), "{got:?}");
        let der = read_certs(&cert).unwrap().remove(0);
        let (_, parsed) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
        let sans: Vec<String> = parsed
            .subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names
            .iter()
            .map(|name| match name {
                x509_parser::extensions::GeneralName::DNSName(dns) => dns.to_string(),
                x509_parser::extensions::GeneralName::IPAddress(ip) => match ip.len() {
                    4 => std::net::IpAddr::from(<[u8; 4]>::try_from(*ip).unwrap()).to_string(),
                    _ => std::net::IpAddr::from(<[u8; 16]>::try_from(*ip).unwrap()).to_string(),
                },
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(sans, DEV_CERT_NAMES);

        // A valid one is kept as is.
        let pem = std::fs::read(&cert).unwrap();
        let (_, _, again) = ensure_dev_cert(&dir).unwrap();
        assert_eq!(again, DevCert::Kept);
        assert_eq!(std::fs::read(&cert).unwrap(), pem);
        let tls = load(&CertSource::Generated {
            data_dir: dir.clone(),
        })
        .unwrap();
        assert!(!tls.generated && !tls.renewed);
        assert_eq!(tls.validity, Some(got.validity));
        let text = describe_trust(&tls);
        assert!(text.contains("valid from "), "{text}");
        assert!(key.exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_certificate_near_expiry_is_renewed_with_the_same_key() {
        let dir = data_dir("renew");
        let tls_dir = dir.join("tls");
        std::fs::create_dir_all(&tls_dir).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(DEV_CERT_NAMES.map(str::to_owned).to_vec()).unwrap();
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::days(340);
        params.not_after = now + Duration::days(10);
        let old = params.self_signed(&key).unwrap();
        std::fs::write(tls_dir.join("cert.pem"), old.pem()).unwrap();
        std::fs::write(tls_dir.join("key.pem"), key.serialize_pem()).unwrap();
        let before = info(&tls_dir.join("cert.pem"));

        let tls = load(&CertSource::Generated {
            data_dir: dir.clone(),
        })
        .unwrap();
        assert!(tls.renewed && !tls.generated);
        let after = info(&tls.cert_path);
        assert_eq!(
            after.spki, before.spki,
            "the same key (an SPKI pin stays valid)"
        );
        assert_eq!(
            std::fs::read_to_string(tls_dir.join("key.pem")).unwrap(),
            key.serialize_pem(),
            "the key file is untouched"
        );
        assert!(
            after.validity.1 > before.validity.1 + Duration::days(300),
            "{after:?}"
        );
        assert!(near(after.validity.1, now + DEV_CERT_VALIDITY), "{after:?}");
        assert_eq!(after.common_name.as_deref(), Some(DEV_CERT_NAME));
        assert!(describe_trust(&tls).contains("renewed"));

        // The next start keeps the renewed certificate.
        let (_, _, made) = ensure_dev_cert(&dir).unwrap();
        assert_eq!(made, DevCert::Kept);
        let leftovers: Vec<_> = std::fs::read_dir(&tls_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers.len(), 2, "{leftovers:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
