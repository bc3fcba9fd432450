//! `confab-bench`: runs load scenarios against real servers and prints one
//! JSON line per scenario; with `--out`, also writes a Markdown report
//! (what `make bench` does for docs/BENCHMARKS.md).

use clap::Parser;
use confab::bench::{self, BenchServer, Fanout};
use serde_json::Value;
use std::path::PathBuf;
use std::process::ExitCode;

/// Command-line arguments.
#[derive(Debug, Parser)]
#[command(name = "confab-bench", about = "Load scenarios for confab-server")]
struct Args {
    /// Scenarios: fanout, fanout-fast, fanout-irc, fanout-irc-fast, burst, store, idle, connect,
    /// login-storm, history, upload, crowd, storm-crowded, restart,
    /// login-history, search, cluster, cluster-fast, store-postgres
    /// (default: all; the last three start a PostgreSQL cluster with
    /// pg_virtualenv).
    scenarios: Vec<String>,
    /// The server binary to start for each scenario.
    #[arg(long, default_value = "target/release/confab-server")]
    server: PathBuf,
    /// Directory with ca.pem, server.pem, server.key (made if absent).
    #[arg(long)]
    certs: Option<PathBuf>,
    /// Smaller sizes, for a smoke run.
    #[arg(long)]
    quick: bool,
    /// Write a Markdown report here.
    #[arg(long)]
    out: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("confab-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

const ALL: &[&str] = &[
    "fanout",
    "fanout-fast",
    "fanout-irc",
    "fanout-irc-fast",
    "burst",
    "store",
    "idle",
    "connect",
    "login-storm",
    "history",
    "upload",
    "crowd",
    "storm-crowded",
    "restart",
    "login-history",
    "search",
    "cluster",
    "cluster-fast",
    "store-postgres",
];

fn run(args: &Args) -> Result<(), String> {
    let certs = args.certs.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("confab-bench-certs-{}", std::process::id()))
    });
    // Made if absent, as --help says (kept if present).
    if !certs.join("server.pem").exists() {
        let status = std::process::Command::new("sh")
            .arg("certs/gen-certs.sh")
            .arg(&certs)
            .stdout(std::process::Stdio::null())
            .status()
            .map_err(|e| format!("certs/gen-certs.sh: {e}"))?;
        if !status.success() {
            return Err(format!("certs/gen-certs.sh {} failed", certs.display()));
        }
    }
    let scenarios: Vec<String> = if args.scenarios.is_empty() {
        ALL.iter().map(|s| s.to_string()).collect()
    } else {
        args.scenarios.clone()
    };
    let q = args.quick;
    let cheap = ["--password-iterations", "1000"];
    let mut results: Vec<(String, Value)> = Vec::new();
    for name in &scenarios {
        let start = |extra: &[&str]| BenchServer::start(&args.server, &certs, extra);
        let result = match name.as_str() {
            "fanout" | "fanout-fast" => {
                let s = start(&[&cheap[..], &["--max-sessions", "512"]].concat())?;
                bench::fanout(&s, &paced_room(q, name == "fanout-fast", false))
            }
            "fanout-irc" | "fanout-irc-fast" => {
                // The same room over the IRC listener: every member an IRC
                // client (PASS login, echo-message as its acks).
                let irc = ["--irc-listen", "127.0.0.1:0", "--max-sessions", "512"];
                let s = start(&[&cheap[..], &irc[..]].concat())?;
                bench::fanout(&s, &paced_room(q, name == "fanout-irc-fast", true))
            }
            "burst" => {
                let s = start(&[&cheap[..], &["--max-sessions", "512"]].concat())?;
                let p = Fanout {
                    clients: if q { 10 } else { 200 },
                    senders: if q { 2 } else { 20 },
                    messages: if q { 20 } else { 200 },
                    rate: None,
                    burst: true,
                    irc: false,
                    room: "general",
                };
                bench::fanout(&s, &p)
            }
            "store" => {
                // Storage alone: 20 senders pipeline into a room nobody
                // else reads, so the writer (group commit) is what is tested.
                let s = start(&[&cheap[..], &["--max-sessions", "64"]].concat())?;
                let p = Fanout {
                    clients: 0,
                    senders: 20,
                    messages: if q { 20 } else { 5000 },
                    rate: None,
                    burst: true,
                    irc: false,
                    room: "general",
                };
                bench::fanout(&s, &p)
            }
            "idle" => {
                let n = if q { 50 } else { 5000 };
                let slots = (n + 16).to_string();
                let s = start(&[&cheap[..], &["--max-sessions", &slots]].concat())?;
                bench::idle(&s, n)
            }
            "connect" => {
                let s = start(&[&cheap[..], &["--max-sessions", "64"]].concat())?;
                bench::connect(&s, if q { 50 } else { 2000 }, 8)
            }
            "login-storm" => {
                // The real PBKDF2 cost (600,000 iterations) for the storm.
                let s = start(&["--max-sessions", "512", "--hash-threads", "1"])?;
                bench::login_storm(&s, if q { 4 } else { 100 })
            }
            "history" => {
                let s = start(&cheap)?;
                bench::history(&s, if q { 20 } else { 1000 })
            }
            "upload" => {
                let s = start(&[&cheap[..], &["--max-sessions", "512"]].concat())?;
                bench::upload(&s)
            }
            "crowd" => {
                let sizes: &[usize] = if q {
                    &[10, 50]
                } else {
                    &[100, 1000, 3000, 10_000]
                };
                let mut steps = Vec::new();
                for &n in sizes {
                    let slots = (n + 64).to_string();
                    let s = start(
                        &[
                            &cheap[..],
                            &["--max-sessions", &slots, "--queue-limit", &slots],
                        ]
                        .concat(),
                    )?;
                    let step = bench::crowd_step(&s, n, std::time::Duration::from_secs(120));
                    eprintln!("crowd {n}: {step}");
                    steps.push(step);
                }
                let largest = steps.last().cloned().unwrap_or_default();
                serde_json::json!({"scenario": "crowd", "steps": steps, "largest": largest})
            }
            "storm-crowded" => {
                let s = start(
                    &[
                        &cheap[..],
                        &["--max-sessions", "3500", "--queue-limit", "3500"],
                    ]
                    .concat(),
                )?;
                let (online, k, chat) = if q { (20, 20, 10) } else { (3000, 2000, 200) };
                bench::storm_crowded(&s, online, k, chat)
            }
            "restart" => {
                let mut s = start(
                    &[
                        &cheap[..],
                        &["--max-sessions", "5100", "--queue-limit", "5100"],
                    ]
                    .concat(),
                )?;
                bench::restart(&mut s, if q { 20 } else { 5000 })
            }
            "login-history" => {
                let empty = start(&cheap)?;
                let full = start(&cheap)?;
                let (messages, logins) = if q { (2_000, 20) } else { (1_000_000, 2_000) };
                let v = bench::login_history(&empty, &full, messages, logins);
                let p99 = |k: &str| v[k]["p99_ms"].as_f64().unwrap_or(0.0);
                let mut v = v.clone();
                v["p99_ratio"] = serde_json::json!(
                    ((p99("full") / p99("empty").max(0.001)) * 100.0).round() / 100.0
                );
                v
            }
            "search" => {
                let s = start(
                    &[
                        &cheap[..],
                        &["--max-rooms-per-user", "200", "--max-rooms-created", "200"],
                    ]
                    .concat(),
                )?;
                let (messages, rooms, queries) = if q {
                    (5_000, 10, 50)
                } else {
                    (1_000_000, 100, 300)
                };
                bench::search(&s, messages, rooms, queries)
            }
            "cluster" | "cluster-fast" => {
                // Two nodes on one PostgreSQL, the room's members split
                // between them.
                let fast = name == "cluster-fast";
                let pg = bench::Postgres::start()?;
                let extra = [&cheap[..], &["--max-sessions", "512", "--db", &pg.url]].concat();
                let a = start(&extra)?;
                let b = start(&extra)?;
                let v = bench::fanout_on_nodes(&[&a, &b], &paced_room(q, fast, false));
                drop((a, b));
                v
            }
            "store-postgres" => {
                let pg = bench::Postgres::start()?;
                let s = start(&[&cheap[..], &["--max-sessions", "64", "--db", &pg.url]].concat())?;
                let p = Fanout {
                    clients: 0,
                    senders: 20,
                    messages: if q { 20 } else { 5000 },
                    rate: None,
                    burst: true,
                    irc: false,
                    room: "general",
                };
                let v = bench::fanout(&s, &p);
                drop(s);
                v
            }
            other => {
                return Err(format!(
                    "unknown scenario {other}; known: {}",
                    ALL.join(", ")
                ));
            }
        };
        println!("{result}");
        results.push((name.clone(), result));
    }
    if let Some(out) = &args.out {
        let server = server_version(&args.server);
        std::fs::write(out, report(&results, q, &server))
            .map_err(|e| format!("{}: {e}", out.display()))?;
        eprintln!("wrote {}", out.display());
    }
    Ok(())
}

