//! `confab-server`: parses settings, sets up logging, and runs the server.

use clap::Parser;
use confab::config::{ServerArgs, ServerConfig};
use confab::server::Server;
use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    // Before any thread starts, so that every thread inherits the mask and
    // only the signal thread below receives SIGINT and SIGTERM.
    if let Err(err) = confab::server::block_termination_signals() {
        eprintln!("confab-server: cannot set up signal handling: {err}");
        return ExitCode::FAILURE;
    }
    let mut args = ServerArgs::parse();
    if let Some(kind) = &args.generate {
        use clap::CommandFactory;
        return confab::manual::print(ServerArgs::command(), kind, "confab-server");
    }
    let command = args.command.take();
    let config = match ServerConfig::from_args(args) {
        Ok(c) => c,
        Err(err) => {
            eprintln!("confab-server: {err}");
            return ExitCode::from(2);
        }
    };
    if let Some(confab::config::Command::Admin { action }) = command {
        return match confab::admin::run(&config, &action, &mut std::io::stdin().lock()) {
            Ok(out) => {
                // Names and reasons from the database: never printed raw.
                println!("{}", confab::text::for_terminal(&out));
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("confab-server admin: {err}");
                ExitCode::FAILURE
            }
        };
    }
    // Serving, then: run the program again with a tuned allocator (see
    // `allocator`), before any thread starts; it returns at once when that
    // is done. (Manual pages and admin commands are short-lived and keep
    // glibc's defaults.)
    if let confab::server::allocator::Tuning::ExecFailed(err) = confab::server::allocator::tune() {
        eprintln!(
            "confab-server: cannot restart with a small allocator cache ({err}); going on with glibc's defaults"
        );
    }
    env_logger::Builder::new()
        .parse_filters(&config.log)
        // The PostgreSQL client logs every statement at debug level.
        .filter_module("tokio_postgres", log::LevelFilter::Warn)
        .parse_env("RUST_LOG")
        .format_timestamp_millis()
        .init();
    log::info!("{}", confab::server::allocator::describe());
    let server = match Server::bind(&config) {
        Ok(s) => s,
        Err(err) => {
            eprintln!("confab-server: {err}");
            return ExitCode::FAILURE;
        }
    };
    match server.local_addr() {
        Ok(addr) => {
            // Tests and scripts wait for this exact line on stdout.
            let mut out = std::io::stdout();
            let _ = writeln!(out, "listening on {addr}");
            if let Some(irc) = server.irc_addr() {
                let _ = writeln!(out, "irc listening on {irc}");
            }
            if let Some(irc) = server.irc_plain_addr() {
                let _ = writeln!(out, "plaintext irc listening on {irc}");
            }
            let _ = out.flush();
            log::info!(
                "database {}, {} session threads, PBKDF2 {} iterations",
                confab::store::describe(&config.db),
                config.max_sessions,
                config.password_iterations
            );
        }
        Err(err) => {
            eprintln!("confab-server: {err}");
            return ExitCode::FAILURE;
        }
    }
    let handle = server.shutdown_handle();
    let signals = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Ok(sig) = confab::server::wait_for_signal() {
                log::info!("signal {sig} received: shutting down (again to force)");
                handle.shutdown();
            }
            if confab::server::wait_for_signal().is_ok() {
                eprintln!("confab-server: forced exit");
                std::process::exit(130);
            }
        });
    if let Err(err) = signals {
        eprintln!("confab-server: cannot start the signal thread: {err}");
        return ExitCode::FAILURE;
    }
    match server.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("confab-server: {err}");
            ExitCode::FAILURE
        }
    }
}
