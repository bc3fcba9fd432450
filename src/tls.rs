//! TLS set-up for both ends; the rest of the code only sees a stream.
//!
//! native-tls on Linux is OpenSSL. The server loads a PEM certificate chain
//! and a PKCS#8 PEM key (`BEGIN PRIVATE KEY`, which `make certs` writes) and
//! accepts TLS 1.2 and up; the only plaintext listener is the IRC one that
//! binds loopback addresses only (`--irc-listen-plain`). The client trusts
//! either the system roots or one CA file (`--ca`, as `make client` does).

use crate::connection::Connection;
use native_tls::{Certificate, Identity, Protocol, TlsAcceptor, TlsConnector, TlsStream};
use sha2::{Digest, Sha256};
use std::net::TcpStream;
use std::path::{Path, PathBuf};

/// A framed connection as the server's sessions use it: over TLS on TCP,
/// or plain TCP for the loopback-only plaintext IRC listener.
pub type ServerConnection = Connection<ServerStream>;

/// A server connection's stream.
#[derive(Debug)]
pub enum ServerStream {
    /// TLS on TCP: every confab connection, and the IRC listener's.
    Tls(TlsStream<TcpStream>),
    /// Plain TCP: only from `--irc-listen-plain`, which binds loopback
    /// addresses only (tests, local bridges).
    Plain(TcpStream),
}

impl ServerStream {
    /// The TCP socket underneath (its descriptor, for `poll`).
    pub fn tcp(&self) -> &TcpStream {
        match self {
            ServerStream::Tls(s) => s.get_ref(),
            ServerStream::Plain(s) => s,
        }
    }

    /// Ends the stream: TLS close_notify, or a TCP shutdown.
    pub fn shutdown(&mut self) -> std::io::Result<()> {
        match self {
            ServerStream::Tls(s) => s.shutdown(),
            ServerStream::Plain(s) => s.shutdown(std::net::Shutdown::Both),
        }
    }
}

impl std::io::Read for ServerStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            ServerStream::Tls(s) => s.read(buf),
            ServerStream::Plain(s) => s.read(buf),
        }
    }
}

impl std::io::Write for ServerStream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            ServerStream::Tls(s) => s.write(buf),
            ServerStream::Plain(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            ServerStream::Tls(s) => s.flush(),
            ServerStream::Plain(s) => s.flush(),
        }
    }
}

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// A certificate or key file could not be read.
    #[error(
        "cannot read {path}: {err} (run `make certs` to create a local CA and server certificate)"
    )]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        err: std::io::Error,
    },
    /// The files were read but OpenSSL rejected them.
    #[error("invalid TLS material in {path}: {err}")]
    Invalid {
        /// The file (or key) at fault.
        path: PathBuf,
        /// OpenSSL's complaint.
        err: native_tls::Error,
    },
    /// Building the acceptor or connector failed.
    #[error("TLS set-up failed: {0}")]
    Build(native_tls::Error),
}

fn read(path: &Path) -> Result<Vec<u8>, TlsSetupError> {
    std::fs::read(path).map_err(|err| TlsSetupError::Read {
        path: path.to_owned(),
        err,
    })
}

/// The server's TLS acceptor from a PEM certificate (chain) and a PKCS#8
/// PEM private key.
pub fn server_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsSetupError> {
    let cert_pem = read(cert)?;
    let key_pem = read(key)?;
    let identity =
        Identity::from_pkcs8(&cert_pem, &key_pem).map_err(|err| TlsSetupError::Invalid {
            path: key.to_owned(),
            err,
        })?;
    TlsAcceptor::builder(identity)
        .min_protocol_version(Some(Protocol::Tlsv12))
        .build()
        .map_err(TlsSetupError::Build)
}

/// Which certificates a client trusts.
#[derive(Debug, Clone)]
pub enum Trust {
    /// The operating system's root CAs.
    SystemRoots,
    /// Only the CA in this PEM file.
    CaFile(PathBuf),
}

/// A client connector for `trust`.
pub fn client_connector(trust: &Trust) -> Result<TlsConnector, TlsSetupError> {
    let mut builder = TlsConnector::builder();
    builder.min_protocol_version(Some(Protocol::Tlsv12));
    if let Trust::CaFile(path) = trust {
        let pem = read(path)?;
        let ca = Certificate::from_pem(&pem).map_err(|err| TlsSetupError::Invalid {
            path: path.clone(),
            err,
        })?;
        builder.add_root_certificate(ca);
        builder.disable_built_in_roots(true);
    }
    builder.build().map_err(TlsSetupError::Build)
}

/// A connector that accepts any certificate and name, for trust on first
/// use: the caller **must** compare the server's fingerprint with the one
/// remembered in `known_hosts` before sending anything secret.
pub fn tofu_connector() -> Result<TlsConnector, TlsSetupError> {
    TlsConnector::builder()
        .min_protocol_version(Some(Protocol::Tlsv12))
        .danger_accept_invalid_certs(true)
        .danger_accept_invalid_hostnames(true)
        .build()
        .map_err(TlsSetupError::Build)
}

/// SHA-256 fingerprint of a DER certificate, as `AA:BB:...` (what ssh and
/// browsers show, and what trust-on-first-use will remember).
pub fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}