/// The paced 200-member room (`fanout`, its IRC and cluster variants): 20
/// senders at 200 msgs/s, or 1,000 when `fast`; small when `quick`.
fn paced_room(quick: bool, fast: bool, irc: bool) -> Fanout {
    Fanout {
        clients: if quick { 10 } else { 200 },
        senders: if quick { 2 } else { 20 },
        messages: match (quick, fast) {
            (true, _) => 20,
            (false, false) => 100,
            (false, true) => 250,
        },
        rate: Some(if fast { 1000.0 } else { 200.0 }),
        burst: false,
        irc,
        room: "general",
    }
}

/// The issue's targets against what was measured.
fn targets(results: &[(String, Value)]) -> String {
    let get = |name: &str, path: &[&str]| -> Option<f64> {
        let (_, v) = results.iter().find(|(n, _)| n == name)?;
        let mut v = v;
        for p in path {
            v = v.get(*p)?;
        }
        v.as_f64()
    };
    let rows: Vec<(&str, &str, Option<f64>, f64, bool)> = vec![
        (
            "200-member room, 200 msgs/s: p99 latency (ms)",
            "≤ 1",
            get("fanout", &["latency", "p99_ms"]),
            1.0,
            true,
        ),
        (
            "200-member room, 1,000 msgs/s: p99 latency (ms)",
            "≤ 2",
            get("fanout-fast", &["latency", "p99_ms"]),
            2.0,
            true,
        ),
        (
            "over IRC, 200-member room, 1,000 msgs/s: p99 latency (ms)",
            "≤ 5",
            get("fanout-irc-fast", &["latency", "p99_ms"]),
            5.0,
            true,
        ),
        (
            "1,000 msgs/s: server CPU per delivery (µs)",
            "≤ 2.5",
            get("fanout-fast", &["server_cpu_us_per_delivery"]),
            2.5,
            true,
        ),
        (
            "burst of 4,000 messages: deliveries/s",
            "≥ 2,500,000",
            get("burst", &["deliveries_per_s"]),
            2_500_000.0,
            false,
        ),
        (
            "stored messages per second",
            "≥ 50,000",
            get("store", &["stored_msgs_per_s"]),
            50_000.0,
            false,
        ),
        (
            "two nodes, 200-member room split, 1,000 msgs/s: cross-node p99 (ms)",
            "≤ 10",
            get("cluster-fast", &["cross_node_latency", "p99_ms"]),
            10.0,
            true,
        ),
        (
            "stored messages per second on PostgreSQL",
            "≥ 20,000",
            get("store-postgres", &["stored_msgs_per_s"]),
            20_000.0,
            false,
        ),
        (
            "idle: RSS per session (KiB)",
            "≤ 34",
            get("idle", &["rss_kib_per_session"]),
            34.0,
            true,
        ),
        (
            "idle: CPU (% of a core)",
            "< 1",
            get("idle", &["idle_cpu_percent_of_a_core"]),
            1.0,
            true,
        ),
        (
            "resumed sessions per second",
            "≥ 2,000",
            get("connect", &["resumed_per_s"]),
            2000.0,
            false,
        ),
        (
            "100 password logins: chat p99 moves by (ms)",
            "< 2",
            get("login-storm", &["p99_moved_ms"]),
            2.0,
            true,
        ),
        (
            "10,000 clients log in and join one room: setup (s)",
            "≤ 15",
            get("crowd", &["largest", "setup_s"]),
            15.0,
            true,
        ),
        (
            "... of which failed",
            "0",
            get("crowd", &["largest", "failed"]),
            0.0,
            true,
        ),
        (
            "... server CPU per login at 10,000 online (ms)",
            "≤ 1",
            get("crowd", &["largest", "server_cpu_ms_per_login"]),
            1.0,
            true,
        ),
        (
            "storm with 3,000 online: resumed sessions/s",
            "≥ 2,000",
            get("storm-crowded", &["resumed_per_s"]),
            2000.0,
            false,
        ),
        (
            "storm with 3,000 online: registrations/s",
            "≥ 1,500",
            get("storm-crowded", &["registered_per_s"]),
            1500.0,
            false,
        ),
        (
            "storm with 3,000 online: chat p99 in a busy room, 200 msgs/s (ms)",
            "≤ 5",
            get("storm-crowded", &["chat_p99_ms_during_storm"]),
            5.0,
            true,
        ),
        (
            "5,000 resumes after a restart: all back (s)",
            "≤ 5",
            get("restart", &["all_back_seconds"]),
            5.0,
            true,
        ),
        (
            "login p99 with 1,000,000 messages / empty",
            "≤ 1.1",
            get("login-history", &["p99_ratio"]),
            1.1,
            true,
        ),
        (
            "search p99, two words in one room, 1,000,000 messages (ms)",
            "≤ 20",
            get("search", &["two_words_in_room", "p99_ms"]),
            20.0,
            true,
        ),
        (
            "search p99, two words, no filter, 1,000,000 messages (ms)",
            "≤ 50",
            get("search", &["two_words", "p99_ms"]),
            50.0,
            true,
        ),
        (
            "upload over loopback TLS (MB/s)",
            "≥ 200",
            get("upload", &["mb_per_s"]),
            200.0,
            false,
        ),
    ];
    let mut md = String::from(
        "\n## Against the targets\n\n| figure | target | measured | |\n|---|---|---|---|\n",
    );
    for (what, target, measured, bound, at_most) in rows {
        let (m, verdict) = match measured {
            Some(m) => {
                let ok = if at_most { m <= bound } else { m >= bound };
                (format!("{m}"), if ok { "met" } else { "missed" })
            }
            None => ("not run".into(), ""),
        };
        md.push_str(&format!("| {what} | {target} | {m} | {verdict} |\n"));
    }
    md.push_str(
        "\n**How the fan-out is measured.** 200 members in #general; 20 of them also send, each at a twentieth \
         of the offered rate, staggered so that the offered rate is even; every message reaches the 199 other \
         members (as in the IRC servers' figures in the issue). Two load-generator threads serve 100 members each \
         from one epoll set and read frames raw (a timestamp scan, no JSON decoding). Until 2026-11-25 all 20 \
         senders fired at the same tick, i.e. 20-message bursts every 100 ms, which inflated the p99 at \
         \"200 msgs/s\"; the figures below and in the table use the even pacing.\n\n\
         **Over IRC** (`fanout-irc`, `fanout-irc-fast`): the same room, pacing and measurement with every member \
         an IRC client on the IRC listener (TLS, `PASS` login, `echo-message`, whose echo counts as the ack), \
         reading lines raw. By hand on 2026-12-03: 200 msgs/s p50 1.6 ms, p99 6.9 ms; 1,000 msgs/s p50 \
         2.6-2.7 ms, p99 8.6-10.5 ms in three runs at 4.5 µs of server CPU per delivery, nothing lost; confab's \
         own protocol in the same hour: 1,000 msgs/s p99 9.0 and 10.8 ms at 4.6 µs. (That day's `make bench` \
         gave 36.7 ms once, max 91 ms, between those runs: this VM's noise at saturation.) So IRC costs the \
         server what confab's protocol does (one encoding per wire format and style, then the same direct \
         delivery); issue 19's 5 ms p99 at 1,000 msgs/s is missed for the same reason as issue 16's: the two \
         cores are saturated by the server and the load generator together.\n\n\
         **What changed, and what holds the fan-out back.** Each session has its own thread (the design's \
         `threadpool`). Deliveries used to be queued in the recipient's outbox and its thread woken to write them: \
         a wake-up and two context switches per delivery, which dominated the server's profile. Now a sleeping \
         session leaves its connection in its outbox, and the message writer plus one delivery helper per extra \
         core write committed messages straight to the sleeping sessions' sockets (ARCHITECTURE.md). Measured by \
         hand on 2026-11-25 with this load generator on the same machine, two runs each, server at e727664 \
         (before) and with direct delivery and the hub's faster hashing (after), `confab-bench --server <binary> fanout fanout-fast \
         burst`: 200 msgs/s p99 3.9-4.9 ms -> 2.9-3.2 ms and server CPU 17.7-20.7 -> 9.0-10.1 µs per delivery; \
         1,000 msgs/s p99 12.6-13.0 -> 7.0-7.4 ms and 6.6 -> 4.8 µs per delivery; burst 1.8-2.2 -> 2.3-2.4 M \
         deliveries/s and 0.55 -> 0.44 µs.\n\n\
         What is left is the kernel's TCP work: in a `perf record -a -g` of `confab-bench fanout-fast` (by hand, \
         2026-11-25; hardware counters are not available on this VM), 65% of the writer's and delivery helper's \
         samples are in the kernel (tcp_sendmsg, __tcp_transmit_skb, tcp_v4_rcv, the wake-up of the receiving \
         thread), 15% in OpenSSL, 10% in libc and 8% in confab. On loopback the receiver's TCP processing runs in \
         the sender's context, so it is charged to the server here; on a network it is the client machine's. At \
         1,000 msgs/s the server's ~4.8 µs and the load generator's ~4.9 µs per delivery, times 200,000 \
         deliveries/s, make 1.9 of the 2 cores busy: the p99 there is queueing on a saturated machine. At 200 \
         msgs/s each message is written alone to 199 sockets by two threads (about 1 ms each) and each write \
         wakes a sleeping generator thread, hence ~9 µs per delivery and a p99 near 3 ms. What would lift it: \
         a load generator on another machine (or pinned to its own cores), so that the server's figures are the \
         server's; on this machine, less kernel work per delivery needs fewer, larger writes, i.e. batching \
         messages for a few hundred microseconds, which trades latency for CPU.\n",
    );
    if let (Some(s), Some(b)) = (
        get("burst", &["server_cpu_us_per_delivery"]),
        get("burst", &["bench_cpu_us_per_delivery"]),
    ) {
        md.push_str(&format!(
            "\n**The burst** keeps both cores busy: {s} µs of server CPU and {b} µs of load-generator CPU per delivery, \
             so at these costs 2 cores carry at most about {} deliveries/s in this setup; 2.5 M/s needs the two \
             together under 0.8 µs. The generator cost 1.33 µs per delivery while it decoded every message's JSON \
             (serde's internally tagged enums buffer each object); scanning raw frames brought it to ~0.36 µs, and \
             hashing the hub's id-keyed maps with one multiplication instead of SipHash took the server from 0.53 \
             to ~0.45 µs, and queueing each run of consecutive messages to a room with one push per recipient \
             (not one per message) to ~0.34 µs (2.9-3.0 M deliveries/s in two runs by hand). Runs vary by about ±15% on this VM.\n",
            (2e6 / (s + b)).round()
        ));
    }
    md.push_str(
        "\n**Idle memory.** Measured by hand on 2026-11-25 from /proc/<pid>/smaps with 2,000 logged-in idle \
         sessions: each session's thread stack grew by 16.8 KiB, most of it a 16 KiB read array on the stack; \
         reads now go straight into the frame decoder's buffer, which is freed (with the write buffers) before an \
         idle sleep: 4.8 KiB of stack per session, and 64.6 -> 46.5 KiB RSS per session in `confab-bench idle`. \
         What remains is 30-37 KiB of heap per session (it varies with how allocations land in glibc's arenas), of which OpenSSL's connection state is the largest known \
         part (heaptrack: ~7 KiB from CRYPTO_zalloc per connection); OpenSSL's 16 KiB record buffers are already \
         released while idle (rust-openssl's `SslAcceptor`, which native-tls uses, sets SSL_MODE_RELEASE_BUFFERS). \
         Not counted in the per-session figure: `threadpool` starts all `max_sessions` worker threads at start-up, \
         about 9 KiB RSS each while unused. Reaching 34 KiB needs fewer threads than sessions (several sessions \
         per poll loop), which the design's thread-per-session pool rules out.\n\n\
         Again by hand on 2026-12-03 (server at 8090d8f; 2,000 idle sessions from a Python TLS client, \
         /proc/<pid>/smaps; 500 under heaptrack): 44.6 KiB per session, of which the session thread's stack \
         mapping is 15.6 KiB resident (the same for a pool thread that never served anyone: its TLS block, thread \
         descriptor and the loop's frames; a trial that gave back the stack pages below the sleeping frame with \
         `madvise(MADV_DONTNEED)` freed nothing and was dropped), and about 29 KiB of heap, ~27.6 KiB of it \
         OpenSSL's (heaptrack peaks: 15 KiB from libssl, 13 KiB from CRYPTO_zalloc per session) and ~2 KiB \
         confab's own; `malloc_trim(0)` on the live server gave back 0.8 MiB in all, so it is not glibc \
         fragmentation. The remaining lever is OpenSSL's per-connection state, which native-tls does not let us \
         tune (session cache, record layer), or fewer threads than sessions.\n\n\
         **That last reading was wrong** (2026-12-08): glibc's own count, `malloc_stats()` called with gdb in a \
         server holding `confab-bench idle`'s 5,000 sessions, gave 208 MB \"in use\" in the arenas, about 40 KiB \
         per session, where heaptrack's peak of live allocations was far lower. The difference is glibc's \
         per-thread cache (tcache): each thread keeps up to 7 freed chunks of every size up to 1,032 bytes, \
         which malloc counts as in use and `malloc_trim` cannot return, and each of 5,000 session threads \
         sleeps with the cache its login filled (TLS handshake, SQLite, JSON). With `GLIBC_TUNABLES` by hand, \
         `confab-bench idle`: 48.1 KiB per session with glibc's defaults, 37.0 with `tcache_count=1`, 41.9 with \
         2, 25.1-25.4 with the cache off (`tcache_count=0`), 31.8 with `tcache_max=256` and 26.1-26.5 with \
         `tcache_max=64` (only chunks up to 64 bytes cached). A/B of the server alone, two runs each: with \
         `tcache_max=64` a resumed session cost 0.68-0.70 ms of server CPU against 0.60-0.64 (cache off: \
         0.73-0.74) and `store` 7.6-8.0 µs a message against 6.7-7.6; `fanout-fast`, `burst` and `crowd` moved \
         within their noise. The server now runs with `glibc.malloc.tcache_max=64`: it sets the tunable and \
         runs itself again at start-up (`server::allocator`; an operator's own tcache tunable is kept).\n",
    );
    if let (Some(s), Some(b)) = (
        get("connect", &["server_cpu_ms_per_resumed_session"]),
        get("connect", &["bench_cpu_ms_per_resumed_session"]),
    ) {
        md.push_str(&format!(
            "\n**Connections** cost {s} ms of server CPU and {b} ms of load-generator CPU each (TLS handshake on both \
             sides, a front-door thread, the resume lookup); with both on the same 2 cores that caps the rate near \
             {} sessions/s. A 5,000-client reconnect after a restart takes about {} s at the measured rate.\n",
            (2000.0 / (s + b)).round(),
            get("connect", &["resumed_per_s"]).map_or(0.0, |r| (5000.0 / r * 10.0).round() / 10.0)
        ));
    }
    md.push_str(
        "\n**How `connect` sets up.** One account (`conn`), made once; each of the k sessions is a new TLS \
         connection that resumes with its token (then, in a second pass, logs in with the password) and ends. \
         The account is in `general` alone, so the figure is the cost of a handshake and a login, not of a crowd: \
         `crowd` measures that.\n\n\
         **How `crowd` sets up.** For each size n, a fresh server with n + 64 session slots; 8 threads connect n \
         new clients, each registers (which puts it in `general`, the room everyone is in) and joins `general` as \
         the TUI does at login, and stays connected. The figures are the setup's wall time, the server's CPU per \
         login (TLS handshake, PBKDF2 at 1,000 iterations, the account's rows, the join), the `joined` reply's \
         size and the server's RSS with everyone connected. Presence: rooms up to `presence_room_limit` (1,000) \
         members get per-user presence, coalesced over 50 ms into one push per member; larger rooms get none and \
         list at most 100 members in `joined` (online first) with counts, paging the rest with `who`. Before (the server at b6ecc3b, the start of this session, measured by hand on 2026-12-02 with this \
         generator: `confab-bench --server <old binary> crowd login-history`), every login sent presence to \
         every online member of `general`, each a wake-up, and `joined` carried the whole member list: 1,000 \
         clients took 23.2 s at 37.1 ms of server CPU per login (now 1.5-2.2 s at 1.6-2.4 ms), 3,000 got only \
         2,300 in within 120 s at 64.4 ms per login (now all 3,000 in 4.0-6.5 s at 1.4-2.5 ms), 10,000 got \
         2,153 in (now all 10,000), and the `joined` reply grew to 37 KB (now at most 3.6 KB). Until 2026-12-03 \
         the 10,000 step stopped at 9,988 sessions on this machine: each session held two descriptors (its socket \
         and its waker's eventfd) under a hard open-file limit of 20,000 that the server may not raise (no \
         CAP_SYS_RESOURCE), and the last 12 waited for the 120 s deadline. Sessions are now woken by a signal \
         (`poller::ThreadWaker`), one descriptor each: all 10,000 in, 0 failed, in 15.9 and 17.7 s in two runs \
         that day (target 15 s), at 1.67-1.86 ms of server CPU per login (`make bench` that day: 17.3 s, 1.8 ms). In a `perf record -a` of one `crowd` \
         run that day, the front-door threads' TLS handshakes (libcrypto) were the largest server cost and \
         `Hub::join` (the `joined` page's walk over the member list) the largest of confab's own, about an \
         eighth of the session threads' CPU; each room now keeps its online count, so the page stops walking \
         once full (4 runs after that change: 15.8-24.2 s at 1.55-2.15 ms per login at 10,000, the same as \
         before within this VM's noise that afternoon). Server CPU per login over three runs: 1.3-1.6 ms at 100 clients, 1.6-2.4 ms at 1,000, 1.4-2.5 ms at \
         3,000 and 1.45-2.6 ms at 10,000: flat within this machine's noise, where it was 5, 37, 64 and 19 ms \
         (the last with only 2,153 in) before, but above the 1 ms target. On 2026-12-08 a `perf record -a` of `crowd` showed \
         two costs of moving a login between threads, both larger on this VM than the work they carry (a \
         wake-up on the other core is an inter-processor interrupt, i.e. a VM exit): each connection's \
         front-door thread was started and ended (`clone3`, `mmap`/`mprotect` of its stack, glibc's \
         `madvise` of the stack at exit with its TLB shoot-down), and each password was handed to a `pbkdf2` \
         thread and the result handed back. Front-door threads are now kept between connections \
         (`spare_threads`), and a session hashes on its own thread under one of `hash_threads` permits (the \
         same bound on cores hashing at once). A/B by hand that day, two runs each, \
         `confab-bench --server <binary> crowd connect storm-crowded`: server CPU per login at 10,000 online \
         1.29 and 1.43 -> 1.15 and 1.15 ms (setup 12.2 and 13.0 -> 11.4 and 11.5 s), per resumed session \
         0.77 and 0.80 -> 0.68 and 0.67 ms, resumed sessions/s in the storm 1,230 and 1,119 -> 1,360 and \
         1,223, registrations/s 939 and 950 -> 989 and 1,001. What is left per login is the TLS handshake \
         (~0.35 ms, OpenSSL 3.0 on the front-door thread), PBKDF2 at 1,000 iterations (~0.12 ms), half a \
         dozen SQLite statements and the replies' TCP sends (on loopback the receiving side's TCP work is \
         charged to the sender). SQLite's `mmap_size` (reads without `pread`) was tried the same day: no \
         change in `crowd` beyond noise, and 1.7 KiB more RSS per idle session (the mapped file), so it was \
         left out.\n\n**How `storm-crowded` and `restart` set up.** `storm-crowded`: 3,000 clients join \
         `general` as in `crowd` and stay; then 8 threads make 2,000 new sessions that resume one account's \
         token, then 2,000 that register new accounts (each in `general`). Before (b6ecc3b, by hand): only \
         2,300 of the 3,000 got in, then 72 resumed sessions/s at 21.6 ms of server CPU each and 8 \
         registrations/s at 206 ms each, every login waking the whole room; now 846-1,047 resumed/s at \
         0.86-1.0 ms and 665-835 registrations/s at 1.2-1.6 ms, the same as with nobody online (`connect`). \
         `restart`: 5,000 clients register and stay online; the server gets SIGTERM and is started again on \
         the same database and port (0.7-0.9 s), and all 5,000 resume with their tokens at once from 8 \
         threads; an observer then checks that the server shows every one of them online (it did, in both \
         runs: 4.99 and 5.65 s until all were back). What caps both is the cost of a connection: a TLS \
         handshake on each side on the same 2 cores, ~0.85 ms of server CPU and ~0.9 ms of load-generator \
         CPU, as in `connect`. Since 2026-12-08 `storm-crowded` also measures chat during a storm (issue 15's \
         \"chat p99 ≤ 5 ms in a busy room at 200 msgs/s during the storm\"): with the 3,000 still online, 50 \
         members of a room `busy`, 5 of them sending 200 msgs/s in all for 5 s, once with nothing else going on \
         and once while 8 threads keep making sessions (resumes and registrations in turn) until the chat run \
         ends. The first run gave p99 1.9-2.3 ms quiet and 11.5-12.4 ms during the storm (three runs): the \
         storm's TLS handshakes took the cores from the chat. Front-door threads now run 10 nice levels below \
         the rest of the server, so that when both cores are busy the kernel runs chat first and handshakes \
         with what is left: A/B by hand, three runs each, `confab-bench --server <binary> storm-crowded`: \
         during the storm 11.5-12.4 -> 6.4-7.4 ms, with the storm going on at the same rate (919-962 and \
         894-979 sessions/s). What is left is mostly the load generator's own storm clients (their TLS \
         handshakes run on the same two cores at normal priority; on a network they would be other \
         machines') and the session threads' share of a login (PBKDF2, the account's rows). An `strace` of \
         the same run showed the session threads sleeping in SQLite's busy handler (190 sleeps of 100 ms in \
         12 s: SQLite's own backoff goes 1, 2, 5 ... 100 ms while another connection holds the write lock for \
         a few hundred µs); the store now retries after 20 µs, doubling up to 1 ms. The message writer was \
         never among the sleepers, so chat did not wait there; logins did: `crowd` by hand, two runs each, \
         10,000 in 12.2-12.8 -> 11.0-11.2 s, and chat during the storm 6.5 and 8.9 -> 5.6 and 6.8 ms (noise \
         is large at this size).\n\n**How `login-history` sets up.** Two servers: one empty, one filled \
         through the protocol with 1,000,000 messages by 4 pipelining senders (9 in 10 to `general`, 1 in 10 \
         DMs to the measured user), after which the user's offline DMs are delivered (logins until none are \
         left) and everything is marked read, as on a long-running server. Then, once a login on the filled server \
         is quick (its search index is built when it goes idle), 2,000 password logins on each, interleaved \
         (one on each server in turn, which one first alternating), so that the machine's slow moments fall \
         on both alike; until 2026-12-08 it was 300 on the empty one, then 300 on the full one, and the p99 \
         (the third-slowest login) moved by a few hundred µs from run to run. \
         Before (b6ecc3b): p50 0.61 / p99 1.61 ms empty against p50 39.6 / p99 56.7 ms with 1,000,000 \
         messages: the DM summary and the offline-DM replay read every DM the user had ever received. Now the \
         summary hops between senders through the (recipient, sender, id) index and the replay uses a \
         (recipient, id) index: p99 0.9-1.2 ms on 1,000,000 against 0.7-1.6 ms empty over two runs (ratios \
         1.24 and 0.75: noise of a few hundred µs on a sub-ms figure). \
         `login_path_queries_cost_the_same_on_a_long_history` in `make test` checks the same thing without \
         timing, by SQLite's step counts. Interleaved, 2,000 logins each (by hand on 2026-12-08, three runs, \
         one with SQLite's `mmap_size` on): p50 the same (0.37-0.40 ms on both), p99 0.66-0.69 ms empty \
         against 0.78-0.84 ms full (ratios 1.13-1.25). So about 0.1-0.17 ms of the slowest 1% of logins is \
         real and not explained yet: the statements take the same steps, so the suspects are the deeper \
         B-trees of a 1,000,000-row file and page-cache misses in the pool's connections.\n",
    );
    md.push_str(
        "\n**Search and its index** (`search`, and `store` with the index on). The fill stores 1,000,000 \
         messages (6-14 words from a 20,000-word Zipf vocabulary, 100 rooms) through the protocol; then 300 \
         queries of each kind, 20 results a page. Until 2026-12-02 an FTS5 insert trigger indexed each \
         message as it was stored, and `store` fell from ~92k to ~12k messages/s: FTS5 writes its pending \
         terms out at every statement savepoint, so each message became its own index segment (16k rows/s \
         through a trigger against 104k/s inserting the same rows directly, measured in Python's sqlite3 on \
         this SQLite 3.40). The writer now indexes in bulk, every 1,000 messages and when idle for 200 ms, \
         and a search indexes what is left first. By hand on 2026-12-02, three runs each of \
         `target/release/confab-bench store`: 58-64k messages/s with the index, 71-93k with indexing \
         switched off (a one-off build); the fill went from 8.9k to 28k messages/s. The same day's profile \
         also removed r2d2_sqlite's `SELECT 1` at every pool checkout and a byte-wise copy in the room \
         fan-out. On 2026-12-02 this VM ran the fan-out and burst scenarios slower than on 2026-11-28 (burst \
         1.0-1.5 M against 2.3 M deliveries/s): the 2eb1022 server of that report, rebuilt and run that day, \
         gave the same (burst 0.98 M deliveries/s, 200 msgs/s p99 10.7 ms), so compare figures within one \
         run.\n",
    );
    md.push_str(
        "\n**`store` corrected on 2026-12-02 (session 6).** Until then its 20 senders all wrote to \
         `general`, so each also received the other 19 senders' messages; a sender blocked writing its \
         5,000-message burst could not read them, and the server cut it off as too slow to read \
         (`disconnected: too slow to read` in its debug log). The figure divided 100,000 by the time of \
         the last ack, though only part had been sent and acked (5,944 and 7,524 acks in two checks), so \
         the store figures before this note (up to 96k/s) overstate it. Each sender now writes to a room \
         of its own, the report counts the acks it received, and the rate is acks over time: 49-67k \
         messages/s on SQLite in five runs by hand that day. PostgreSQL is the `store-postgres` row: \
         4.8k messages/s on 2026-12-02; on 2026-12-03 8.9k once statements were prepared once per \
         pooled connection, a batch became one statement and r2d2's test query at every checkout was \
         turned off, then 27-28k once a message no longer asked the database whether its sender was \
         muted (mutes are kept in memory).\n",
    );
    md.push_str(
        "\n**Cluster** rows (`cluster`, `cluster-fast`): two nodes on one PostgreSQL that the scenario \
         starts with `pg_virtualenv -t` (which sets `fsync = off`: commits cost no disk flush here), the \
         200 members alternating between the nodes, so half of every message's deliveries cross nodes: \
         commit on A, NOTIFY, B's watch reads the row, B fans out. Both nodes' writers take ids from \
         one counter row, so their commits alternate and nearly every batch also reads the other node's \
         rows below it. At 200 msgs/s the cross-node p99 is within issue 18's 10 ms; at 1,000 msgs/s \
         it is not (16.5-20 ms in two runs by hand on 2026-12-03), about what one SQLite node shows at \
         that rate on this machine (the `fanout-fast` row, 14-19 ms in five runs that day): two \
         servers, PostgreSQL and the load generator share two cores. A delivery stage separate from \
         the writer was tried that day (more, smaller batches) and was slower at 1,000 msgs/s; see \
         docs/SCALING.md.\n",
    );
    md.push_str(
        "\n**Upload** figures vary from run to run (167-205 MB/s over five runs by hand on 2026-11-25, against \
         189-230 MB/s in the first session's runs): the measured upload lasts about 0.14 s and includes SHA-256 on \
         both sides, the type checks and an fsync of the 25 MiB file, so a single run is within noise of the \
         200 MB/s target. Chat p99 during the upload does not move.\n",
    );
    md
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:").map(|v| v.trim().to_owned()))
        .unwrap_or_default();
    format!("{cores} cores ({cpu}), {mem} memory")
}

