//! The load generator behind `confab-bench` and `make bench`: scenarios
//! that start a real server (release build, temporary database, TLS on
//! loopback), drive it through the shared client library, and report one
//! JSON object of figures each.
//!
//! Latency is measured end to end: a sender puts its send time (µs since a
//! process-wide start instant) in the body; each receiver subtracts it from
//! its receive time. Server CPU and memory come from `/proc/<pid>`.

use crate::client::{Client, Conversation};
use crate::protocol::{ClientFrame, Request, encode_json};
use crate::tls::{Trust, client_connector};
use native_tls::TlsConnector;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The password of every bench user.
pub const PW: &str = "bench password 1";

fn epoch() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

/// This process's CPU time (user + system), µs: the load generator's own
/// cost, which competes with the server for the same cores.
fn own_cpu_us() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let ticks: u64 = stat
        .rsplit_once(')')
        .map(|(_, rest)| {
            rest.split_whitespace()
                .skip(11)
                .take(2)
                .filter_map(|v| v.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    ticks * 1_000_000 / hz
}

fn now_us() -> u64 {
    epoch().elapsed().as_micros() as u64
}

/// A server process for one scenario, on a temporary data directory.
pub struct BenchServer {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// The IRC listener's address, when started with `--irc-listen`.
    pub irc_addr: Option<String>,
    dir: PathBuf,
    connector: TlsConnector,
    /// How it was started, to start it again ([`BenchServer::restart`]).
    command: (PathBuf, PathBuf, Vec<String>),
}

impl BenchServer {
    /// Starts `server_bin` with test certificates from `certs` and `extra`
    /// flags (limits relaxed for load: no per-IP cap, no flood control).
    pub fn start(server_bin: &Path, certs: &Path, extra: &[&str]) -> Result<BenchServer, String> {
        let mut rnd = [0u8; 6];
        getrandom::fill(&mut rnd).map_err(|e| e.to_string())?;
        let dir = std::env::temp_dir().join(format!(
            "confab-bench-{}",
            rnd.iter().map(|b| format!("{b:02x}")).collect::<String>()
        ));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let (child, addr, irc_addr) = spawn_server(server_bin, certs, &extra, &dir, "127.0.0.1:0")?;
        let connector =
            client_connector(&Trust::CaFile(certs.join("ca.pem"))).map_err(|e| e.to_string())?;
        Ok(BenchServer {
            child,
            addr,
            irc_addr,
            dir,
            connector,
            command: (server_bin.to_path_buf(), certs.to_path_buf(), extra),
        })
    }

    /// Stops the server with SIGTERM (as an operator would), waits for it,
    /// and starts it again on the same address and database; returns when
    /// it listens.
    pub fn restart(&mut self) -> Result<(), String> {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let _ = self.child.wait();
        let (bin, certs, extra) = &self.command;
        let (child, addr, irc_addr) = spawn_server(bin, certs, extra, &self.dir, &self.addr)?;
        self.child = child;
        self.addr = addr;
        self.irc_addr = irc_addr;
        Ok(())
    }

    /// A greeted client.
    pub fn client(&self) -> Client {
        Client::connect_with(
            &self.addr,
            "localhost",
            &self.connector,
            Duration::from_secs(60),
        )
        .expect("bench client connects")
    }
}

/// Starts a server process listening on `listen`; returns it, the address
/// it says it listens on, and its IRC listener's if `extra` asks for one.
fn spawn_server(
    server_bin: &Path,
    certs: &Path,
    extra: &[String],
    dir: &Path,
    listen: &str,
) -> Result<(Child, String, Option<String>), String> {
    let mut child = Command::new(server_bin)
        .args(["--listen", listen, "--log", "warn"])
        .arg("--data-dir")
        .arg(dir)
        .arg("--cert")
        .arg(certs.join("server.pem"))
        .arg("--key")
        .arg(certs.join("server.key"))
        .args([
            "--max-per-ip",
            "0",
            "--flood-burst",
            "1000000000",
            "--flood-rate",
            "1000000000",
        ])
        .args(["--login-failures", "0"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("{}: {e}", server_bin.display()))?;
    let mut out = BufReader::new(child.stdout.take().ok_or("no stdout")?);
    let mut line = String::new();
    out.read_line(&mut line).map_err(|e| e.to_string())?;
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .ok_or_else(|| format!("server said {line:?}"))?
        .to_owned();
    let mut irc = None;
    if extra.iter().any(|e| e == "--irc-listen") {
        line.clear();
        out.read_line(&mut line).map_err(|e| e.to_string())?;
        irc = Some(
            line.trim()
                .strip_prefix("irc listening on ")
                .ok_or_else(|| format!("server said {line:?}"))?
                .to_owned(),
        );
    }
    Ok((child, addr, irc))
}

impl BenchServer {
    /// A client logged in as `user` (registered on first use).
    pub fn user(&self, user: &str) -> Client {
        let mut c = self.client();
        if c.login(user, PW).is_err() {
            c = self.client();
            c.register(user, PW).expect("bench user registers");
        }
        c
    }

    fn stat(&self, field: usize) -> u64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(field)?.parse().ok())
            .unwrap_or(0)
    }

    /// Server CPU time so far (user + system), in microseconds.
    pub fn cpu_us(&self) -> u64 {
        let ticks = self.stat(11) + self.stat(12);
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        ticks * 1_000_000 / hz
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Server resident memory, KiB.
    pub fn rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for BenchServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The send time in a bench message event (`"body":"t=<µs> ..."`), found
/// without decoding the JSON: the load generator reads hundreds of
/// thousands of these per second on the cores the server needs.
fn sent_at(json: &[u8]) -> Option<u64> {
    find(json, b"\"type\":\"message\"")?;
    number_after(json, b"\"body\":\"t=")
}

/// The sender index `s=` in a paced message's body.
fn sender_of(json: &[u8]) -> Option<usize> {
    number_after(json, b" s=")
}

/// The decimal number right after the first `key` in `json`.
fn number_after<T: std::str::FromStr>(json: &[u8], key: &[u8]) -> Option<T> {
    let at = find(json, key)? + key.len();
    let digits = json[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&json[at..at + digits])
        .ok()?
        .parse()
        .ok()
}

/// A throwaway PostgreSQL cluster for the cluster scenarios, made with
/// `pg_virtualenv -t` (Debian's postgresql-common, installed by `make
/// deps`) and dropped when this is dropped: the shell it runs waits on its
/// standard input.
pub struct Postgres {
    child: Child,
    /// `postgres://user:password@host:port/postgres`.
    pub url: String,
}

impl Postgres {
    /// Starts a cluster; fails saying why if it cannot.
    pub fn start() -> Result<Postgres, String> {
        let mut rnd = [0u8; 6];
        getrandom::fill(&mut rnd).map_err(|e| e.to_string())?;
        let file = std::env::temp_dir().join(format!(
            "confab-bench-pg-{}",
            rnd.iter().map(|b| format!("{b:02x}")).collect::<String>()
        ));
        // The URL goes to a file (pg_virtualenv talks on stdout itself);
        // then the shell waits on stdin.
        let script = format!(
            "echo \"postgres://$PGUSER:$PGPASSWORD@$PGHOST:$PGPORT/postgres\" > {0}.tmp \
             && mv {0}.tmp {0} && cat > /dev/null",
            file.display()
        );
        let mut child = Command::new("pg_virtualenv")
            .args(["-t", "sh", "-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                format!("pg_virtualenv: {e} (the cluster scenarios need Debian's postgresql and postgresql-common: `make deps`)")
            })?;
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Ok(text) = std::fs::read_to_string(&file) {
                let _ = std::fs::remove_file(&file);
                return Ok(Postgres {
                    child,
                    url: text.trim().to_owned(),
                });
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "pg_virtualenv started no PostgreSQL cluster ({status})"
                ));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return Err("pg_virtualenv started no PostgreSQL cluster within 90 s".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// Whether a frame is an `ack` reply.
fn is_ack(json: &[u8]) -> bool {
    find(json, b"\"type\":\"ack\"").is_some()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Starts a run (the caller is the last party of `barrier`), waits for its
/// `threads`, and returns the server's and this process's CPU time during
/// it (µs) and when it started (µs since the process-wide epoch).
fn run_measured(
    server: &BenchServer,
    barrier: &Barrier,
    threads: Vec<std::thread::JoinHandle<()>>,
) -> (u64, u64, u64) {
    run_measured_on(&[server], barrier, threads)
}

/// [`run_measured`] with the CPU of several servers summed.
fn run_measured_on(
    servers: &[&BenchServer],
    barrier: &Barrier,
    threads: Vec<std::thread::JoinHandle<()>>,
) -> (u64, u64, u64) {
    let cpu = || servers.iter().map(|s| s.cpu_us()).sum::<u64>();
    barrier.wait();
    let cpu0 = cpu();
    let own0 = own_cpu_us();
    let t0 = now_us();
    for t in threads {
        let _ = t.join();
    }
    (cpu() - cpu0, own_cpu_us() - own0, t0)
}

/// Percentiles of latencies in µs.
fn summary(mut lat: Vec<u64>) -> Value {
    lat.sort_unstable();
    let pct = |p: f64| -> f64 {
        if lat.is_empty() {
            return 0.0;
        }
        let i = ((lat.len() as f64 - 1.0) * p).round() as usize;
        lat[i] as f64 / 1000.0
    };
    json!({"p50_ms": pct(0.50), "p99_ms": pct(0.99), "max_ms": pct(1.0), "samples": lat.len()})
}

/// Registers `n` users `prefix0..` in parallel (returns nothing; they
/// exist afterwards).
fn register_users(server: &BenchServer, prefix: &str, n: usize) {
    on_threads(8, n, |i| {
        let _ = server.client().register(&format!("{prefix}{i}"), PW);
    });
}

/// Runs `job(i)` for every `i` in `0..n` on `threads` threads, each taking
/// the next index as soon as it is done with one: a storm of connections
/// as fast as the threads can make them.
fn on_threads(threads: usize, n: usize, job: impl Fn(usize) + Sync) {
    let next = AtomicU64::new(0);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                    if i >= n {
                        break;
                    }
                    job(i);
                }
            });
        }
    });
}

/// Locks a mutex of the load generator's, whose data stays usable even if
/// another of its threads panicked.
fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Parameters of a fan-out run.
#[derive(Debug, Clone)]
pub struct Fanout {
    /// Receiving sessions in the room.
    pub clients: usize,
    /// Sending sessions.
    pub senders: usize,
    /// Messages per sender.
    pub messages: usize,
    /// Offered messages per second in all; `None`: as fast as acks come.
    pub rate: Option<f64>,
    /// Send everything at once, pipelined, without waiting for acks.
    pub burst: bool,
    /// Members are IRC clients on the IRC listener (paced runs only):
    /// confab's fan-out over IRC, as IRC servers are measured.
    pub irc: bool,
    /// The room (paced runs): `general`, which everyone is in, or another
    /// that the members create and join (confab members only).
    pub room: &'static str,
}

/// A fan-out run; reports deliveries/s, latency percentiles, server CPU
/// per delivery, and lost deliveries (must be 0). With a rate, see
/// `fanout_paced`. Otherwise (burst, storage) `clients` sessions in
/// #general receive what `senders` extra sessions send from their own
/// threads (second sessions of the first members: the server delivers to
/// them too, which the per-delivery figures do not count).
pub fn fanout(server: &BenchServer, p: &Fanout) -> Value {
    if p.rate.is_some() && !p.burst && p.clients > 0 {
        return fanout_paced(server, p);
    }
    register_users(server, "recv", p.clients);
    let receivers: Vec<Client> = (0..p.clients)
        .map(|i| server.user(&format!("recv{i}")))
        .collect();
    let senders: Vec<Client> = (0..p.senders)
        .map(|i| server.user(&format!("recv{i}")))
        .collect();
    let expected_each = p.senders * p.messages;
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(expected_each * p.clients)));
    let received = Arc::new(AtomicU64::new(0));
    let last_rx = Arc::new(AtomicU64::new(0));
    let last_ack = Arc::new(AtomicU64::new(0));
    // Acks actually received (a sender cut off early must not count).
    let acked_total = Arc::new(AtomicU64::new(0));
    let start_barrier = Arc::new(Barrier::new(2 + p.senders + 1));
    let mut threads = Vec::new();
    // Receivers are served by two threads polling 100 connections each,
    // not a thread per connection: the load generator should cost less
    // than the server it measures.
    let mut groups: Vec<Vec<Client>> = vec![Vec::new(), Vec::new()];
    for (i, c) in receivers.into_iter().enumerate() {
        groups[i % 2].push(c);
    }
    for mut group in groups {
        let (latencies, received, last_rx, barrier) = (
            latencies.clone(),
            received.clone(),
            last_rx.clone(),
            start_barrier.clone(),
        );
        threads.push(std::thread::spawn(move || {
            barrier.wait();
            let want = expected_each * group.len();
            let mut mine = Vec::with_capacity(want);
            let fds: Vec<_> = group.iter().map(Client::raw_fd).collect();
            let Ok(mut set) = crate::poller::ReadySet::new(&fds) else {
                return;
            };
            let mut ready = Vec::new();
            let mut idle_since = Instant::now();
            while mine.len() < want && idle_since.elapsed() < Duration::from_secs(10) {
                if set.wait(Duration::from_millis(200), &mut ready).is_err() {
                    break;
                }
                for &i in &ready {
                    let before = mine.len();
                    let _ = group[i].drain_raw(&mut |json| {
                        if let Some(t) = sent_at(json) {
                            mine.push(now_us().saturating_sub(t));
                        }
                    });
                    if mine.len() > before {
                        idle_since = Instant::now();
                    }
                }
            }
            received.fetch_add(mine.len() as u64, Ordering::Relaxed);
            last_rx.fetch_max(now_us(), Ordering::Relaxed);
            latencies.lock().unwrap().extend(mine);
        }));
    }
    for (si, mut c) in senders.into_iter().enumerate() {
        let (barrier, msgs, burst, last_ack, acked_total) = (
            start_barrier.clone(),
            p.messages,
            p.burst,
            last_ack.clone(),
            acked_total.clone(),
        );
        // Storage alone (no receivers): each sender writes to a room of its
        // own, so no session also receives the others' messages (in
        // `general`, a sender blocked writing its burst could not read the
        // 19 others' and was cut off as too slow to read).
        let room = if p.clients == 0 {
            let room = format!("store-{si}");
            c.create_room(&room, "").expect("a room of its own");
            room
        } else {
            "general".to_owned()
        };
        threads.push(std::thread::spawn(move || {
            barrier.wait();
            let pad = "x".repeat(60);
            if burst {
                let mut frames = Vec::new();
                for n in 0..msgs {
                    frames.extend(encode_json(&ClientFrame {
                        req: Some(n as u64 + 1),
                        request: Request::Say {
                            room: room.clone(),
                            body: format!("t={} s={si} n={n} {pad}", now_us()),
                            reply_to: None,
                            notice: false,
                        },
                    }));
                }
                c.send_frame(&frames).expect("burst sent");
                // The acks, read raw: this session also receives the
                // room's messages, which need no decoding here.
                let mut acks = 0;
                let fd = c.raw_fd();
                while acks < msgs {
                    match c.drain_raw(&mut |json| acks += usize::from(is_ack(json))) {
                        Ok(true) => {}
                        _ => break,
                    }
                    if acks < msgs
                        && crate::poller::wait(fd, false, None, Some(Duration::from_secs(30)))
                            .is_err()
                    {
                        break;
                    }
                }
                acked_total.fetch_add(acks as u64, Ordering::Relaxed);
            } else {
                for n in 0..msgs {
                    c.say(&room, &format!("t={} s={si} n={n} {pad}", now_us()))
                        .expect("say");
                }
                acked_total.fetch_add(msgs as u64, Ordering::Relaxed);
            }
            last_ack.fetch_max(now_us(), Ordering::Relaxed);
        }));
    }
    let (cpu, own, t0) = run_measured(server, &start_barrier, threads);
    let got = received.load(Ordering::Relaxed);
    let expected = (expected_each * p.clients) as u64;
    let elapsed_s = (last_rx.load(Ordering::Relaxed).saturating_sub(t0)) as f64 / 1e6;
    let acked_s = (last_ack.load(Ordering::Relaxed).saturating_sub(t0)) as f64 / 1e6;
    let lat = Arc::try_unwrap(latencies)
        .map(|m| m.into_inner().unwrap())
        .unwrap_or_default();
    if p.clients == 0 {
        // Storage only: nothing is delivered; the acks are the measure.
        let msgs = acked_total.load(Ordering::Relaxed) as f64;
        return json!({
            "scenario": "store", "senders": p.senders, "messages": p.senders * p.messages,
            "acked": msgs,
            "stored_msgs_per_s": (msgs / acked_s.max(1e-9)).round(),
            "server_cpu_us_per_message": (cpu as f64 / msgs * 100.0).round() / 100.0,
        });
    }
    json!({
        "scenario": if p.burst { "burst" } else { "fanout" },
        "clients": p.clients, "senders": p.senders, "messages": p.senders * p.messages,
        "offered_msgs_per_s": p.rate,
        "deliveries": got, "lost": expected - got.min(expected),
        "stored_msgs_per_s": ((p.senders * p.messages) as f64 / acked_s.max(1e-9)).round(),
        "deliveries_per_s": (got as f64 / elapsed_s.max(1e-9)).round(),
        "latency": summary(lat),
        "server_cpu_us_per_delivery": (cpu as f64 / got.max(1) as f64 * 100.0).round() / 100.0,
        "bench_cpu_us_per_delivery": (own as f64 / got.max(1) as f64 * 100.0).round() / 100.0,
        "cores_busy": ((cpu + own) as f64 / 1e6 / elapsed_s.max(1e-9) * 100.0).round() / 100.0,
    })
}

