//! `confab`: the chat client. Until the full-screen TUI lands, a line-mode
//! client on the shared client library: lines you type go to the current
//! room; `/join ROOM`, `/msg USER TEXT`, `/who`, `/rooms`, `/quit`.

use clap::Parser;
use confab::client::{Client, ClientError, Destination};
use confab::protocol::{PresenceEvent, ServerMsg};
use confab::tls::Trust;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::Duration;

/// Command-line arguments.
#[derive(Debug, Parser)]
#[command(name = "confab", version, about = "Secure terminal chat client")]
struct Args {
    /// Where to connect: [user@]host[:port] (port 7878 by default).
    destination: String,
    /// Trust this CA certificate (PEM) instead of the system's roots.
    #[arg(long)]
    ca: Option<PathBuf>,
    /// Create the account instead of logging in.
    #[arg(long)]
    register: bool,
    /// Read the password from this environment variable instead of asking.
    /// Anyone who can read your environment can read it: use for scripts.
    #[arg(long, default_value = "CONFAB_PASSWORD")]
    password_env: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("confab: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), String> {
    let dest = Destination::parse(&args.destination)?;
    let user = dest
        .user
        .clone()
        .or_else(|| std::env::var("USER").ok())
        .ok_or("no user name: use user@host")?;
    let password = match std::env::var(&args.password_env) {
        Ok(p) => p,
        Err(_) => read_password(&format!("{user}@{}'s password: ", dest.host))?,
    };
    let trust = args.ca.clone().map_or(Trust::SystemRoots, Trust::CaFile);
    let mut client =
        Client::connect(&dest.addr(), &dest.host, &trust).map_err(|e| e.to_string())?;
    let session = if args.register {
        client.register(&user, &password)
    } else {
        client.login(&user, &password)
    }
    .map_err(|e| e.to_string())?;
    println!(
        "logged in as {}; rooms: {}",
        session.user,
        session
            .rooms
            .iter()
            .map(|r| format!("#{}", r.name))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let mut room = session
        .rooms
        .first()
        .map_or_else(|| "general".to_owned(), |r| r.name.clone());

    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    loop {
        // The line client polls stdin every 100 ms; the TUI will not.
        while let Some(ev) = client
            .next_event(Duration::from_millis(100))
            .map_err(|e| e.to_string())?
        {
            show(&ev);
        }
        match rx.try_recv() {
            Ok(line) => {
                if !command(&mut client, &mut room, line.trim_end()) {
                    return client.quit().map_err(|e| e.to_string());
                }
            }
            Err(mpsc::TryRecvError::Empty) => {}
            Err(mpsc::TryRecvError::Disconnected) => {
                return client.quit().map_err(|e| e.to_string());
            }
        }
    }
}

/// Runs one typed line; `false` means quit.
fn command(client: &mut Client, room: &mut String, line: &str) -> bool {
    let (cmd, rest) = line.split_once(' ').unwrap_or((line, ""));
    let result: Result<(), ClientError> = match cmd {
        "" => Ok(()),
        "/quit" => return false,
        "/join" => client.join(rest.trim()).map(|j| {
            *room = j.room.name.clone();
            for m in &j.history {
                println!("{} <{}> {}", m.id, m.from, m.body);
            }
            println!("-- now in #{} ({})", j.room.name, j.room.topic);
        }),
        "/msg" => match rest.split_once(' ') {
            Some((to, text)) => client.dm(to, text).map(|_| ()),
            None => {
                println!("usage: /msg USER TEXT");
                Ok(())
            }
        },
        "/who" => client.who(room).map(|m| {
            let names: Vec<String> = m
                .iter()
                .map(|m| format!("{}{}", m.user, if m.online { "*" } else { "" }))
                .collect();
            println!("-- #{room}: {}", names.join(" "));
        }),
        "/rooms" => client.rooms().map(|rs| {
            for r in rs {
                println!("-- #{} ({} members) {}", r.name, r.members, r.topic);
            }
        }),
        c if c.starts_with('/') => {
            println!("-- commands: /join ROOM, /msg USER TEXT, /who, /rooms, /quit");
            Ok(())
        }
        _ => client.say(room, line).map(|_| ()),
    };
    if let Err(err) = result {
        println!("-- error: {err}");
    }
    true
}

fn show(ev: &ServerMsg) {
    match ev {
        ServerMsg::Message(m) => match (&m.room, &m.to) {
            (Some(r), _) => println!("#{r} <{}> {}", m.from, m.body),
            (None, Some(to)) => println!("[dm {} -> {to}] {}", m.from, m.body),
            _ => {}
        },
        ServerMsg::Presence { room, user, event } => {
            let what = match event {
                PresenceEvent::Join => "joined",
                PresenceEvent::Leave => "left",
                PresenceEvent::Online => "is online",
                PresenceEvent::Offline => "went offline",
            };
            println!("-- #{room}: {user} {what}");
        }
        ServerMsg::TopicChanged { room, topic, by } => {
            println!("-- #{room}: {by} set the topic: {topic}")
        }
        ServerMsg::Closing { code, message } => println!("-- server closing: {code}: {message}"),
        _ => {}
    }
}

/// Asks for a password without echoing it.
fn read_password(prompt: &str) -> Result<String, String> {
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
