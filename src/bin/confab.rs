//! `confab`: the full-screen chat client. Like ssh: checks the server's
//! certificate (a CA, or trust on first use with
//! `~/.config/confab/known_hosts`), asks for the password, then opens the
//! chat screen.

use clap::Parser;
use confab::client::{Client, ClientError, DEFAULT_TIMEOUT, Destination};
use confab::known_hosts::{self, HostStatus, KnownHosts};
use confab::tls::{self, Trust};
use confab::tui::{self, App, model::Model, net};
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Command-line arguments.
#[derive(Debug, Clone, Parser)]
#[command(name = "confab", version, about = "Secure terminal chat client")]
struct Args {
    /// Where to connect: [user@]host[:port] (port 7878 by default; user
    /// defaults to the server's `user` in the config file, else your login
    /// name). Without it: `default` under `[server]` in the config file.
    destination: Option<String>,
    /// Print a man page or shell completions (man, bash, zsh, fish) and
    /// exit (`make man`).
    #[arg(long, hide = true, value_name = "WHAT")]
    generate: Option<String>,
    /// Trust this CA certificate (PEM) instead of the system's roots and
    /// known_hosts.
    #[arg(long)]
    ca: Option<PathBuf>,
    /// Create the account instead of logging in.
    #[arg(long)]
    register: bool,
    /// Read the password from the first line of this file (for scripts;
    /// keep the file readable by you only).
    #[arg(long)]
    password_file: Option<PathBuf>,
    /// The known-hosts file (default ~/.config/confab/known_hosts).
    #[arg(long)]
    known_hosts: Option<PathBuf>,
    /// Where /download saves files (default ~/Downloads/confab).
    #[arg(long, env = "CONFAB_DOWNLOAD_DIR")]
    download_dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(kind) = &args.generate {
        use clap::CommandFactory;
        return confab::manual::print(Args::command(), kind, "confab");
    }
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Errors can carry the server's words: never print them raw.
            eprintln!("confab: {}", confab::text::for_terminal(&err.to_string()));
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), String> {
    let settings_path = tui::settings::default_path();
    let settings = match &settings_path {
        Some(path) => tui::settings::Settings::load(path)?,
        None => tui::settings::Settings::default(),
    };
    let destination = args
        .destination
        .clone()
        .or_else(|| settings.server.default.clone())
        .ok_or("where to? give user@host, or set default under [server] in the config file")?;
    let dest = Destination::parse(&destination)?;
    // What the config file says of this server, under [servers."host"]
    // (as ssh's Host sections): its user name and CA.
    let known = settings.servers.get(&dest.host);
    let mut args = args.clone();
    if args.ca.is_none() {
        args.ca = known.and_then(|k| k.ca.clone());
    }
    let args = &args;
    let user = dest
        .user
        .clone()
        .or_else(|| known.and_then(|k| k.user.clone()))
        .or_else(|| std::env::var("USER").ok())
        .ok_or("no user name: use user@host")?;
    if !std::io::stdout().is_terminal() {
        return Err("confab needs a terminal".into());
    }
    let addr = dest.addr();
    let host_port = format!("{}:{}", dest.host, dest.port);
    // As ssh does: the server's certificate is checked before the password
    // is asked for.
    let (client, trust) = connect(args, &addr, &dest.host, &host_port)?;
    let (password, asked) = password(args, &user, &dest.host)?;
    // While a person typed, the server may have given up on the silent
    // connection (its login timeout): the network thread opens a fresh
    // one, checked against the same trust.
    let client = (!asked).then_some(client);

    let config = net::NetConfig {
        addr,
        server_name: dest.host.clone(),
        trust,
        user: user.clone(),
        password,
        register: args.register,
        download_dir: args.download_dir.clone().unwrap_or_else(|| {
            std::env::var_os("HOME")
                .map_or_else(|| PathBuf::from("."), PathBuf::from)
                .join("Downloads")
                .join("confab")
        }),
    };
    // (`mouse` is read before the settings move into the UI state.)
    let mouse = settings.terminal.mouse;
    let hyperlinks = settings.terminal.hyperlinks;
    tui::view::set_time_format(&settings.display.timestamp)?;
    tui::view::set_colors(settings.theme.colors()?);
    let mut siv = cursive::Cursive::new();
    let sink = siv.cb_sink().clone();
    // Open the sound device before the screen starts: ALSA may complain on
    // stderr when there is none (silenced inside), and then the bell is used.
    let bell_sink = sink.clone();
    let output = match tui::notify::open_audio() {
        #[cfg(feature = "audio")]
        Some(device) => tui::notify::Output::Audio(device),
        #[allow(unreachable_patterns)]
        _ => tui::notify::Output::Bell(Box::new(move || {
            // Rung on the UI thread, between frames, so it cannot split an
            // escape sequence the screen is writing.
            let _ = bell_sink.send(Box::new(|_| tui::terminal::write_raw(b"\x07")));
        })),
    };
    let notifier = tui::notify::Notifier::start(output).map_err(|e| e.to_string())?;
    let emit = Box::new(move |ev: net::NetEvent| {
        let _ = sink.send(Box::new(move |s: &mut cursive::Cursive| tui::post(s, ev)));
    });
    let (handle, thread) = net::spawn(config, client, emit).map_err(|e| e.to_string())?;
    tui::setup(
        &mut siv,
        App::new(Model::new(&user), handle).with_notifications(notifier, settings, settings_path),
    );
    let ran = siv
        .try_run_with(|| tui::terminal::Terminal::init(mouse, hyperlinks))
        .map_err(|e| format!("terminal error: {e}"));
    // Give the network thread a moment to say goodbye to the server.
    let deadline = std::time::Instant::now() + Duration::from_secs(1);
    while !thread.is_finished() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    ran
}