/// The paced fan-out: `clients` members of #general, the first `senders`
/// of whom also send, each at its share of the offered rate, staggered so
/// that the offered rate is even (not every sender at the same tick). Every
/// message reaches the `clients - 1` other members: a room of 200 members
/// with 20 senders, like the IRC servers' figures in the issue.
///
/// Two threads serve 100 members each from one `epoll` set (a thread per
/// connection would cost the load generator more than the server it
/// measures). A sender's message goes out from its thread's loop when due,
/// without waiting for the ack, which comes back on the same connection.
fn fanout_paced(server: &BenchServer, p: &Fanout) -> Value {
    fanout_on_nodes(&[server], p)
}

/// What a paced fan-out's member saw.
enum Seen {
    /// Someone else's message, sent at `sent_at` by member `sender`.
    Message { sent_at: u64, sender: Option<usize> },
    /// This member's own message is stored (confab's `ack`; IRC's echo).
    Ack,
}

/// A member of a paced fan-out: a confab session, or an IRC one.
enum Member {
    Confab(Box<Client>),
    Irc(Box<IrcMember>),
}

impl Member {
    fn raw_fd(&self) -> std::os::fd::RawFd {
        match self {
            Member::Confab(c) => c.raw_fd(),
            Member::Irc(c) => c.raw_fd(),
        }
    }

