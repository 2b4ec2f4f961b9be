//! Certificates made for a test: a CA ([`TestCa`]) that issues leaves ([`Issued`]) with chosen
//! lifetimes and client identities, and [`TestCert`], a CA plus leaf written as PEM files with
//! the matching rustls client and server configs.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;

/// A certificate authority made for a test.
pub struct TestCa {
    key: rcgen::KeyPair,
    cert: rcgen::Certificate,
}

/// A leaf certificate's PEM texts and DER forms.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
    pub chain: Vec<CertificateDer<'static>>,
    pub key_der: Vec<u8>,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        TestCa { key, cert }
    }

    pub fn der(&self) -> CertificateDer<'static> {
        self.cert.der().clone()
    }

    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A leaf for `names` with this serial, valid from a day ago until `days_left` days from now.
    pub fn issue(&self, names: &[&str], serial: u64, days_left: i64) -> Issued {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.serial_number = Some(rcgen::SerialNumber::from(serial));
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(2).max(time::Duration::days(-days_left + 1));
        params.not_after = now + time::Duration::days(days_left) + time::Duration::hours(1);
        if days_left < 0 {
            params.not_after = now + time::Duration::days(days_left);
        }
        let leaf = params.signed_by(&key, &self.cert, &self.key).unwrap();
        Issued {
            cert_pem: format!("{}{}", leaf.pem(), self.cert.pem()),
            key_pem: key.serialize_pem(),
            chain: vec![leaf.der().clone(), self.cert.der().clone()],
            key_der: key.serialize_der(),
        }
    }

    /// A leaf whose whole lifetime is `lifetime_days`, with `days_left` of it remaining (a 90-day
    /// Let's Encrypt certificate with 10 days left, a fresh 6-day one).
    pub fn issue_lifetime(
        &self,
        names: &[&str],
        serial: u64,
        lifetime_days: i64,
        days_left: i64,
    ) -> Issued {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.serial_number = Some(rcgen::SerialNumber::from(serial));
        let now = time::OffsetDateTime::now_utc();
        params.not_after = now + time::Duration::days(days_left) + time::Duration::minutes(30);
        params.not_before = params.not_after - time::Duration::days(lifetime_days);
        let leaf = params.signed_by(&key, &self.cert, &self.key).unwrap();
        Issued {
            cert_pem: format!("{}{}", leaf.pem(), self.cert.pem()),
            key_pem: key.serialize_pem(),
            chain: vec![leaf.der().clone(), self.cert.der().clone()],
            key_der: key.serialize_der(),
        }
    }

    /// A client certificate (for mutual TLS) signed by this CA.
    pub fn client_identity(
        &self,
        serial: u64,
    ) -> (
        Vec<CertificateDer<'static>>,
        rustls::pki_types::PrivateKeyDer<'static>,
    ) {
        let issued = self.issue(&["client.example"], serial, 30);
        (
            issued.chain,
            rustls::pki_types::PrivateKeyDer::try_from(issued.key_der).unwrap(),
        )
    }
}

/// A CA and a leaf certificate made for the test, written as PEM files.
pub struct TestCert {
    pub dir: tempfile::TempDir,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    pub ca_der: CertificateDer<'static>,
    pub ca_pem: String,
    pub chain: Vec<CertificateDer<'static>>,
    pub key_der: Vec<u8>,
}

impl TestCert {
    pub fn new(names: &[&str]) -> TestCert {
        let ca = TestCa::new("origin-gate test CA");
        let issued = ca.issue(names, 1, 90);
        let dir = tempfile::tempdir().unwrap();
        let cert_path = dir.path().join("fullchain.pem");
        let key_path = dir.path().join("privkey.pem");
        std::fs::write(&cert_path, &issued.cert_pem).unwrap();
        std::fs::write(&key_path, &issued.key_pem).unwrap();
        TestCert {
            dir,
            cert_path,
            key_path,
            ca_der: ca.der(),
            ca_pem: ca.pem(),
            chain: issued.chain,
            key_der: issued.key_der,
        }
    }

    /// `[[tls.certs]]` TOML for this certificate.
    pub fn toml(&self) -> String {
        format!(
            "[[tls.certs]]\ncert = {:?}\nkey = {:?}\n",
            self.cert_path, self.key_path
        )
    }

    /// A client that trusts only this test CA.
    pub fn client(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der.clone()).unwrap();
        let mut cfg =
            rustls::ClientConfig::builder_with_provider(origin_gate::serve::tls::provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(cfg)
    }

    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let key = rustls::pki_types::PrivateKeyDer::try_from(self.key_der.clone()).unwrap();
        Arc::new(
            rustls::ServerConfig::builder_with_provider(origin_gate::serve::tls::provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(self.chain.clone(), key)
                .unwrap(),
        )
    }
}
