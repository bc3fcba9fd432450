//! TLS between confab and PostgreSQL: with `sslmode=require` the server
//! connects with TLS and verifies the database's certificate (here against
//! the test CA, named with `SSL_CERT_FILE` as an operator with a private CA
//! would); a certificate it cannot verify is refused with an error that
//! says so. The cluster is started by the test with TLS on
//! (`util::pg::tls_database`).

mod util;

use util::{TestServer, WAIT};

/// The cluster's URL with `sslmode=require`, `localhost` as the host the
/// certificate names.
fn tls_url() -> String {
    let url = util::pg::tls_database();
    // pg_virtualenv may report 127.0.0.1 or a socket directory: the
    // certificate is for localhost.
    let (head, rest) = url.split_once('@').expect("user@host in the URL");
    let (_, port_db) = rest.split_once(':').expect("host:port in the URL");
    format!("{head}@localhost:{port_db}?sslmode=require")
}

#[test]
fn the_server_talks_tls_to_postgresql_and_verifies_its_certificate() {
    let url = tls_url();
    let ca = util::certs().join("ca.pem");
    let server =
        TestServer::start_with_env(&["--db", &url], &[("SSL_CERT_FILE", ca.to_str().unwrap())]);
    let mut alice = server.user("alice");
    let mut bob = server.user("bob");
    let (id, _) = alice.say("general", "over TLS to the database").unwrap();
    let m = bob.next_message(WAIT).unwrap().expect("alice's line");
    assert_eq!(m.id, id);
    // PostgreSQL's own view: every confab connection is encrypted.
    let plain = url.replace("?sslmode=require", "");
    let unencrypted = util::pg::psql(
        &plain,
        "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
         WHERE a.application_name LIKE 'confab%' AND NOT s.ssl",
    );
    let encrypted = util::pg::psql(
        &plain,
        "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
         WHERE a.application_name LIKE 'confab%' AND s.ssl",
    );
    assert_eq!(unencrypted, "0");
    assert_ne!(encrypted, "0");
}

#[test]
fn a_database_certificate_that_cannot_be_verified_is_refused() {
    let url = tls_url();
    // Trusting only a file without the test CA in it.
    let empty = tempfile::NamedTempFile::new().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_confab-server"))
        .args(["--db", &url, "admin", "grant", "nobody"])
        .env("SSL_CERT_FILE", empty.path())
        .env("SSL_CERT_DIR", "/nonexistent")
        .output()
        .expect("confab-server admin");
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success(),
        "connected without trusting the CA: {text}"
    );
    assert!(
        text.to_lowercase().contains("certificate"),
        "the error says why: {text}"
    );
    assert!(
        !text.contains(":x@") && !text.contains("password="),
        "{text}"
    );
}