    /// Sends `body` to `room` (#general for IRC members) as request
    /// `req`; `false` if the connection failed.
    fn say(&mut self, room: &str, req: u64, body: &str) -> bool {
        match self {
            Member::Confab(c) => {
                let frame = encode_json(&ClientFrame {
                    req: Some(req),
                    request: Request::Say {
                        room: room.into(),
                        body: body.to_owned(),
                        reply_to: None,
                        notice: false,
                    },
                });
                c.send_frame(&frame).is_ok()
            }
            Member::Irc(c) => c.say(body),
        }
    }

    /// Reads what arrived, without waiting.
    fn drain(&mut self, f: &mut dyn FnMut(Seen)) {
        match self {
            Member::Confab(c) => {
                let _ = c.drain_raw(&mut |json| match sent_at(json) {
                    Some(t) => f(Seen::Message {
                        sent_at: t,
                        sender: sender_of(json),
                    }),
                    None if is_ack(json) => f(Seen::Ack),
                    None => {}
                });
            }
            Member::Irc(c) => c.drain(f),
        }
    }
}

/// A bench member on the IRC listener: TLS, `PASS` login, echo-message
/// (its echo is its ack), and the lines read raw, as `Client::drain_raw`
/// reads frames.
struct IrcMember {
    conn: crate::connection::Connection<native_tls::TlsStream<std::net::TcpStream>>,
    lines: crate::irc::line::Splitter,
    /// This member's index (its messages' `s=`).
    index: usize,
}

