//! TLS for PostgreSQL connections with rustls, per libpq's `sslmode`.

use std::fmt;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres::Socket;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::PgError;

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    /// Never TLS.
    Disable,
    /// Plain first; TLS if the server refuses the plain connection.
    Allow,
    /// TLS if the server offers it, else plain (libpq's default).
    #[default]
    Prefer,
    /// TLS or fail; the certificate is not checked (unless a root
    /// certificate is configured or `~/.postgresql/root.crt` exists, when
    /// it acts as `verify-ca`, like libpq).
    Require,
    /// TLS, and the server's certificate chain must lead to `sslrootcert`.
    VerifyCa,
    /// As `verify-ca`, and the certificate must name the host connected to.
    VerifyFull,
}

impl SslMode {
    /// The libpq spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// Whether the server's certificate must be verified.
    pub fn verifies(self) -> bool {
        matches!(self, SslMode::VerifyCa | SslMode::VerifyFull)
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SslMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(format!(
                    "invalid sslmode {other:?}: use disable, allow, prefer, require, \
                     verify-ca or verify-full"
                ));
            }
        })
    }
}

/// Where trusted root certificates come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Roots {
    /// Nothing to check against: certificates are accepted unchecked.
    None,
    /// A PEM file of CA certificates.
    File(PathBuf),
    /// The operating system's store (`sslrootcert=system`).
    System,
}

/// Everything needed to build the rustls client configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TlsSettings {
    pub roots: Roots,
    /// Whether the certificate must name the host (verify-full).
    pub check_name: bool,
    /// Client certificate chain and key files, when both are there.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

/// How the TLS handshake of one connection attempt went.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum Handshake {
    /// No handshake was started (plain connection, or the server said no).
    #[default]
    None,
    Established,
    Failed {
        reason: String,
        problem: CertProblem,
    },
}

/// A `MakeTlsConnect` over tokio-postgres-rustls that records how the
/// handshake went, so errors can say so and callers know whether the
/// connection is encrypted.
#[derive(Clone)]
pub(crate) struct PgTls {
    inner: MakeRustlsConnect,
    handshake: Arc<Mutex<Handshake>>,
}

impl PgTls {
    pub fn new(config: Arc<ClientConfig>) -> PgTls {
        PgTls {
            inner: MakeRustlsConnect::new((*config).clone()),
            handshake: Arc::default(),
        }
    }

    /// A copy sharing the configuration, with its own handshake record.
    pub fn fresh(&self) -> PgTls {
        PgTls {
            inner: self.inner.clone(),
            handshake: Arc::default(),
        }
    }

    pub fn handshake(&self) -> Handshake {
        lock(&self.handshake).clone()
    }
}

fn lock(m: &Mutex<Handshake>) -> MutexGuard<'_, Handshake> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

type InnerConnect = <MakeRustlsConnect as MakeTlsConnect<Socket>>::TlsConnect;
pub(crate) type TlsStream = <MakeRustlsConnect as MakeTlsConnect<Socket>>::Stream;

impl MakeTlsConnect<Socket> for PgTls {
    type Stream = TlsStream;
    type TlsConnect = PgTlsConnect;
    type Error = io::Error;

    fn make_tls_connect(&mut self, hostname: &str) -> Result<PgTlsConnect, io::Error> {
        let inner = match MakeTlsConnect::<Socket>::make_tls_connect(&mut self.inner, hostname) {
            Ok(inner) => inner,
            Err(never) => match never {},
        };
        Ok(PgTlsConnect {
            inner,
            handshake: Arc::clone(&self.handshake),
        })
    }
}

pub(crate) struct PgTlsConnect {
    inner: InnerConnect,
    handshake: Arc<Mutex<Handshake>>,
}

impl TlsConnect<Socket> for PgTlsConnect {
    type Stream = TlsStream;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<TlsStream, io::Error>> + Send>>;

