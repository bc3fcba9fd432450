//! Build script: records which commit the binaries were built from, so
//! `confab-server --version` (and the benchmark report, which asks the
//! server binary it measured) can say it. Outside a git checkout, or
//! without git, the commit is "unknown".

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn main() {
    let commit = match git(&["rev-parse", "--short=12", "HEAD"]) {
        Some(c) if !c.is_empty() => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            if dirty { format!("{c}-dirty") } else { c }
        }
        _ => "unknown".to_owned(),
    };
    println!("cargo:rustc-env=CONFAB_COMMIT={commit}");
    // A new commit, a checkout or a staged change moves one of these.
    for path in [".git/HEAD", ".git/index", ".git/refs/heads", "src"] {
        println!("cargo:rerun-if-changed={path}");
    }
}