impl IrcMember {
    /// Connects, registers as `user` (registered already) and waits until
    /// #general is joined.
    fn join(server: &BenchServer, user: &str, index: usize) -> IrcMember {
        use std::os::fd::AsRawFd;
        let addr = server
            .irc_addr
            .as_deref()
            .expect("an IRC scenario starts the server with --irc-listen");
        let tcp = std::net::TcpStream::connect(addr).expect("bench IRC client connects");
        let _ = tcp.set_nodelay(true);
        let tls = server
            .connector
            .connect("localhost", tcp)
            .expect("bench IRC TLS handshake");
        tls.get_ref()
            .set_nonblocking(true)
            .expect("non-blocking socket");
        let mut m = IrcMember {
            conn: crate::connection::Connection::new(tls, 1 << 20),
            lines: Default::default(),
            index,
        };
        m.conn.queue(
            format!(
                "CAP REQ :echo-message\r\nPASS :{PW}\r\nNICK {user}\r\nUSER {user} 0 * :{user}\r\nCAP END\r\n"
            )
            .as_bytes(),
        );
        let joined = format!(" 366 {user} #general ");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let flushed = m.conn.flush().expect("bench IRC write");
            let state = m.conn.fill().expect("bench IRC read");
            let lines = &mut m.lines;
            m.conn.drain_raw(|b| lines.push(b));
            while let Some(line) = m.lines.next_line() {
                if let Ok(line) = line
                    && find(&line, joined.as_bytes()).is_some()
                {
                    return m;
                }
            }
            assert!(
                state != crate::connection::ReadState::Closed && Instant::now() < deadline,
                "bench IRC client {user} was not admitted"
            );
            let fd = m.conn.get_ref().get_ref().as_raw_fd();
            let _ = crate::poller::wait(fd, !flushed, None, Some(Duration::from_millis(100)));
        }
    }

    fn raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.conn.get_ref().get_ref().as_raw_fd()
    }

    fn say(&mut self, body: &str) -> bool {
        self.conn
            .queue(format!("PRIVMSG #general :{body}\r\n").as_bytes());
        self.conn.flush().is_ok()
    }

    fn drain(&mut self, f: &mut dyn FnMut(Seen)) {
        // Bytes a full socket did not take go out with the next read.
        let _ = self.conn.flush();
        loop {
            let Ok(state) = self.conn.fill() else { return };
            let lines = &mut self.lines;
            self.conn.drain_raw(|b| lines.push(b));
            while let Some(line) = self.lines.next_line() {
                let Ok(line) = line else { continue };
                let Some(t) = number_after(&line, b" :t=") else {
                    continue;
                };
                let sender = number_after(&line, b" s=");
                if sender == Some(self.index) {
                    f(Seen::Ack);
                } else {
                    f(Seen::Message { sent_at: t, sender });
                }
            }
            if state != crate::connection::ReadState::More {
                return;
            }
        }
    }
}

/// [`fanout`] at a paced rate with the room's members spread over several
/// nodes sharing one database (member `i` on node `i % n`, so senders too
/// alternate): latency over all deliveries, and over those whose sender is
/// on another node than the receiver; server CPU summed over the nodes.
pub fn fanout_on_nodes(nodes: &[&BenchServer], p: &Fanout) -> Value {
    let server = nodes[0];
    let n_nodes = nodes.len();
    register_users(server, "recv", p.clients);
    let room = p.room;
    assert!(
        room == "general" || !p.irc,
        "IRC members chat in #general only"
    );
    if room != "general" {
        // Made once; later runs on the same server find it there.
        let _ = server.user("recv0").create_room(room, "");
    }
    let members: Vec<Member> = (0..p.clients)
        .map(|i| {
            let node = nodes[i % n_nodes];
            let user = format!("recv{i}");
            if p.irc {
                Member::Irc(Box::new(IrcMember::join(node, &user, i)))
            } else {
                let mut c = node.user(&user);
                if room != "general" {
                    c.join(room).expect("bench member joins the room");
                }
                Member::Confab(Box::new(c))
            }
        })
        .collect();
    let senders = p.senders.min(p.clients);
    let total_msgs = senders * p.messages;
    let rate = p.rate.unwrap_or(200.0);
    // Sender `si` sends its n-th message at start + interval * (n + si/senders).
    let interval = Duration::from_secs_f64(senders as f64 / rate);
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(total_msgs * p.clients)));
    let cross_latencies = Arc::new(Mutex::new(Vec::new()));
    let received = Arc::new(AtomicU64::new(0));
    let acked = Arc::new(AtomicU64::new(0));
    let last_rx = Arc::new(AtomicU64::new(0));
    let barrier = Arc::new(Barrier::new(3));
    let mut groups: Vec<Vec<(usize, Member)>> = vec![Vec::new(), Vec::new()];
    for (i, c) in members.into_iter().enumerate() {
        groups[i % 2].push((i, c));
    }
    let mut threads = Vec::new();
    for mut group in groups {
        let (latencies, cross_latencies, received, acked, last_rx, barrier) = (
            latencies.clone(),
            cross_latencies.clone(),
            received.clone(),
            acked.clone(),
            last_rx.clone(),
            barrier.clone(),
        );
        let msgs = p.messages;
        threads.push(std::thread::spawn(move || {
            let fds: Vec<_> = group.iter().map(|(_, c)| c.raw_fd()).collect();
            let Ok(mut set) = crate::poller::ReadySet::new(&fds) else {
                return;
            };
            // What this thread's members should receive: every message but
            // their own.
            let mine_sent: usize = group.iter().filter(|(i, _)| *i < senders).count() * msgs;
            let want = group.len() * total_msgs - mine_sent;
            let want_acks = mine_sent;
            let mut next_n = vec![0usize; group.len()];
            let pad = "x".repeat(60);
            let mut lat = Vec::with_capacity(want);
            let mut cross = Vec::new();
            let mut acks = 0usize;
            let mut ready = Vec::new();
            barrier.wait();
            let start = Instant::now();
            let due = |si: usize, n: usize| {
                start + interval * n as u32 + interval.mul_f64(si as f64 / senders as f64)
            };
            let mut idle_since = Instant::now();
            while (lat.len() < want || acks < want_acks)
                && idle_since.elapsed() < Duration::from_secs(10)
            {
                // Send what is due; find when the next send is.
                let now = Instant::now();
                let mut next_due: Option<Instant> = None;
                for (k, (i, c)) in group.iter_mut().enumerate() {
                    if *i >= senders {
                        continue;
                    }
                    while next_n[k] < msgs && due(*i, next_n[k]) <= now {
                        let n = next_n[k];
                        let body = format!("t={} s={i} n={n} {pad}", now_us());
                        if !c.say(room, n as u64 + 1, &body) {
                            next_n[k] = msgs;
                            break;
                        }
                        next_n[k] += 1;
                    }
                    if next_n[k] < msgs {
                        let d = due(*i, next_n[k]);
                        next_due = Some(next_due.map_or(d, |x: Instant| x.min(d)));
                    }
                }
                let timeout = next_due
                    .map(|d| d.saturating_duration_since(Instant::now()))
                    .unwrap_or(Duration::from_millis(200))
                    .min(Duration::from_millis(200));
                if set.wait(timeout, &mut ready).is_err() {
                    break;
                }
                for &k in &ready {
                    let mut seen = false;
                    let node = group[k].0 % n_nodes;
                    group[k].1.drain(&mut |event| match event {
                        Seen::Message { sent_at, sender } => {
                            let l = now_us().saturating_sub(sent_at);
                            lat.push(l);
                            if n_nodes > 1 && sender.is_some_and(|s| s % n_nodes != node) {
                                cross.push(l);
                            }
                            seen = true;
                        }
                        Seen::Ack => {
                            acks += 1;
                            seen = true;
                        }
                    });
                    if seen {
                        idle_since = Instant::now();
                    }
                }
            }
            received.fetch_add(lat.len() as u64, Ordering::Relaxed);
            acked.fetch_add(acks as u64, Ordering::Relaxed);
            last_rx.fetch_max(now_us(), Ordering::Relaxed);
            latencies.lock().unwrap().extend(lat);
            cross_latencies.lock().unwrap().extend(cross);
        }));
    }
    let (cpu, own, t0) = run_measured_on(nodes, &barrier, threads);
    let got = received.load(Ordering::Relaxed);
    let expected = (total_msgs * (p.clients - 1)) as u64;
    let elapsed_s = (last_rx.load(Ordering::Relaxed).saturating_sub(t0)) as f64 / 1e6;
    let lat = Arc::try_unwrap(latencies)
        .map(|m| m.into_inner().unwrap())
        .unwrap_or_default();
    let cross = Arc::try_unwrap(cross_latencies)
        .map(|m| m.into_inner().unwrap())
        .unwrap_or_default();
    json!({
        "scenario": if n_nodes > 1 { "cluster" } else if p.irc { "fanout-irc" } else { "fanout" },
        "nodes": n_nodes,
        "cross_node_latency": summary(cross),
        "clients": p.clients, "senders": senders, "messages": total_msgs,
        "offered_msgs_per_s": rate,
        "deliveries": got, "lost": expected - got.min(expected),
        "acked": acked.load(Ordering::Relaxed),
        "deliveries_per_s": (got as f64 / elapsed_s.max(1e-9)).round(),
        "latency": summary(lat),
        "server_cpu_us_per_delivery": (cpu as f64 / got.max(1) as f64 * 100.0).round() / 100.0,
        "bench_cpu_us_per_delivery": (own as f64 / got.max(1) as f64 * 100.0).round() / 100.0,
        "cores_busy": ((cpu + own) as f64 / 1e6 / elapsed_s.max(1e-9) * 100.0).round() / 100.0,
    })
}