/// What the measured server binary says it is (`--version`: its release
/// and the commit it was built from), not what this checkout is.
fn server_version(server: &std::path::Path) -> String {
    std::process::Command::new(server)
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| format!("unknown ({} --version failed)", server.display()))
}

fn report(results: &[(String, Value)], quick: bool, server: &str) -> String {
    let date = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let mut md = format!(
        "# confab benchmarks\n\nWritten by `make bench` (`target/release/confab-bench --out docs/BENCHMARKS.md`{}).\n\n\
         - Machine: {}\n- Date: {date}\n- Server: {server} (from its `--version`)\n- Setup: a release `confab-server` started per scenario on a fresh temporary database, \
         TLS on loopback, the load generator on the same machine (it competes for the same cores). Every message is stored in SQLite before it is acked.\n\n\
         | scenario | figures | run it alone |\n|---|---|---|\n",
        if quick { " --quick" } else { "" },
        machine()
    );
    for (name, v) in results {
        let figures = match name.as_str() {
            "store" | "store-postgres" => format!(
                "{} messages pipelined by {} senders, each to a room of its own, {} acked: {} messages stored (and acked) per second, {} µs server CPU each",
                v["messages"],
                v["senders"],
                v["acked"],
                v["stored_msgs_per_s"],
                v["server_cpu_us_per_message"]
            ),
            "cluster" | "cluster-fast" => format!(
                "{} nodes on one PostgreSQL, {} clients split between them, {} senders, {} msgs offered at {}/s: \
                 cross-node p50 {} ms, p99 {} ms, max {} ms ({} deliveries); all deliveries p50 {} ms, p99 {} ms; \
                 {} µs CPU of both nodes per delivery (PostgreSQL's not counted), lost {}",
                v["nodes"],
                v["clients"],
                v["senders"],
                v["messages"],
                v["offered_msgs_per_s"],
                v["cross_node_latency"]["p50_ms"],
                v["cross_node_latency"]["p99_ms"],
                v["cross_node_latency"]["max_ms"],
                v["cross_node_latency"]["samples"],
                v["latency"]["p50_ms"],
                v["latency"]["p99_ms"],
                v["server_cpu_us_per_delivery"],
                v["lost"]
            ),
            "fanout" | "fanout-fast" | "fanout-irc" | "fanout-irc-fast" | "burst" => format!(
                "{} clients, {} senders, {} msgs{}: {} deliveries/s, p50 {} ms, p99 {} ms, max {} ms, {} µs server CPU per delivery, lost {}",
                v["clients"],
                v["senders"],
                v["messages"],
                v["offered_msgs_per_s"]
                    .as_f64()
                    .map_or(" (all at once)".to_string(), |r| format!(
                        " offered at {r}/s"
                    )),
                v["deliveries_per_s"],
                v["latency"]["p50_ms"],
                v["latency"]["p99_ms"],
                v["latency"]["max_ms"],
                v["server_cpu_us_per_delivery"],
                v["lost"]
            ),
            "idle" => format!(
                "{} sessions: {} KiB RSS per session ({} → {} KiB), {}% of a core while idle",
                v["sessions"],
                v["rss_kib_per_session"],
                v["server_rss_kib_before"],
                v["server_rss_kib_after"],
                v["idle_cpu_percent_of_a_core"]
            ),
            "connect" => format!(
                "{} sessions, {} threads: {} resumed sessions/s ({} ms server CPU and {} ms load-generator CPU each); {} password logins/s (this server hashes with 1,000 PBKDF2 iterations; at the default 600,000 one hash takes ~70 ms, see login-storm)",
                v["sessions"],
                v["threads"],
                v["resumed_per_s"],
                v["server_cpu_ms_per_resumed_session"],
                v["bench_cpu_ms_per_resumed_session"],
                v["password_logins_per_s"]
            ),
            "login-storm" => format!(
                "{} password logins (600,000 iterations) during a 200 msgs/s fan-out: chat p99 {} ms quiet, {} ms during the storm (moved {} ms); lost {}",
                v["logins"],
                v["chat_p99_ms_quiet"],
                v["chat_p99_ms_during_storm"],
                v["p99_moved_ms"],
                v["lost"]
            ),
            "history" => format!(
                "{} pages of 50 while {} messages were written: p50 {} ms, p99 {} ms",
                v["pages"],
                v["written_meanwhile"],
                v["page_latency"]["p50_ms"],
                v["page_latency"]["p99_ms"]
            ),
            "upload" => format!(
                "{} bytes in {} s = {} MB/s; chat p99 {} ms quiet, {} ms during the upload; lost {}",
                v["bytes"],
                v["seconds"],
                v["mb_per_s"],
                v["chat_p99_ms_quiet"],
                v["chat_p99_ms_during_upload"],
                v["lost"]
            ),
            "crowd" => {
                let steps = v["steps"].as_array().cloned().unwrap_or_default();
                steps
                    .iter()
                    .map(|s| {
                        format!(
                            "{} clients: {} in, {} failed, {} s, {} ms server CPU per login, joined reply {} B, server RSS {} KiB",
                            s["clients"],
                            s["joined"],
                            s["failed"],
                            s["setup_s"],
                            s["server_cpu_ms_per_login"],
                            s["joined_reply_bytes"],
                            s["server_rss_kib"]
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            }
            "storm-crowded" => format!(
                "with {} clients online in general, 8 threads: {} resumed sessions/s ({} ms server CPU each), {} registrations/s ({} ms server CPU each, PBKDF2 at 1,000 iterations); chat in a 50-member room at 200 msgs/s: p99 {} ms with the crowd idle, {} ms during a storm of resumes and registrations ({} sessions/s), lost {}",
                v["online"],
                v["resumed_per_s"],
                v["server_cpu_ms_per_resumed"],
                v["registered_per_s"],
                v["server_cpu_ms_per_registered"],
                v["chat_p99_ms_quiet"],
                v["chat_p99_ms_during_storm"],
                v["storm_sessions_per_s_during_chat"],
                v["chat_lost"]
            ),
            "restart" => format!(
                "{} clients online; SIGTERM and start again took {} s; {} back with their tokens (8 threads) in {} s ({}/s), {} failed; online in general afterwards: {} (correct: {})",
                v["clients"],
                v["restart_seconds"],
                v["back"],
                v["all_back_seconds"],
                v["resumed_per_s"],
                v["failed"],
                v["online_in_general"],
                v["online_state_correct"]
            ),
            "login-history" => format!(
                "{} password logins (1,000 iterations) on an empty database: p50 {} ms, p99 {} ms; with {} stored messages (9 in 10 in a room, 1 in 10 DMs to the user, all read and delivered): p50 {} ms, p99 {} ms (p99 ratio {})",
                v["logins"],
                v["empty"]["p50_ms"],
                v["empty"]["p99_ms"],
                v["messages"],
                v["full"]["p50_ms"],
                v["full"]["p99_ms"],
                v["p99_ratio"]
            ),
            "search" => format!(
                "{} messages in {} rooms (6-14 words each, 20,000-word Zipf vocabulary), stored at {}/s with the index; {} queries each, 20 results a page: two words in one room p50 {} ms, p99 {} ms; two words anywhere p50 {} ms, p99 {} ms; one frequent word p50 {} ms, p99 {} ms; a 4-letter prefix p50 {} ms, p99 {} ms",
                v["messages"],
                v["rooms"],
                v["fill_msgs_per_s"],
                v["queries"],
                v["two_words_in_room"]["p50_ms"],
                v["two_words_in_room"]["p99_ms"],
                v["two_words"]["p50_ms"],
                v["two_words"]["p99_ms"],
                v["one_common_word"]["p50_ms"],
                v["one_common_word"]["p99_ms"],
                v["prefix"]["p50_ms"],
                v["prefix"]["p99_ms"]
            ),
            _ => v.to_string(),
        };
        md.push_str(&format!(
            "| {name} | {figures} | `target/release/confab-bench {name}` |\n"
        ));
    }
    md.push_str(&targets(results));
    md.push_str("\nRaw results (one JSON object per scenario):\n\n```\n");
    for (_, v) in results {
        md.push_str(&format!("{v}\n"));
    }
    md.push_str("```\n");
    md
}
