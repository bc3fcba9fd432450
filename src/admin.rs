//! `confab-server admin ...`: administration tasks run directly on the
//! database, whether the server is running or not (SQLite's WAL lets both
//! write; the server reads admin rights and bans from the database at each
//! use, so changes apply at once).

use crate::config::{AdminAction, ServerConfig};
use crate::password;
use crate::store::{self, StoreError, now_ms};
use crate::validate;

/// Why an administration task failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No such user.
    #[error("no user {0}")]
    NoSuchUser(String),
    /// The new password breaks the rules, or could not be read or hashed.
    #[error("{0}")]
    Password(String),
    /// Nothing to do.
    #[error("{0}")]
    Nothing(String),
}

/// Runs `action` on the configured database; returns what to print.
pub fn run(
    config: &ServerConfig,
    action: &AdminAction,
    stdin: &mut dyn std::io::BufRead,
) -> Result<String, AdminError> {
    let store = store::open(&config.db, 2)?;
    let user_of = |name: &str| -> Result<crate::store::UserRecord, AdminError> {
        let canonical =
            validate::username(name).map_err(|_| AdminError::NoSuchUser(name.to_owned()))?;
        store
            .find_user(&canonical)?
            .ok_or_else(|| AdminError::NoSuchUser(canonical))
    };
    let cli = Some("(command line)");
    match action {
        AdminAction::AddUser {
            user,
            generate,
            admin,
        } => {
            let name = validate::username(user).map_err(|e| AdminError::Nothing(e.message))?;
            let new = new_password(*generate, stdin)?;
            let hash = password::hash(&new, config.password_iterations)
                .map_err(|e| AdminError::Password(e.to_string()))?;
            match store.create_user(&name, &hash) {
                Ok(_) => {}
                Err(StoreError::UserExists) => {
                    return Err(AdminError::Nothing(format!("the name {name} is taken")));
                }
                Err(e) => return Err(e.into()),
            }
            let admin = *admin || config.admins.contains(&name);
            if admin {
                store.set_admin(&name, true)?;
            }
            store.audit(
                Some(&name),
                cli,
                "register",
                if admin { "administrator" } else { "" },
            )?;
            let role = if admin { "administrator " } else { "" };
            Ok(if *generate {
                format!("created {role}{name} with password: {new}")
            } else {
                format!("created {role}{name}")
            })
        }
        AdminAction::Grant { user } | AdminAction::Revoke { user } => {
            let grant = matches!(action, AdminAction::Grant { .. });
            let u = user_of(user)?;
            store.set_admin(&u.name, grant)?;
            store.audit(
                Some(&u.name),
                cli,
                if grant { "grant" } else { "revoke" },
                "",
            )?;
            Ok(format!(
                "{} {} an administrator",
                u.name,
                if grant { "is now" } else { "is no longer" }
            ))
        }
        AdminAction::ResetPassword { user, generate } => {
            let u = user_of(user)?;
            let new = new_password(*generate, stdin)?;
            let hash = password::hash(&new, config.password_iterations)
                .map_err(|e| AdminError::Password(e.to_string()))?;
            store.set_password(u.id, &hash)?;
            let revoked = store.revoke_tokens(u.id)?;
            store.audit(
                Some(&u.name),
                cli,
                "password_reset",
                &format!("{revoked} tokens revoked"),
            )?;
            Ok(if *generate {
                format!("new password for {}: {new}", u.name)
            } else {
                format!("password of {} reset", u.name)
            })
        }
        AdminAction::Ban {
            user,
            reason,
            minutes,
        } => {
            let u = user_of(user)?;
            let until = minutes.map(|m| now_ms() + (m as i64) * 60_000);
            store.ban(u.id, reason, "(command line)", until)?;
            store.revoke_tokens(u.id)?;
            store.audit(Some(&u.name), cli, "ban", reason)?;
            Ok(format!(
                "{} is banned {} (a running server ends their sessions within seconds)",
                u.name,
                minutes.map_or_else(|| "for good".to_owned(), |m| format!("for {m} minutes"))
            ))
        }
        AdminAction::Unban { user } => {
            let u = user_of(user)?;
            if !store.unban(u.id)? {
                return Err(AdminError::Nothing(format!("{} is not banned", u.name)));
            }
            store.audit(Some(&u.name), cli, "unban", "")?;
            Ok(format!("{} is no longer banned", u.name))
        }
        AdminAction::Bans => {
            let bans = store.bans()?;
            if bans.is_empty() {
                return Ok("no bans".into());
            }
            Ok(bans
                .iter()
                .map(|b| {
                    format!(
                        "{}\t{}\tby {}\t{}",
                        b.user,
                        b.until
                            .map_or("for good".into(), |t| format!("until {}", utc(t))),
                        b.by,
                        b.reason
                    )
                })
                .collect::<Vec<_>>()
                .join("\n"))
        }
    }
}

/// A new password: made up (24 hex digits) or read as one line from
/// `stdin`, and checked against the rules.
fn new_password(generate: bool, stdin: &mut dyn std::io::BufRead) -> Result<String, AdminError> {
    let new = if generate {
        let mut raw = [0u8; 12];
        getrandom::fill(&mut raw).map_err(|e| AdminError::Password(e.to_string()))?;
        raw.iter().map(|b| format!("{b:02x}")).collect::<String>()
    } else {
        let mut line = String::new();
        stdin
            .read_line(&mut line)
            .map_err(|e| AdminError::Password(e.to_string()))?;
        line.trim_end_matches(['\n', '\r']).to_owned()
    };
    validate::password(&new).map_err(|e| AdminError::Password(e.message))?;
    Ok(new)
}

/// `ms` since the epoch as `YYYY-MM-DD HH:MM UTC`.
fn utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000) as libc::time_t;
    // SAFETY: gmtime_r writes into the tm we pass and reads `secs`.
    let tm = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::gmtime_r(&secs, &mut tm).is_null() {
            return format!("{ms} ms");
        }
        tm
    };
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02} UTC",
        1900 + tm.tm_year,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min
    )
}