/// `n` sessions log in, join #general and idle: server RSS per session
/// and CPU while idle.
pub fn idle(server: &BenchServer, n: usize) -> Value {
    let rss0 = server.rss_kib();
    register_users(server, "idle", n);
    let mut sessions = Vec::with_capacity(n);
    for i in 0..n {
        sessions.push(server.user(&format!("idle{i}")));
    }
    std::thread::sleep(Duration::from_secs(1));
    let rss1 = server.rss_kib();
    let cpu0 = server.cpu_us();
    std::thread::sleep(Duration::from_secs(5));
    let idle_cpu = server.cpu_us() - cpu0;
    drop(sessions);
    json!({
        "scenario": "idle", "sessions": n,
        "server_rss_kib_before": rss0, "server_rss_kib_after": rss1,
        "rss_kib_per_session": ((rss1.saturating_sub(rss0)) as f64 / n as f64 * 10.0).round() / 10.0,
        "idle_cpu_percent_of_a_core": (idle_cpu as f64 / 5e6 * 100.0 * 100.0).round() / 100.0,
    })
}

/// `k` new sessions as fast as `threads` threads can make them, with a
/// resume token and with a password login.
pub fn connect(server: &BenchServer, k: usize, threads: usize) -> Value {
    let mut c = server.client();
    let token = c
        .register("conn", PW)
        .expect("register")
        .token
        .expect("token");
    let run = |resume: bool| -> (f64, f64, f64) {
        let (cpu0, own0) = (server.cpu_us(), own_cpu_us());
        let t0 = Instant::now();
        on_threads(threads, k, |_| {
            let mut c = server.client();
            if resume {
                c.resume("conn", &token).expect("resume");
            } else {
                c.login("conn", PW).expect("login");
            }
        });
        let rate = k as f64 / t0.elapsed().as_secs_f64();
        let per = |us: u64| (us as f64 / k as f64 / 10.0).round() / 100.0;
        (rate, per(server.cpu_us() - cpu0), per(own_cpu_us() - own0))
    };
    let (resumed, server_ms, bench_ms) = run(true);
    let (password, _, _) = run(false);
    json!({"scenario": "connect", "sessions": k, "threads": threads,
           "resumed_per_s": resumed.round(), "password_logins_per_s": (password * 10.0).round() / 10.0,
           "server_cpu_ms_per_resumed_session": server_ms, "bench_cpu_ms_per_resumed_session": bench_ms})
}

/// A steady fan-out with and without a storm of `logins` password logins
/// (at the server's configured PBKDF2 cost): how much chat p99 moves.
pub fn login_storm(server: &BenchServer, logins: usize) -> Value {
    let quiet = Fanout {
        clients: 50,
        senders: 5,
        messages: 200,
        rate: Some(200.0),
        burst: false,
        irc: false,
        room: "general",
    };
    let base = fanout(server, &quiet);
    let mut c = server.client();
    let _ = c.register("storm", PW);
    let storm_done = Arc::new(AtomicU64::new(0));
    let storm_thread = {
        let (addr, connector, done) = (
            server.addr.clone(),
            server.connector.clone(),
            storm_done.clone(),
        );
        std::thread::spawn(move || {
            std::thread::scope(|s| {
                for _ in 0..8 {
                    s.spawn(|| {
                        while (done.fetch_add(1, Ordering::Relaxed) as usize) < logins {
                            if let Ok(mut c) = Client::connect_with(
                                &addr,
                                "localhost",
                                &connector,
                                Duration::from_secs(60),
                            ) {
                                let _ = c.login("storm", PW);
                            }
                        }
                    });
                }
            });
        })
    };
    let t0 = Instant::now();
    let during = fanout(
        server,
        &Fanout {
            messages: 200,
            ..quiet
        },
    );
    let _ = storm_thread.join();
    let p99 = |v: &Value| v["latency"]["p99_ms"].as_f64().unwrap_or(0.0);
    json!({"scenario": "login-storm", "logins": logins,
           "chat_p99_ms_quiet": p99(&base), "chat_p99_ms_during_storm": p99(&during),
           "p99_moved_ms": ((p99(&during) - p99(&base)) * 1000.0).round() / 1000.0,
           "storm_seconds": t0.elapsed().as_secs_f64(),
           "lost": base["lost"].as_u64().unwrap_or(0) + during["lost"].as_u64().unwrap_or(0)})
}