    fn connect(self, stream: Socket) -> Self::Future {
        let PgTlsConnect { inner, handshake } = self;
        Box::pin(async move {
            let result = inner.connect(stream).await;
            *lock(&handshake) = match &result {
                Ok(_) => Handshake::Established,
                Err(e) => Handshake::Failed {
                    reason: describe_io(e),
                    problem: cert_problem(e),
                },
            };
            result
        })
    }
}

/// An io error from tokio-rustls with its inner rustls error spelled out.
fn describe_io(e: &io::Error) -> String {
    match e.get_ref() {
        Some(inner) => inner.to_string(),
        None => e.to_string(),
    }
}

/// Why a certificate was rejected, as far as advice goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CertProblem {
    WrongName,
    UntrustedIssuer,
    CaAsServerCert,
    OutOfValidity,
    Other,
}

fn cert_problem(e: &io::Error) -> CertProblem {
    let Some(rustls::Error::InvalidCertificate(cert)) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    else {
        return CertProblem::Other;
    };
    match cert {
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            CertProblem::WrongName
        }
        CertificateError::UnknownIssuer | CertificateError::BadSignature => {
            CertProblem::UntrustedIssuer
        }
        CertificateError::Expired
        | CertificateError::ExpiredContext { .. }
        | CertificateError::NotValidYet
        | CertificateError::NotValidYetContext { .. } => CertProblem::OutOfValidity,
        CertificateError::Other(other) if format!("{other:?}").contains("CaUsedAsEndEntity") => {
            CertProblem::CaAsServerCert
        }
        _ => CertProblem::Other,
    }
}

/// Builds the rustls client configuration for `settings`.
pub(crate) fn client_config(settings: &TlsSettings) -> Result<Arc<ClientConfig>, PgError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| PgError::Config(format!("cannot set up TLS: {e}")))?;
    let builder = match &settings.roots {
        Roots::None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCert { provider })),
        roots => {
            let store = match roots {
                Roots::File(path) => load_roots(path)?,
                _ => system_roots()?,
            };
            let verifier =
                WebPkiServerVerifier::builder_with_provider(Arc::new(store), Arc::clone(&provider))
                    .build()
                    .map_err(|e| PgError::Config(format!("cannot set up TLS verification: {e}")))?;
            if settings.check_name {
                builder.with_webpki_verifier(verifier)
            } else {
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(ChainOnly { inner: verifier }))
            }
        }
    };
    let mut config = match &settings.client_cert {
        Some((cert_path, key_path)) => {
            let (chain, key) = load_client_cert(cert_path, key_path)?;
            builder.with_client_auth_cert(chain, key).map_err(|e| {
                PgError::Config(format!(
                    "client certificate {} does not fit key {}: {e} — check sslcert and sslkey \
                     (PGSSLCERT, PGSSLKEY)",
                    cert_path.display(),
                    key_path.display(),
                ))
            })?
        }
        None => builder.with_no_client_auth(),
    };
    // PostgreSQL 17's direct TLS negotiation requires this ALPN protocol;
    // older servers ignore it.
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok(Arc::new(config))
}

fn load_roots(path: &Path) -> Result<RootCertStore, PgError> {
    let advice = "set sslrootcert (or PGSSLROOTCERT) to the PEM file of the CA that signed the \
                  server's certificate, or use sslmode=require to skip verification";
    let iter = CertificateDer::pem_file_iter(path).map_err(|e| {
        PgError::Config(format!(
            "cannot read root certificate file {}: {} — {advice}",
            path.display(),
            pem_error(&e)
        ))
    })?;
    let mut certs = Vec::new();
    for cert in iter {
        certs.push(cert.map_err(|e| {
            PgError::Config(format!(
                "root certificate file {} is not valid PEM: {} — {advice}",
                path.display(),
                pem_error(&e)
            ))
        })?);
    }
    let mut store = RootCertStore::empty();
    let (added, _ignored) = store.add_parsable_certificates(certs);
    if added == 0 {
        return Err(PgError::Config(format!(
            "root certificate file {} holds no usable certificate — {advice}",
            path.display()
        )));
    }
    Ok(store)
}

