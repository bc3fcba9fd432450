//! Helpers shared by the integration tests: a real `confab-server` process
//! on 127.0.0.1 port 0 with a temporary database and certificates made by
//! the same script `make certs` uses, and clients that talk TLS to it.

#![allow(dead_code)]

pub mod irc;
pub mod pg;
pub mod tmux;

use confab::client::{Client, ClientError};
use confab::protocol::{ErrorCode, ServerMsg};
use confab::tls::{Trust, client_connector};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::Duration;

/// How long any single wait in a test may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(10);
/// PBKDF2 iterations for test servers: real hashing, test-suite speed.
pub const TEST_ITERATIONS: &str = "1000";

/// A room's whole history as ids, oldest first, read back in pages of
/// `page` from the newest.
pub fn history_ids(c: &mut Client, room: &str, page: u32) -> Vec<i64> {
    let mut all = Vec::new();
    let mut before = None;
    loop {
        let (messages, more) = c.room_history(room, before, page).unwrap();
        before = messages.first().map(|m| m.id);
        let mut ids: Vec<i64> = messages.iter().map(|m| m.id).collect();
        ids.extend(all);
        all = ids;
        if !more {
            return all;
        }
    }
}

/// Runs `confab-server` with the test certificates and `args`, expects it
/// to refuse to start, and returns what it said on stderr.
pub fn start_refused(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_confab-server"))
        .args(args)
        .arg("--cert")
        .arg(certs().join("server.pem"))
        .arg("--key")
        .arg(certs().join("server.key"))
        .output()
        .expect("run confab-server");
    assert!(!out.status.success(), "the server started with {args:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The next event from `c` that `want` accepts, skipping others; panics
/// (saying `what` and what was seen) if none comes within [`WAIT`].
pub fn wait_event(c: &mut Client, what: &str, want: impl Fn(&ServerMsg) -> bool) -> ServerMsg {
    let deadline = std::time::Instant::now() + WAIT;
    let mut seen = Vec::new();
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match c.next_event(left).unwrap() {
            Some(ev) if want(&ev) => return ev,
            Some(ev) => seen.push(format!("{ev:?}")),
            None => break,
        }
    }
    panic!("no {what} within {WAIT:?}; saw {seen:#?}")
}

/// Waits until `done()` holds, polling every 20 ms; fails the test after
/// [`WAIT`], saying what was awaited (`what()` is asked then, so it can
/// show the last state seen).
pub fn eventually(what: impl Fn() -> String, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + WAIT;
    while !done() {
        assert!(std::time::Instant::now() < deadline, "never: {}", what());
        std::thread::sleep(Duration::from_millis(20));
    }
}
/// A password that passes the rules.
pub const PW: &str = "correct horse battery";

/// The error code a request failed with (a server `error`, or the reason
/// of a `closing`); fails the test if it did not fail that way.
pub fn code<T: std::fmt::Debug>(r: Result<T, ClientError>) -> ErrorCode {
    match r {
        Err(ClientError::Server { code, .. }) => code,
        Err(ClientError::Closed {
            reason: Some((code, _)),
        }) => code,
        other => panic!("expected a server error, got {other:?}"),
    }
}

/// Reads until the server says it is closing the connection; checks the
/// code and returns the message. Fails the test after WAIT.
pub fn expect_closing(c: &mut Client, code: ErrorCode) -> String {
    loop {
        match c.recv_frame(std::time::Instant::now() + WAIT) {
            Ok(f) => {
                if let ServerMsg::Closing { code: got, message } = f.msg {
                    assert_eq!(got, code, "{message}");
                    return message;
                }
            }
            Err(ClientError::Closed {
                reason: Some((got, message)),
            }) => {
                assert_eq!(got, code, "{message}");
                return message;
            }
            Err(e) => panic!("expected closing {code}, got {e}"),
        }
    }
}

/// A valid 1x1 PNG.
pub const PNG: &[u8] = &[
    0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 0x0D, 0x49, 0x48, 0x44, 0x52, 0, 0, 0,
    1, 0, 0, 0, 1, 8, 6, 0, 0, 0, 0x1F, 0x15, 0xC4, 0x89, 0, 0, 0, 0x0A, 0x49, 0x44, 0x41, 0x54,
    0x78, 0x9C, 0x63, 0, 1, 0, 0, 5, 0, 1, 0x0D, 0x0A, 0x2D, 0xB4, 0, 0, 0, 0, 0x49, 0x45, 0x4E,
    0x44, 0xAE, 0x42, 0x60, 0x82,
];

/// Runs one SQL statement with the sqlite3 tool (what an admin would use)
/// and returns its output, trimmed.
pub fn sqlite(db: &Path, sql: &str) -> String {
    let out = Command::new("sqlite3")
        .arg(db)
        .arg(sql)
        .output()
        .expect("sqlite3 is installed by make deps");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Certificates made once per test binary with `certs/gen-certs.sh`.
pub fn certs() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("confab-certs-")
            .tempdir()
            .expect("temp dir")
            .keep();
        make_certs(&dir);
        dir
    })
}