/// History pages fetched while messages are written: page latency.
pub fn history(server: &BenchServer, pages: usize) -> Value {
    let mut writer = server.user("hist_w");
    for i in 0..2000 {
        writer.say("general", &format!("seed {i}")).unwrap();
    }
    let stop = Arc::new(AtomicU64::new(0));
    let w = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut n = 0;
            while stop.load(Ordering::Relaxed) == 0 {
                let _ = writer.say("general", &format!("live {n}"));
                n += 1;
            }
            n
        })
    };
    let mut reader = server.user("hist_r");
    let mut lat = Vec::with_capacity(pages);
    let mut before = None;
    for _ in 0..pages {
        let t = Instant::now();
        let (page, more) = reader.room_history("general", before, 50).unwrap();
        lat.push(t.elapsed().as_micros() as u64);
        before = if more {
            page.first().map(|m| m.id)
        } else {
            None
        };
    }
    stop.store(1, Ordering::Relaxed);
    let written = w.join().unwrap_or(0);
    json!({"scenario": "history", "pages": pages, "page_size": 50, "written_meanwhile": written, "page_latency": summary(lat)})
}

/// A 25 MiB upload while chat runs: MB/s and chat p99 during it.
pub fn upload(server: &BenchServer) -> Value {
    let path = std::env::temp_dir().join(format!("confab-bench-{}.pdf", std::process::id()));
    let mut bytes = b"%PDF-1.4\n".to_vec();
    bytes.resize(25 * 1024 * 1024, b'x');
    std::fs::write(&path, &bytes).expect("write the test file");
    let mut up = server.user("uploader");
    let chat = Fanout {
        clients: 50,
        senders: 5,
        messages: 200,
        rate: Some(200.0),
        burst: false,
        irc: false,
        room: "general",
    };
    let quiet = fanout(server, &chat);
    let (tx, rx) = std::sync::mpsc::channel();
    let p = path.clone();
    let t = std::thread::spawn(move || {
        let t0 = Instant::now();
        up.upload(&Conversation::Room("general".into()), &p, &mut |_, _| {})
            .expect("upload");
        let _ = tx.send(t0.elapsed());
    });
    let during = fanout(server, &chat);
    let _ = t.join();
    let secs = rx.recv().map(|d| d.as_secs_f64()).unwrap_or(f64::NAN);
    let _ = std::fs::remove_file(&path);
    let p99 = |v: &Value| v["latency"]["p99_ms"].as_f64().unwrap_or(0.0);
    json!({"scenario": "upload", "bytes": bytes.len(), "seconds": (secs * 1000.0).round() / 1000.0,
           "mb_per_s": ((bytes.len() as f64 / 1e6 / secs) * 10.0).round() / 10.0,
           "chat_p99_ms_quiet": p99(&quiet), "chat_p99_ms_during_upload": p99(&during),
           "lost": quiet["lost"].as_u64().unwrap_or(0) + during["lost"].as_u64().unwrap_or(0)})
}

/// One step of the `crowd` scenario: `n` clients register (which puts
/// them in `general`, the room everyone is in) and join `general`, as the
/// TUI does at login, from 8 threads, and all stay connected. Reports the
/// setup's wall time, the server's CPU per login, the size of the `joined`
/// reply, and how many clients failed to get in within `deadline`.
pub fn crowd_step(server: &BenchServer, n: usize, deadline: Duration) -> Value {
    crowd_join(server, n, deadline).0
}

/// [`crowd_step`], keeping the connected clients.
fn crowd_join(server: &BenchServer, n: usize, deadline: Duration) -> (Value, Vec<Client>) {
    let joined_bytes = AtomicU64::new(0);
    let kept: Mutex<Vec<Client>> = Mutex::new(Vec::with_capacity(n));
    let (cpu0, own0) = (server.cpu_us(), own_cpu_us());
    let t0 = Instant::now();
    let stop = t0 + deadline;
    on_threads(8, n, |i| {
        let left = stop.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        let Ok(mut c) = Client::connect_with(&server.addr, "localhost", &server.connector, left)
        else {
            return;
        };
        if let Ok(j) = c
            .register(&format!("crowd{i}"), PW)
            .and_then(|_| c.join("general"))
        {
            let size = serde_json::to_vec(&j).map_or(0, |v| v.len());
            joined_bytes.fetch_add(size as u64, Ordering::Relaxed);
            locked(&kept).push(c);
        }
    });
    let setup = t0.elapsed().as_secs_f64();
    let kept = kept.into_inner().unwrap_or_else(|e| e.into_inner());
    let ok = kept.len() as u64;
    let per = |us: u64| (us as f64 / n.max(1) as f64 / 10.0).round() / 100.0;
    let rss = server.rss_kib();
    let result = json!({
        "clients": n, "joined": ok, "failed": n as u64 - ok,
        "setup_s": (setup * 100.0).round() / 100.0,
        "server_cpu_ms_per_login": per(server.cpu_us() - cpu0),
        "bench_cpu_ms_per_login": per(own_cpu_us() - own0),
        "joined_reply_bytes": joined_bytes.load(Ordering::Relaxed) / ok.max(1),
        "server_rss_kib": rss,
    });
    (result, kept)
}

