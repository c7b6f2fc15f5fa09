//! HTTPS and WSS on the API listener (`--tls-cert`, `--tls-key`), and TLS for the embedded TURN
//! listener's `turns:` port: rustls with the aws-lc-rs provider (already built for str0m's
//! DTLS), PEM files as certbot and most CAs write them.
//!
//! The certificate is read again on SIGHUP ([`ReloadableCertificate::reload`]): handshakes from
//! then on get the new one, connections already open keep theirs, and a pair that does not load
//! leaves the old one in force (a renewal that went wrong must not take the service down).

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use anyhow::Context;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;

/// A certificate and key read from PEM files, replaceable while the server runs.
#[derive(Debug)]
pub struct ReloadableCertificate {
    cert_path: PathBuf,
    key_path: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
}

impl ReloadableCertificate {
    /// Reads the pair; fails with a message naming the file that is wrong.
    pub fn load(cert_path: &Path, key_path: &Path) -> anyhow::Result<Arc<ReloadableCertificate>> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let current = read_pair(cert_path, key_path, &provider)?;
        Ok(Arc::new(ReloadableCertificate {
            cert_path: cert_path.to_path_buf(),
            key_path: key_path.to_path_buf(),
            provider,
            current: RwLock::new(Arc::new(current)),
        }))
    }

    /// Reads the files again. On failure the certificate in force stays.
    pub fn reload(&self) -> anyhow::Result<()> {
        let fresh = read_pair(&self.cert_path, &self.key_path, &self.provider)?;
        let mut current = match self.current.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        *current = Arc::new(fresh);
        Ok(())
    }

    /// A TLS acceptor that serves whatever certificate is in force at each handshake, offering
    /// `alpn` (e.g. `http/1.1`; none for TURN).
    pub fn acceptor(self: &Arc<Self>, alpn: &[&[u8]]) -> anyhow::Result<TlsAcceptor> {
        let mut config = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}

impl ResolvesServerCert for ReloadableCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let current = match self.current.read() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        Some(current.clone())
    }
}

fn read_pair(
    cert_path: &Path,
    key_path: &Path,
    provider: &CryptoProvider,
) -> anyhow::Result<CertifiedKey> {
    let chain = CertificateDer::pem_file_iter(cert_path)
        .with_context(|| format!("reading the TLS certificate {}", cert_path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing the TLS certificate {}", cert_path.display()))?;
    anyhow::ensure!(
        !chain.is_empty(),
        "{} holds no PEM certificate",
        cert_path.display()
    );
    let key = PrivateKeyDer::from_pem_file(key_path)
        .with_context(|| format!("reading the TLS private key {}", key_path.display()))?;
    CertifiedKey::from_der(chain, key, provider).with_context(|| {
        format!(
            "the key {} does not match the certificate {}",
            key_path.display(),
            cert_path.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let generated =
            rcgen::generate_simple_self_signed(vec![name.to_string()]).expect("a certificate");
        let cert = dir.join(format!("{name}.crt"));
        let key = dir.join(format!("{name}.key"));
        std::fs::write(&cert, generated.cert.pem()).expect("cert written");
        std::fs::write(&key, generated.signing_key.serialize_pem()).expect("key written");
        (cert, key)
    }

    fn served(certificate: &ReloadableCertificate) -> Vec<u8> {
        let current = certificate.current.read().expect("lock");
        current.cert[0].to_vec()
    }

    #[test]
    fn a_reload_takes_the_new_pair_and_a_broken_one_keeps_the_old() {
        let dir = tempfile::tempdir().expect("dir");
        let (cert, key) = write_pair(dir.path(), "localhost");
        let certificate = ReloadableCertificate::load(&cert, &key).expect("loads");
        let first = served(&certificate);

        let (renewed_cert, renewed_key) = write_pair(dir.path(), "renewed.example");
        std::fs::copy(&renewed_cert, &cert).expect("copied");
        std::fs::copy(&renewed_key, &key).expect("copied");
        certificate.reload().expect("reloads");
        let second = served(&certificate);
        assert_ne!(first, second, "the renewed certificate is served");

        std::fs::write(
            &key,
            "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n",
        )
        .expect("broken key");
        let error = certificate.reload().expect_err("a broken key is refused");
        assert!(
            format!("{error:#}").contains(&key.display().to_string()),
            "{error:#}"
        );
        assert_eq!(served(&certificate), second, "the old pair stays in force");
    }

    #[test]
    fn a_key_of_another_certificate_is_refused_by_name() {
        let dir = tempfile::tempdir().expect("dir");
        let (cert, _) = write_pair(dir.path(), "a.example");
        let (_, other_key) = write_pair(dir.path(), "b.example");
        let error = ReloadableCertificate::load(&cert, &other_key).expect_err("mismatch");
        assert!(format!("{error:#}").contains("does not match"), "{error:#}");
        let missing = ReloadableCertificate::load(&dir.path().join("nope.crt"), &other_key)
            .expect_err("missing");
        assert!(format!("{missing:#}").contains("nope.crt"), "{missing:#}");
    }
}
