//! A throwaway PostgreSQL cluster for the tests, started by the tests
//! themselves with Debian's `pg_virtualenv` (package `postgresql-common`;
//! `make deps` installs it), which works as root where plain `initdb`
//! refuses to run.
//!
//! One cluster per test binary, started on first use; each caller gets a
//! database of its own in it ([`database`]). `pg_virtualenv` runs a shell
//! that writes the connection settings to a file and then waits on its
//! standard input: when the test process exits, for any reason, the pipe
//! closes, the shell ends and `pg_virtualenv` drops the cluster. If the
//! cluster cannot be started the test fails, saying why: it never skips.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The running cluster: its `pg_virtualenv` process (kept so that its
/// standard input stays open) and how to reach it.
struct Cluster {
    _process: Mutex<Child>,
    /// `host=... port=... user=... password=...` as a URL prefix:
    /// `postgres://user:password@host:port`.
    base: String,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();
static TLS_CLUSTER: OnceLock<Cluster> = OnceLock::new();
static NEXT_DB: AtomicU32 = AtomicU32::new(0);

/// How long starting a cluster may take (a few seconds on an idle machine).
const START: Duration = Duration::from_secs(90);

/// A cluster that takes TLS connections with the test certificate for
/// `localhost` (`util::certs()`, signed by the test CA), for the tests of
/// TLS to the database.
fn start_tls() -> Cluster {
    let dir = tempfile::tempdir().expect("a temporary directory").keep();
    let (cert, key) = (dir.join("server.pem"), dir.join("server.key"));
    std::fs::copy(super::certs().join("server.pem"), &cert).expect("copying the certificate");
    std::fs::copy(super::certs().join("server.key"), &key).expect("copying the key");
    // PostgreSQL runs as `postgres` when started by root, and wants its key
    // readable by itself only.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    // SAFETY: geteuid(2) takes nothing and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        let status = Command::new("chown")
            .args(["postgres:postgres"])
            .arg(&key)
            .arg(&cert)
            .status()
            .expect("chown");
        assert!(status.success(), "chown of the test key to postgres failed");
    }
    start_with(&[
        "-o",
        "ssl=on",
        "-o",
        &format!("ssl_cert_file={}", cert.display()),
        "-o",
        &format!("ssl_key_file={}", key.display()),
    ])
}

fn start() -> Cluster {
    start_with(&[])
}

fn start_with(options: &[&str]) -> Cluster {
    // Kept after the test (a few bytes): pg_virtualenv writes its log there
    // until it has dropped the cluster, after this process is gone.
    let dir = tempfile::tempdir().expect("a temporary directory").keep();
    let settings = dir.join("pg.env");
    let log_path = dir.join("pg_virtualenv.log");
    let log = std::fs::File::create(&log_path).expect("creating the pg_virtualenv log");
    let script = format!(
        "printf '%s %s %s %s\\n' \"$PGHOST\" \"$PGPORT\" \"$PGUSER\" \"$PGPASSWORD\" > {0}.tmp \
         && mv {0}.tmp {0} && cat > /dev/null",
        settings.display()
    );
    let mut child = Command::new("pg_virtualenv")
        // -t: the cluster's files in a temporary directory even as root,
        // so one binary's cluster being dropped as the next starts its own
        // cannot collide on the name 15/regress in /etc/postgresql.
        .arg("-t")
        .args(options)
        .args(["sh", "-c", &script])
        .stdin(Stdio::piped())
        .stdout(log.try_clone().expect("duplicating a file handle"))
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run pg_virtualenv ({e}): the PostgreSQL tests need Debian's \
                 postgresql and postgresql-common packages (`make deps` installs them)"
            )
        });
    let deadline = Instant::now() + START;
    loop {
        if let Ok(text) = std::fs::read_to_string(&settings) {
            let parts: Vec<&str> = text.split_whitespace().collect();
            let [host, port, user, password] = parts[..] else {
                panic!("pg_virtualenv gave unexpected settings: {text:?}");
            };
            return Cluster {
                _process: Mutex::new(child),
                base: format!("postgres://{user}:{password}@{host}:{port}"),
            };
        }
        if let Ok(Some(status)) = child.try_wait() {
            let err = std::fs::read_to_string(&log_path).unwrap_or_default();
            panic!("pg_virtualenv could not start a PostgreSQL cluster ({status}):\n{err}");
        }
        assert!(
            Instant::now() < deadline,
            "pg_virtualenv started no PostgreSQL cluster within {START:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A new, empty database in this test binary's cluster, as a URL for
/// `confab-server --db`.
pub fn database() -> String {
    new_database(CLUSTER.get_or_init(start))
}

/// A new, empty database in a cluster that takes TLS with the test
/// certificate for `localhost` (see [`start_tls`]); connect with
/// `?sslmode=require` and trust the test CA.
#[allow(dead_code)]
pub fn tls_database() -> String {
    new_database(TLS_CLUSTER.get_or_init(start_tls))
}

fn new_database(cluster: &Cluster) -> String {
    let name = format!(
        "confab_{}_{}",
        std::process::id(),
        NEXT_DB.fetch_add(1, Ordering::Relaxed)
    );
    let out = Command::new("psql")
        .args([
            &format!("{}/postgres", cluster.base),
            "-v",
            "ON_ERROR_STOP=1",
            "-q",
            "-c",
            &format!("CREATE DATABASE {name}"),
        ])
        .output()
        .expect("running psql");
    assert!(
        out.status.success(),
        "psql could not create a database: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    format!("{}/{name}", cluster.base)
}

/// Runs SQL with psql on a database made by [`database`]; returns what it
/// printed (unaligned, tuples only).
pub fn psql(url: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args([url, "-v", "ON_ERROR_STOP=1", "-At", "-c", sql])
        .output()
        .expect("running psql");
    assert!(
        out.status.success(),
        "psql failed on {sql:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim_end().to_owned()
}