/// New sessions while `online` clients sit in `general`: `k` resumed
/// sessions, then `k` registrations, each by 8 threads as fast as they go.
/// Logins in a crowded room must cost what they cost in an empty one.
pub fn storm_crowded(server: &BenchServer, online: usize, k: usize, chat_msgs: usize) -> Value {
    let (crowd, kept) = crowd_join(server, online, Duration::from_secs(120));
    let mut c = server.client();
    let token = c
        .register("stormer", PW)
        .expect("register")
        .token
        .expect("token");
    drop(c);
    let storm = |register: bool| -> (f64, f64) {
        let cpu0 = server.cpu_us();
        let t0 = Instant::now();
        on_threads(8, k, |i| {
            let mut c = server.client();
            if register {
                c.register(&format!("storm{i}"), PW).expect("register");
            } else {
                c.resume("stormer", &token).expect("resume");
            }
        });
        let rate = k as f64 / t0.elapsed().as_secs_f64();
        let cpu = (server.cpu_us() - cpu0) as f64 / k as f64 / 1000.0;
        (rate.round(), (cpu * 100.0).round() / 100.0)
    };
    let (resumed, resumed_cpu) = storm(false);
    let (registered, registered_cpu) = storm(true);
    // Chat in a busy room (50 members, 5 of them sending 200 msgs/s in
    // all), first with the crowd online and idle, then while the storm
    // goes on: 8 threads alternating resumes and registrations until the
    // chat run ends.
    let chat = Fanout {
        clients: 50,
        senders: 5,
        messages: chat_msgs,
        rate: Some(200.0),
        burst: false,
        irc: false,
        room: "busy",
    };
    let quiet = fanout(server, &chat);
    let chatting = AtomicBool::new(true);
    let stormed = AtomicU64::new(0);
    let t0 = Instant::now();
    let during = std::thread::scope(|s| {
        for t in 0..8 {
            let (chatting, stormed, token) = (&chatting, &stormed, &token);
            s.spawn(move || {
                let mut n = 0usize;
                while chatting.load(Ordering::Relaxed) {
                    let mut c = server.client();
                    let ok = if n.is_multiple_of(2) {
                        c.resume("stormer", token).is_ok()
                    } else {
                        c.register(&format!("chatstorm{t}_{n}"), PW).is_ok()
                    };
                    stormed.fetch_add(u64::from(ok), Ordering::Relaxed);
                    n += 1;
                }
            });
        }
        let during = fanout(server, &chat);
        chatting.store(false, Ordering::Relaxed);
        during
    });
    let storm_rate = stormed.load(Ordering::Relaxed) as f64 / t0.elapsed().as_secs_f64();
    drop(kept);
    let p99 = |v: &Value| v["latency"]["p99_ms"].as_f64().unwrap_or(0.0);
    let lost = |v: &Value| v["lost"].as_u64().unwrap_or(0);
    json!({"scenario": "storm-crowded", "online": crowd["joined"], "sessions": k, "threads": 8,
           "resumed_per_s": resumed, "server_cpu_ms_per_resumed": resumed_cpu,
           "registered_per_s": registered, "server_cpu_ms_per_registered": registered_cpu,
           "chat_p99_ms_quiet": p99(&quiet), "chat_p99_ms_during_storm": p99(&during),
           "chat_lost": lost(&quiet) + lost(&during),
           "storm_sessions_per_s_during_chat": storm_rate.round()})
}

/// `n` clients online with resume tokens; the server is stopped (SIGTERM)
/// and started again, and every client comes back with its token at once
/// (8 threads). Reports how long until all are back, and whether the
/// server then shows each of them online.
pub fn restart(server: &mut BenchServer, n: usize) -> Value {
    let tokens: Mutex<Vec<(String, String, Client)>> = Mutex::new(Vec::with_capacity(n));
    on_threads(8, n, |i| {
        let mut c = server.client();
        let user = format!("back{i}");
        if let Ok(Some(token)) = c.register(&user, PW).map(|l| l.token) {
            locked(&tokens).push((user, token, c));
        }
    });
    let tokens = tokens.into_inner().unwrap_or_else(|e| e.into_inner());
    let before = tokens.len();
    let stop0 = Instant::now();
    if let Err(e) = server.restart() {
        return json!({"scenario": "restart", "error": e});
    }
    let restart_s = stop0.elapsed().as_secs_f64();
    let credentials: Vec<(String, String)> =
        tokens.into_iter().map(|(u, t, _old)| (u, t)).collect();
    let back: Mutex<Vec<Client>> = Mutex::new(Vec::with_capacity(n));
    let t0 = Instant::now();
    on_threads(8, credentials.len(), |i| {
        let (user, token) = &credentials[i];
        if let Ok(c) = Client::connect_with(
            &server.addr,
            "localhost",
            &server.connector,
            Duration::from_secs(30),
        )
        .and_then(|mut c| c.resume(user, token).map(|_| c))
        {
            locked(&back).push(c);
        }
    });
    let back_s = t0.elapsed().as_secs_f64();
    let back = back.into_inner().unwrap_or_else(|e| e.into_inner());
    let failed = credentials.len() - back.len();
    // The server's view: everyone who came back is online in `general`.
    let mut observer = server.client();
    let _ = observer.register("observer", PW);
    let online = observer
        .who_page("general", None, Some(1))
        .map_or(0, |p| p.online as usize);
    let correct = online == back.len() + 1;
    json!({"scenario": "restart", "clients": before, "restart_seconds": (restart_s * 100.0).round() / 100.0,
           "back": back.len(), "failed": failed,
           "all_back_seconds": (back_s * 100.0).round() / 100.0,
           "resumed_per_s": (back.len() as f64 / back_s).round(),
           "online_in_general": online, "online_state_correct": correct})
}

/// Login latency on an empty database and on one with `messages` stored
/// messages (room messages and DMs, all read and delivered): the login
/// path must not grow with history. `logins` password logins each.
pub fn login_history(
    empty: &BenchServer,
    full: &BenchServer,
    messages: usize,
    logins: usize,
) -> Value {
    let fill_start = Instant::now();
    fill_history(full, messages);
    let fill_s = fill_start.elapsed().as_secs_f64();
    let _ = empty.client().register("reader", PW);
    // The full server indexes what the fill stored when it goes idle: let
    // it finish before measuring (a login at a time, until one is quick).
    let settle = Instant::now() + Duration::from_secs(30);
    while Instant::now() < settle {
        let mut c = full.client();
        let t = Instant::now();
        c.login("reader", PW).expect("login");
        if t.elapsed() < Duration::from_millis(2) {
            break;
        }
    }
    // Interleaved, one login on each server in turn (which one first
    // alternates), so the machine's slow moments fall on both alike.
    let login = |server: &BenchServer| -> u64 {
        let mut c = server.client();
        let t = Instant::now();
        c.login("reader", PW).expect("login");
        t.elapsed().as_micros() as u64
    };
    let (mut on_empty, mut on_full) = (Vec::with_capacity(logins), Vec::with_capacity(logins));
    for i in 0..logins {
        if i % 2 == 0 {
            on_empty.push(login(empty));
            on_full.push(login(full));
        } else {
            on_full.push(login(full));
            on_empty.push(login(empty));
        }
    }
    json!({"scenario": "login-history", "messages": messages, "logins": logins,
           "fill_seconds": (fill_s * 10.0).round() / 10.0,
           "empty": summary(on_empty), "full": summary(on_full)})
}

/// Stores `n` messages through the server: 9 in 10 to `general`, 1 in 10
/// direct messages between two users, pipelined by 4 senders.
fn fill_history(server: &BenchServer, n: usize) {
    let mut reader = server.client();
    let _ = reader.register("reader", PW);
    drop(reader);
    let per = n / 4;
    std::thread::scope(|s| {
        for t in 0..4 {
            s.spawn(move || {
                let mut c = server.client();
                let _ = c.register(&format!("filler{t}"), PW);
                let body = "an old message about nothing in particular";
                let mut batch = Vec::new();
                let mut sent = 0;
                while sent < per {
                    batch.clear();
                    let k = (per - sent).min(500);
                    for i in 0..k {
                        let request = if (sent + i) % 10 == 0 {
                            Request::Dm {
                                to: "reader".into(),
                                body: body.into(),
                                reply_to: None,
                                notice: false,
                            }
                        } else {
                            Request::Say {
                                room: "general".into(),
                                body: body.into(),
                                reply_to: None,
                                notice: false,
                            }
                        };
                        batch.extend_from_slice(&encode_json(&ClientFrame {
                            req: Some((sent + i) as u64 + 1),
                            request,
                        }));
                    }
                    send_and_await_acks(&mut c, &batch, k);
                    sent += k;
                }
            });
        }
    });
    // Everything is delivered and read, as after a long-running server:
    // each login replays at most 1,000 offline DMs and moves the cursor.
    let mut r = loop {
        let mut r = server.client();
        if r.login("reader", PW).expect("login").offline_dms == 0 {
            break r;
        }
    };
    let j = r.join("general").expect("join");
    if let Some(last) = j.history.last() {
        let _ = r.request(Request::MarkRead {
            room: Some("general".into()),
            with: None,
            id: last.id,
        });
    }
    for t in 0..4 {
        let with = format!("filler{t}");
        if let Ok((page, _)) = r.dm_history(&with, None, 1)
            && let Some(last) = page.last()
        {
            let _ = r.request(Request::MarkRead {
                room: None,
                with: Some(with),
                id: last.id,
            });
        }
    }
}