/// Runs the repository's certificate script into `dir`.
pub fn make_certs(dir: &Path) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("certs/gen-certs.sh");
    let status = Command::new("sh")
        .arg(script)
        .arg(dir)
        .stdout(Stdio::null())
        .status()
        .expect("run gen-certs.sh");
    assert!(status.success(), "gen-certs.sh failed");
}

/// A running server process and its files.
pub struct TestServer {
    child: Option<Child>,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// The IRC listener's `127.0.0.1:PORT`, when started with
    /// `--irc-listen`.
    pub irc_addr: String,
    /// The plaintext IRC listener's address, with `--irc-listen-plain`.
    pub irc_plain_addr: String,
    /// Holds the database and the log; removed on drop.
    pub dir: tempfile::TempDir,
    extra: Vec<String>,
    /// Environment variables for the server.
    env: Vec<(String, String)>,
}

impl TestServer {
    /// Starts a server on a fresh database.
    pub fn start() -> TestServer {
        TestServer::start_with(&[])
    }

    /// Starts a server with extra command-line flags.
    pub fn start_with(extra: &[&str]) -> TestServer {
        TestServer::start_with_env(extra, &[])
    }

    /// Starts a server with extra flags and environment variables.
    pub fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> TestServer {
        let dir = tempfile::Builder::new()
            .prefix("confab-test-")
            .tempdir()
            .expect("temp dir");
        let mut server = TestServer {
            child: None,
            addr: String::new(),
            irc_addr: String::new(),
            irc_plain_addr: String::new(),
            dir,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        server.spawn();
        server
    }

    /// The database file (unless the test gave `--db` itself).
    pub fn db(&self) -> PathBuf {
        self.dir.path().join("confab.db")
    }

    /// Most tests open many connections from 127.0.0.1 and send quickly;
    /// they run with the per-IP limit and flood control relaxed unless they
    /// set those flags themselves (the capacity tests do).
    fn relaxed_limits(&self) -> Vec<&'static str> {
        let relaxed = [
            ("--password-iterations", TEST_ITERATIONS),
            ("--max-per-ip", "0"),
            ("--flood-burst", "1000000"),
            ("--flood-rate", "1000000"),
        ];
        relaxed
            .iter()
            .filter(|(flag, _)| !self.extra.iter().any(|e| e == flag))
            .flat_map(|(flag, value)| [*flag, *value])
            .collect()
    }

