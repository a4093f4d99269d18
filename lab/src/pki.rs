//! The lab's PKI, made fresh for every control plane: one CA, the apiserver's serving certificate, the
//! admin's client certificate and the ServiceAccount token signing key. All keys are ECDSA P-256.
//!
//! Exposes [`Pki::generate`], which writes PEM files into a directory and returns their paths.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::LabError;

/// Names the apiserver's serving certificate answers to: loopback, the lab LAN's control-plane address and
/// the in-cluster names of the `kubernetes` Service.
const APISERVER_SANS: &[&str] =
    &["127.0.0.1", "localhost", "192.0.2.1", "kubernetes", "kubernetes.default", "kubernetes.default.svc"];

/// The admin client's identity: `system:masters` is bound to cluster-admin by RBAC's bootstrap policy.
pub const ADMIN_USER: &str = "purelb-lab-admin";
const ADMIN_GROUP: &str = "system:masters";

/// Paths of the PEM files of one lab's PKI.
#[derive(Debug, Clone)]
pub struct Pki {
    pub ca_cert: PathBuf,
    pub apiserver_cert: PathBuf,
    pub apiserver_key: PathBuf,
    pub admin_cert: PathBuf,
    pub admin_key: PathBuf,
    /// Private key that signs ServiceAccount tokens.
    pub service_account_key: PathBuf,
    /// Its public half, which verifies them.
    pub service_account_pub: PathBuf,
}

impl Pki {
    /// Generates a CA and the certificates and keys signed by it, writing them into `dir`.
    pub fn generate(dir: &Path) -> Result<Pki, LabError> {
        std::fs::create_dir_all(dir).map_err(|e| LabError::io(format!("creating {}", dir.display()), e))?;
        let pki = Pki {
            ca_cert: dir.join("ca.crt"),
            apiserver_cert: dir.join("apiserver.crt"),
            apiserver_key: dir.join("apiserver.key"),
            admin_cert: dir.join("admin.crt"),
            admin_key: dir.join("admin.key"),
            service_account_key: dir.join("service-account.key"),
            service_account_pub: dir.join("service-account.pub"),
        };

        let ca_key = key("CA key")?;
        let mut ca = CertificateParams::default();
        ca.distinguished_name.push(DnType::CommonName, "purelb-lab-ca");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let ca_cert = ca.self_signed(&ca_key).map_err(|e| pki_error("CA certificate", e))?;
        let issuer = Issuer::new(ca, ca_key);
        write(&pki.ca_cert, &ca_cert.pem())?;

        let apiserver_key = key("apiserver key")?;
        let sans: Vec<String> = APISERVER_SANS.iter().map(|s| (*s).to_owned()).collect();
        let mut apiserver = CertificateParams::new(sans).map_err(|e| pki_error("apiserver SANs", e))?;
        apiserver.distinguished_name.push(DnType::CommonName, "kube-apiserver");
        apiserver.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        apiserver.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let apiserver_cert = apiserver
            .signed_by(&apiserver_key, &issuer)
            .map_err(|e| pki_error("apiserver certificate", e))?;
        write(&pki.apiserver_cert, &apiserver_cert.pem())?;
        write(&pki.apiserver_key, &apiserver_key.serialize_pem())?;

        let admin_key = key("admin key")?;
        let mut admin = CertificateParams::default();
        admin.distinguished_name.push(DnType::CommonName, ADMIN_USER);
        admin.distinguished_name.push(DnType::OrganizationName, ADMIN_GROUP);
        admin.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        admin.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let admin_cert =
            admin.signed_by(&admin_key, &issuer).map_err(|e| pki_error("admin certificate", e))?;
        write(&pki.admin_cert, &admin_cert.pem())?;
        write(&pki.admin_key, &admin_key.serialize_pem())?;

        let sa_key = key("ServiceAccount signing key")?;
        write(&pki.service_account_key, &sa_key.serialize_pem())?;
        write(&pki.service_account_pub, &sa_key.public_key_pem())?;
        Ok(pki)
    }
}

fn key(what: &str) -> Result<KeyPair, LabError> {
    KeyPair::generate().map_err(|e| pki_error(what, e))
}

fn pki_error(what: &str, source: rcgen::Error) -> LabError {
    LabError::Pki { what: what.to_owned(), source }
}

fn write(path: &Path, pem: &str) -> Result<(), LabError> {
    std::fs::write(path, pem).map_err(|e| LabError::io(format!("writing {}", path.display()), e))
}
