//! Man pages and shell completions, generated from the binaries' clap
//! definitions (`clap_mangen`, `clap_complete`), so they never drift from
//! `--help`. Each binary prints them with the hidden flag `--generate
//! man|bash|zsh|fish`; `make man` writes them under `target/man` and
//! `target/completions`.

use clap_complete::Shell;
use std::io::Write;

/// What `--generate` can print.
pub const KINDS: &[&str] = &["man", "bash", "zsh", "fish"];

/// What a binary's `main` does with `--generate KIND`: prints it to
/// stdout, or says on stderr (as `bin`) why it cannot.
pub fn print(cmd: clap::Command, kind: &str, bin: &str) -> std::process::ExitCode {
    match generate(cmd, kind, &mut std::io::stdout()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("{bin}: {err}");
            std::process::ExitCode::from(2)
        }
    }
}

/// Writes `kind` (one of [`KINDS`]) for `cmd` to `out`.
pub fn generate(mut cmd: clap::Command, kind: &str, out: &mut dyn Write) -> Result<(), String> {
    let shell = match kind {
        "man" => {
            return clap_mangen::Man::new(cmd)
                .render(out)
                .map_err(|e| e.to_string());
        }
        "bash" => Shell::Bash,
        "zsh" => Shell::Zsh,
        "fish" => Shell::Fish,
        other => {
            return Err(format!(
                "cannot generate {other:?}: one of {}",
                KINDS.join(", ")
            ));
        }
    };
    let name = cmd.get_name().to_owned();
    clap_complete::generate(shell, &mut cmd, name, out);
    Ok(())
}