    /// The extra flags, with the IRC port of the first start on a restart.
    fn extra_args(&self) -> Vec<String> {
        let mut args = self.extra.clone();
        for (flag, addr) in [
            ("--irc-listen", &self.irc_addr),
            ("--irc-listen-plain", &self.irc_plain_addr),
        ] {
            if let Some(i) = args.iter().position(|e| e == flag)
                && !addr.is_empty()
                && i + 1 < args.len()
            {
                args[i + 1] = addr.clone();
            }
        }
        args
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))
            .expect("log file");
        let mut child = Command::new(env!("CARGO_BIN_EXE_confab-server"))
            .arg("--listen")
            .arg(if self.addr.is_empty() {
                "127.0.0.1:0"
            } else {
                &self.addr
            })
            .args(if self.extra.iter().any(|e| e == "--db") {
                Vec::new()
            } else {
                vec!["--db".into(), self.db().into_os_string()]
            })
            .arg("--data-dir")
            .arg(self.dir.path())
            .arg("--cert")
            .arg(certs().join("server.pem"))
            .arg("--key")
            .arg(certs().join("server.key"))
            .args(["--log", "debug"])
            .args(self.relaxed_limits())
            .args(self.extra_args())
            .env_remove("RUST_LOG")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn confab-server");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        // The server says each address it listens on, one line each.
        let has = |flag: &str| self.extra.iter().any(|e| e == flag);
        let wanted = 1 + usize::from(has("--irc-listen")) + usize::from(has("--irc-listen-plain"));
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            for _ in 0..wanted {
                if let Some(Ok(line)) = lines.next() {
                    let _ = tx.send(line);
                }
            }
            // Keep draining so the server never blocks on a full pipe.
            for _ in lines {}
        });
        for _ in 0..wanted {
            let line = rx.recv_timeout(WAIT).unwrap_or_else(|_| {
                let _ = child.kill();
                panic!("server did not start; log:\n{}", self.log());
            });
            if let Some(a) = line.strip_prefix("listening on ") {
                self.addr = a.to_owned();
            } else if let Some(a) = line.strip_prefix("irc listening on ") {
                self.irc_addr = a.to_owned();
            } else if let Some(a) = line.strip_prefix("plaintext irc listening on ") {
                self.irc_plain_addr = a.to_owned();
            } else {
                panic!("unexpected line {line:?}");
            }
        }
        self.child = Some(child);
    }

    /// Kills the server with SIGKILL (no chance to clean up).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the server and starts it again on the same database and the
    /// same port.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Sends SIGTERM and waits up to `limit` for the process to exit;
    /// returns its exit status, or `None` if it did not exit in time.
    pub fn terminate(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if std::time::Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Restarts the server on the same database and port with other extra
    /// flags.
    pub fn restart_with(&mut self, extra: &[&str]) {
        self.kill();
        self.extra = extra.iter().map(|s| s.to_string()).collect();
        self.spawn();
    }

    /// Starts the server again on the same database after it stopped.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "server still running");
        self.spawn();
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Runs `confab-server admin ARGS...` on this server's database, with
    /// `stdin` as its input; returns whether it succeeded and what it said.
    pub fn admin(&self, args: &[&str], stdin: &str) -> (bool, String) {
        self.admin_with(&[], args, stdin)
    }

    /// Like [`TestServer::admin`], with server `flags` before `admin`.
    pub fn admin_with(&self, flags: &[&str], args: &[&str], stdin: &str) -> (bool, String) {
        use std::io::Write;
        let mut child = Command::new(env!("CARGO_BIN_EXE_confab-server"))
            .args(match self.extra.iter().position(|e| e == "--db") {
                Some(i) => vec![
                    std::ffi::OsString::from("--db"),
                    self.extra[i + 1].clone().into(),
                ],
                None => vec!["--db".into(), self.db().into_os_string()],
            })
            .args(["--password-iterations", TEST_ITERATIONS])
            .args(flags)
            .arg("admin")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("confab-server admin");
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(stdin.as_bytes())
            .expect("writing the admin tool's input");
        let out = child.wait_with_output().expect("confab-server admin");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    /// Registers `user` and makes them an administrator (with the admin
    /// tool, as an operator would).
    pub fn admin_user(&self, user: &str) -> Client {
        let c = self.user(user);
        let (ok, out) = self.admin(&["grant", user], "");
        assert!(ok, "grant {user}: {out}");
        c
    }

    /// A connected, greeted client that trusts the test CA.
    pub fn client(&self) -> Client {
        let connector = client_connector(&Trust::CaFile(certs().join("ca.pem"))).unwrap();
        Client::connect_with(&self.addr, "localhost", &connector, WAIT)
            .unwrap_or_else(|e| panic!("connect: {e}\nserver log:\n{}", self.log()))
    }

    /// A TLS-connected client that has not sent `hello`.
    pub fn raw_client(&self) -> Client {
        let connector = client_connector(&Trust::CaFile(certs().join("ca.pem"))).unwrap();
        Client::connect_unhello(&self.addr, "localhost", &connector, WAIT).expect("connect")
    }

    /// Registers `user` and returns the logged-in client.
    pub fn user(&self, user: &str) -> Client {
        let mut c = self.client();
        c.register(user, PW).expect("register");
        c
    }

    /// A connected, greeted client whose TCP connection comes from the
    /// local address `from` (any 127.0.0.x is this machine).
    pub fn client_from(&self, from: std::net::Ipv4Addr) -> Client {
        let connector = client_connector(&Trust::CaFile(certs().join("ca.pem"))).unwrap();
        let tcp = tcp_from(from, self.addr.parse().expect("an IPv4 address")).expect("connect");
        let mut c = Client::over_tcp(tcp, "localhost", &connector, WAIT).expect("TLS");
        c.greet(&mut |_| {}).expect("hello");
        c
    }

    /// Logs in as an existing `user`.
    pub fn login(&self, user: &str) -> Client {
        let mut c = self.client();
        c.login(user, PW).expect("login");
        c
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("---- server log ----\n{}", self.log());
        }
    }
}

/// A plain TCP connection to `to` from the local address `from` (any
/// 127.0.0.x is this machine), which never starts TLS.
pub fn tcp_from(
    from: std::net::Ipv4Addr,
    to: std::net::SocketAddr,
) -> std::io::Result<std::net::TcpStream> {
    use std::os::fd::FromRawFd;
    let std::net::SocketAddr::V4(to) = to else {
        panic!("the test server listens on IPv4");
    };
    let sockaddr = |ip: std::net::Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: plain socket calls on a descriptor this function owns; the
    // address structs live across the calls that read them.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let stream = std::net::TcpStream::from_raw_fd(fd);
        let local = sockaddr(from, 0);
        if libc::bind(fd, (&local as *const libc::sockaddr_in).cast(), len) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let remote = sockaddr(*to.ip(), to.port());
        if libc::connect(fd, (&remote as *const libc::sockaddr_in).cast(), len) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(stream)
    }
}