/// Sends a pipelined batch of `k` requests and waits until all `k` are
/// acked (the fill loops of login-history and search).
fn send_and_await_acks(c: &mut Client, batch: &[u8], k: usize) {
    c.send_frame(batch).expect("send");
    let mut acked = 0;
    while acked < k {
        c.drain_raw(&mut |json| {
            if is_ack(json) {
                acked += 1;
            }
        })
        .expect("acks");
        if acked < k {
            let _ = crate::poller::wait(c.raw_fd(), false, None, Some(Duration::from_millis(50)));
        }
    }
}

/// A small deterministic generator (xorshift64*), so every run searches
/// the same corpus.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A rank in `0..n`, small ranks far more often (roughly Zipf: the
    /// shape of words in chat).
    fn zipf(&mut self, n: usize) -> usize {
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        (((n as f64 + 1.0).powf(u) - 1.0) as usize).min(n - 1)
    }
}

/// Word `rank` of the corpus's vocabulary: a pronounceable made-up word.
fn word(rank: usize) -> String {
    const SYL: [&str; 16] = [
        "ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "de", "fu", "ga", "hi", "jo", "pe", "qu",
        "zi",
    ];
    let mut n = rank + 16;
    let mut w = String::new();
    while n > 0 {
        w.push_str(SYL[n % 16]);
        n /= 16;
    }
    w
}

/// Search latency on a database of `messages` messages in `rooms` rooms
/// (bodies of 6-14 words from a 20,000-word vocabulary, Zipf-distributed):
/// two-word queries with a room filter and without, and one frequent word,
/// `queries` of each; plus the rate the messages were stored at while
/// filling (the search index is kept in step by every insert).
pub fn search(server: &BenchServer, messages: usize, rooms: usize, queries: usize) -> Value {
    const VOCABULARY: usize = 20_000;
    let room = |i: usize| format!("r{i:02}");
    let fillers = 4;
    // The searcher and the fillers are in every room.
    let mut searcher = server.user("searcher");
    for r in 0..rooms {
        searcher.create_room(&room(r), "").expect("create room");
    }
    drop(searcher);
    let fill_start = Instant::now();
    let per = messages / fillers;
    std::thread::scope(|s| {
        for t in 0..fillers {
            s.spawn(move || {
                let mut c = server.user(&format!("writer{t}"));
                for r in 0..rooms {
                    c.join(&room(r)).expect("join");
                }
                let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (t as u64 + 1));
                let mut batch = Vec::new();
                let mut sent = 0;
                while sent < per {
                    batch.clear();
                    let k = (per - sent).min(500);
                    for i in 0..k {
                        let words = 6 + (rng.next() % 9) as usize;
                        let body: Vec<String> =
                            (0..words).map(|_| word(rng.zipf(VOCABULARY))).collect();
                        batch.extend_from_slice(&encode_json(&ClientFrame {
                            req: Some((sent + i) as u64 + 1),
                            request: Request::Say {
                                room: room((rng.next() % rooms as u64) as usize),
                                body: body.join(" "),
                                reply_to: None,
                                notice: false,
                            },
                        }));
                    }
                    send_and_await_acks(&mut c, &batch, k);
                    sent += k;
                }
            });
        }
    });
    let fill_s = fill_start.elapsed().as_secs_f64();
    // A fresh session: the first one, a member of every room, was not
    // reading the fill's deliveries and is cut off as a slow consumer.
    let mut searcher = server.user("searcher");
    let mut rng = Rng(42);
    let mut run = |make: &mut dyn FnMut(&mut Rng) -> String| -> Value {
        let mut lat = Vec::with_capacity(queries);
        let mut hits = 0;
        for _ in 0..queries {
            let q = make(&mut rng);
            let t = Instant::now();
            let (found, _) = searcher.search(&q, None, Some(20)).expect("search");
            lat.push(t.elapsed().as_micros() as u64);
            hits += found.len();
        }
        let mut v = summary(lat);
        v["mean_results"] = json!(hits / queries.max(1));
        v
    };
    // Words of middling frequency (ranks 50-2,000): what people search for.
    let mid = |rng: &mut Rng| word(50 + rng.zipf(1950));
    let with_room = run(&mut |rng| {
        format!(
            "{} {} in:#{}",
            mid(rng),
            mid(rng),
            room((rng.next() % rooms as u64) as usize)
        )
    });
    let two_words = run(&mut |rng| format!("{} {}", mid(rng), mid(rng)));
    let common = run(&mut |rng| word(rng.zipf(20)));
    let prefix = run(&mut |rng| format!("{}*", &word(50 + rng.zipf(1950))[..4]));
    json!({"scenario": "search", "messages": messages, "rooms": rooms, "queries": queries,
           "fill_seconds": (fill_s * 10.0).round() / 10.0,
           "fill_msgs_per_s": (messages as f64 / fill_s).round(),
           "two_words_in_room": with_room, "two_words": two_words,
           "one_common_word": common, "prefix": prefix})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{ChatMessage, ServerFrame, ServerMsg};

    #[test]
    fn timestamps_and_acks_are_found_in_real_frames_without_decoding() {
        let event = serde_json::to_vec(&ServerFrame::event(ServerMsg::Message(Box::new(
            ChatMessage {
                id: 9,
                room: Some("general".into()),
                to: None,
                from: "recv3".into(),
                body: "t=123456 s=3 n=7 xxxx".into(),
                ts: 1,
                file: None,
                reply_to: None,
                edited_at: None,
                deleted: false,
                reactions: Vec::new(),
                kind: Default::default(),
                notice: false,
            },
        ))))
        .unwrap();
        assert_eq!(sent_at(&event), Some(123456));
        assert!(!is_ack(&event));
        let ack = serde_json::to_vec(&ServerFrame::reply(
            Some(4),
            ServerMsg::Ack {
                id: 9,
                ts: 1,
                away: None,
            },
        ))
        .unwrap();
        assert_eq!(sent_at(&ack), None);
        assert!(is_ack(&ack));
    }
}