fn system_roots() -> Result<RootCertStore, PgError> {
    let found = rustls_native_certs::load_native_certs();
    let mut store = RootCertStore::empty();
    let (added, _ignored) = store.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = found
            .errors
            .first()
            .map(|e| format!(": {e}"))
            .unwrap_or_default();
        return Err(PgError::Config(format!(
            "sslrootcert=system, but no trusted certificates were found in the system's \
             store{why} — install ca-certificates or name a CA file in sslrootcert"
        )));
    }
    Ok(store)
}

type ClientAuth = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

fn load_client_cert(cert: &Path, key: &Path) -> Result<ClientAuth, PgError> {
    let advice = "check sslcert and sslkey (PGSSLCERT, PGSSLKEY)";
    let read_err = |path: &Path, e: &rustls::pki_types::pem::Error| {
        PgError::Config(format!(
            "cannot read {}: {} — {advice}",
            path.display(),
            pem_error(e)
        ))
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| read_err(cert, &e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| read_err(cert, &e))?;
    if chain.is_empty() {
        return Err(PgError::Config(format!(
            "client certificate file {} holds no certificate — {advice}",
            cert.display()
        )));
    }
    check_key_permissions(key)?;
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| read_err(key, &e))?;
    Ok((chain, key_der))
}

/// libpq refuses a private key that others can read.
fn check_key_permissions(key: &Path) -> Result<(), PgError> {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(key) else {
        return Ok(()); // reading it reports the problem
    };
    let mode = meta.mode();
    let ok = if meta.uid() == 0 {
        mode & 0o037 == 0
    } else {
        mode & 0o077 == 0
    };
    if ok {
        Ok(())
    } else {
        Err(PgError::Config(format!(
            "private key file {} has group or world access; permissions should be u=rw (0600) \
             or less: chmod 0600 {}",
            key.display(),
            key.display()
        )))
    }
}

fn pem_error(e: &rustls::pki_types::pem::Error) -> String {
    match e {
        rustls::pki_types::pem::Error::Io(io) => io.to_string(),
        rustls::pki_types::pem::Error::NoItemsFound => "no PEM section found".to_string(),
        other => format!("{other:?}"),
    }
}

/// `require` without a root certificate: any certificate is accepted (the
/// handshake signature is still checked against the presented key).
#[derive(Debug)]
struct AcceptAnyCert {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
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
        verify_tls13_signature(
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

/// `verify-ca`: the chain must lead to a trusted root; the host name is
/// not checked.
#[derive(Debug)]
struct ChainOnly {
    inner: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // webpki checks the chain before the name, so a name error means
        // the chain was good.
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Advice for a failed handshake.
pub(crate) fn handshake_advice(problem: CertProblem, mode: SslMode) -> &'static str {
    match problem {
        CertProblem::WrongName => {
            "the server's certificate does not name this host: connect with a host name the \
             certificate was issued for, or use sslmode=verify-ca to check only the chain"
        }
        CertProblem::UntrustedIssuer => {
            "the server's certificate was not signed by a CA in sslrootcert: point sslrootcert \
             (PGSSLROOTCERT) at the CA that signed it"
        }
        CertProblem::CaAsServerCert => {
            "the server presents a CA certificate as its own; pgpilot needs a server certificate \
             signed by a CA, with that CA in sslrootcert"
        }
        CertProblem::OutOfValidity => {
            "the server's certificate is outside its validity period: renew it, or check this \
             machine's clock"
        }
        CertProblem::Other if mode.verifies() => {
            "check sslrootcert (PGSSLROOTCERT) and the server's certificate, or use \
             sslmode=require to skip verification"
        }
        CertProblem::Other => "check the server's ssl settings, or use sslmode=disable",
    }
}