/// The password: `CONFAB_PASSWORD`, `--password-file`, or asked for (the
/// flag says it was asked).
fn password(args: &Args, user: &str, host: &str) -> Result<(String, bool), String> {
    if let Ok(p) = std::env::var("CONFAB_PASSWORD") {
        return Ok((p, false));
    }
    if let Some(path) = &args.password_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        return Ok((text.lines().next().unwrap_or("").to_owned(), false));
    }
    let first = read_secret(&format!("{user}@{host}'s password: "))?;
    if args.register {
        let again = read_secret("Again, to be sure: ")?;
        if again != first {
            return Err("the passwords differ".into());
        }
    }
    Ok((first, true))
}

/// Connects and checks the certificate: against `--ca`, else the system's
/// CAs, else known_hosts (asking on first use, refusing on a change).
fn connect(
    args: &Args,
    addr: &str,
    host: &str,
    host_port: &str,
) -> Result<(Client, net::ServerTrust), String> {
    let verified = |trust: &Trust| -> Result<(Client, net::ServerTrust), ClientError> {
        let connector = tls::client_connector(trust)?;
        let client = Client::connect_unhello(addr, host, &connector, DEFAULT_TIMEOUT)?;
        Ok((client, net::ServerTrust::Verified(connector)))
    };
    if let Some(ca) = &args.ca {
        return verified(&Trust::CaFile(ca.clone())).map_err(|e| e.to_string());
    }
    match verified(&Trust::SystemRoots) {
        Ok(ok) => return Ok(ok),
        Err(ClientError::Handshake { .. }) => {}
        Err(e) => return Err(e.to_string()),
    }
    // No CA vouches for the server: trust on first use.
    let path = match &args.known_hosts {
        Some(p) => p.clone(),
        None => KnownHosts::default_path().ok_or("cannot find a home directory for known_hosts")?,
    };
    let mut known = KnownHosts::load(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let connector = tls::tofu_connector().map_err(|e| e.to_string())?;
    let client = Client::connect_unhello(addr, host, &connector, DEFAULT_TIMEOUT)
        .map_err(|e| e.to_string())?;
    let fingerprint = client
        .server_fingerprint()
        .ok_or("the server sent no certificate")?
        .to_owned();
    match known.check(host_port, &fingerprint) {
        HostStatus::Trusted => {}
        HostStatus::Changed { expected, line } => {
            return Err(format!(
                "\n{}",
                known_hosts::changed_warning(
                    host_port,
                    &expected,
                    &fingerprint,
                    known.path(),
                    line
                )
            ));
        }
        HostStatus::Unknown => {
            eprintln!("The authenticity of server '{host_port}' can't be established.");
            eprintln!(
                "Its certificate is not signed by a certificate authority this computer trusts."
            );
            eprintln!("Certificate SHA-256 fingerprint: {fingerprint}");
            let answer = ask("Are you sure you want to continue connecting (yes/no)? ")?;
            if !answer.eq_ignore_ascii_case("yes") {
                return Err("host certificate not accepted".into());
            }
            known
                .add(host_port, &fingerprint)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            eprintln!("Permanently added '{host_port}' to {}.", path.display());
        }
    }
    Ok((
        client,
        net::ServerTrust::Pinned {
            connector,
            fingerprint,
        },
    ))
}

fn ask(prompt: &str) -> Result<String, String> {
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    Ok(line.trim().to_owned())
}

/// Asks for a secret without echoing it.
fn read_secret(prompt: &str) -> Result<String, String> {
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    let fd = libc::STDIN_FILENO;
    // SAFETY: termios is plain data; tcgetattr fills it or fails.
    let mut term: libc::termios = unsafe { std::mem::zeroed() };
    let is_tty = unsafe { libc::tcgetattr(fd, &mut term) } == 0;
    if is_tty {
        let mut quiet = term;
        quiet.c_lflag &= !libc::ECHO;
        // SAFETY: sets attributes we just read, minus echo.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &quiet) };
    }
    let mut line = String::new();
    let read = std::io::stdin().lock().read_line(&mut line);
    if is_tty {
        // SAFETY: restores the saved attributes.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &term) };
        eprintln!();
    }
    read.map_err(|e| e.to_string())?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}
