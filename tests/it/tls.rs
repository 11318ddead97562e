//! The HTTPS listener's certificate: generated once and reused, or the user's own files, and
//! clear errors for bad files.

use crate::common;

use common::{rtchat, temp_dir, Server};

fn logged_fingerprint(server: &Server) -> String {
    let log = server.wait_for_log("fingerprint=");
    let start = log.find("fingerprint=").unwrap() + 12;
    log[start..].split_whitespace().next().unwrap().to_owned()
}

#[tokio::test]
async fn the_generated_certificate_is_made_once_and_reused() {
    let dir = temp_dir("tls-reuse");
    let dir_arg = dir.to_str().unwrap();
    let mut first = Server::start(&["--data-dir", dir_arg]);
    let pem = first.cert_pem();
    let fingerprint = logged_fingerprint(&first);
    first.wait_for_log("generated the HTTPS certificate");
    first.terminate(std::time::Duration::from_secs(5)).unwrap();

    let second = Server::start(&["--data-dir", dir_arg]);
    assert_eq!(
        second.cert_pem(),
        pem,
        "the same certificate after a restart"
    );
    second.wait_for_log("using the HTTPS certificate");
    assert_eq!(logged_fingerprint(&second), fingerprint);
    let key = dir.join("tls/key.pem");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the private key is private");
    }

    // `rtchat cert` tells where it is, its fingerprint and how to trust it.
    let out = rtchat(&["cert", "--data-dir", dir_arg], &[])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains(dir.join("tls/cert.pem").to_str().unwrap()),
        "{text}"
    );
    assert!(text.contains(&fingerprint), "{text}");
    assert!(text.contains("curl --cacert"), "{text}");

    // The certificate is valid for localhost as well as 127.0.0.1.
    let cert = reqwest::Certificate::from_pem(&pem).unwrap();
    let port = second
        .tls_base
        .as_ref()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap();
    let c = reqwest::Client::builder()
        .add_root_certificate(cert)
        .resolve("localhost", format!("127.0.0.1:{port}").parse().unwrap())
        .build()
        .unwrap();
    let res = c
        .get(format!("https://localhost:{port}/poll"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

fn make_cert(dir: &std::path::Path, name: &str) -> (String, String) {
    let made =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    (
        cert.to_str().unwrap().to_owned(),
        key.to_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn supplied_certificate_and_key_are_used() {
    let dir = temp_dir("tls-own");
    let (cert, key) = make_cert(&dir, "mine");
    let server = Server::start(&["--tls-cert", &cert, "--tls-key", &key]);
    assert!(!server.data_dir.join("tls").exists(), "nothing generated");
    let pem = std::fs::read(&cert).unwrap();
    let c = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .build()
        .unwrap();
    let res = c.get(server.tls_url("/poll")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.version(), reqwest::Version::HTTP_2);
}

fn refuses(args: &[&str], needle: &str) {
    let data = temp_dir("tls-bad");
    let mut all = vec![
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--tls-listen",
        "127.0.0.1:0",
        "--data-dir",
        data.to_str().unwrap(),
    ];
    all.extend(args);
    let out = rtchat(&all, &[]).output().unwrap();
    assert!(!out.status.success(), "{args:?} should be refused");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(needle), "{args:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn bad_certificate_files_are_refused_with_a_clear_message() {
    let dir = temp_dir("tls-files");
    let (cert, key) = make_cert(&dir, "a");
    let (_, other_key) = make_cert(&dir, "b");
    let garbage = dir.join("garbage.pem");
    std::fs::write(&garbage, "not a certificate").unwrap();
    let garbage = garbage.to_str().unwrap();
    let missing = dir.join("missing.pem");
    let missing = missing.to_str().unwrap();

    refuses(
        &["--tls-cert", missing, "--tls-key", &key],
        "cannot read certificate",
    );
    refuses(
        &["--tls-cert", &cert, "--tls-key", missing],
        "cannot read private key",
    );
    refuses(
        &["--tls-cert", garbage, "--tls-key", &key],
        "holds no PEM certificate",
    );
    refuses(
        &["--tls-cert", &cert, "--tls-key", garbage],
        "holds no PEM private key",
    );
    refuses(
        &["--tls-cert", &cert, "--tls-key", &other_key],
        "does not belong to the certificate",
    );
    refuses(&["--tls-cert", &cert], "--tls-key");
}

#[test]
fn an_unwritable_data_dir_is_a_clear_error() {
    let dir = temp_dir("tls-ro");
    let file = dir.join("a-file");
    std::fs::write(&file, "").unwrap();
    // A data dir below a regular file can never be created, whoever runs the test.
    let data = file.join("data");
    let out = rtchat(
        &[
            "serve",
            "--store",
            "memory",
            "--listen",
            "127.0.0.1:0",
            "--tls-listen",
            "127.0.0.1:0",
            "--data-dir",
            data.to_str().unwrap(),
        ],
        &[],
    )
    .output()
    .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot write the development certificate"),
        "{stderr}"
    );
}

/// A generated certificate that expires within 30 days is renewed at start with the same key
/// (an SPKI pin stays valid), named and valid for a year; `rtchat cert` shows the validity.
#[test]
fn a_generated_certificate_near_expiry_is_renewed_with_the_same_key() {
    use rtchat_server::tls::{CertInfo, DEV_CERT_NAME};
    use rustls_pki_types::pem::PemObject;
    let parse = |pem: &[u8]| {
        CertInfo::parse(&rustls_pki_types::CertificateDer::from_pem_slice(pem).unwrap()).unwrap()
    };
    let dir = temp_dir("tls-renew");
    let dir_arg = dir.to_str().unwrap();
    std::fs::create_dir_all(dir.join("tls")).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params =
        rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
    params.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(360);
    params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(5);
    let old = params.self_signed(&key).unwrap();
    std::fs::write(dir.join("tls/cert.pem"), old.pem()).unwrap();
    std::fs::write(dir.join("tls/key.pem"), key.serialize_pem()).unwrap();
    let before = parse(old.pem().as_bytes());

    let server = Server::start(&["--data-dir", dir_arg]);
    server.wait_for_log("renewed");
    let after = parse(&server.cert_pem());
    assert_eq!(after.spki, before.spki, "the same key");
    assert_eq!(after.common_name.as_deref(), Some(DEV_CERT_NAME));
    assert!(
        after.validity.1 > before.validity.1 + time::Duration::days(300),
        "{after:?}"
    );
    assert!(after.validity.0 < time::OffsetDateTime::now_utc());

    let out = rtchat(&["cert", "--data-dir", dir_arg], &[])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("valid from "), "{text}");
}
