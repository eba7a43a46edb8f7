//! `rivulet user`: the users every front end logs in with when the broker requires a login
//! (`rivulet serve --auth`), through the HTTP admin API. Kafka tools manage the same users
//! with AlterUserScramCredentials (kafka-configs, AdminClient).

use std::io::BufRead;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use serde_json::json;

use super::admin_http::HttpArgs;
use super::output::{emit, emit_json, Table};
use super::{ConnArgs, Format};

/// Arguments of `rivulet user`.
#[derive(Debug, Args)]
pub struct UserArgs {
    #[command(subcommand)]
    command: UserCommand,
    #[command(flatten)]
    http: HttpArgs,
    #[command(flatten)]
    conn: ConnArgs,
}

/// Where a new password comes from.
#[derive(Debug, Args)]
struct NewPassword {
    /// The password (prefer the environment or --password-stdin: arguments show in
    /// process lists)
    #[arg(
        long,
        env = "RIVULET_NEW_PASSWORD",
        hide_env_values = true,
        conflicts_with = "password_stdin"
    )]
    password: Option<String>,
    /// Read the password from the first line of standard input
    #[arg(long)]
    password_stdin: bool,
}

impl NewPassword {
    fn read(&self) -> Result<String> {
        if let Some(p) = &self.password {
            return Ok(p.clone());
        }
        if !self.password_stdin {
            bail!("give the password with --password-stdin or RIVULET_NEW_PASSWORD");
        }
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the password from standard input")?;
        Ok(line.trim_end_matches(['\r', '\n']).to_string())
    }
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Create a user (SCRAM-SHA-256 and SCRAM-SHA-512 credentials; PLAIN logins check them).
    Create {
        /// User name.
        name: String,
        #[command(flatten)]
        password: NewPassword,
    },
    /// Give a user a new password.
    Passwd {
        /// User name.
        name: String,
        #[command(flatten)]
        password: NewPassword,
    },
    /// List users and their mechanisms.
    List,
    /// Delete a user.
    Delete {
        /// User name.
        name: String,
    },
}

/// Runs `rivulet user`.
pub fn run_user(args: UserArgs) -> Result<()> {
    let timeout = args.conn.timeout();
    let json = args.conn.format == Format::Json;
    match &args.command {
        UserCommand::Create { name, password } | UserCommand::Passwd { name, password } => {
            let exists = args
                .http
                .call("GET", "/v1/users", timeout)?
                .get("users")
                .and_then(|u| u.as_array())
                .is_some_and(|users| users.iter().any(|u| u["name"] == name.as_str()));
            let creating = matches!(args.command, UserCommand::Create { .. });
            if creating && exists {
                bail!("user {name:?} exists; use `rivulet user passwd` to change its password");
            }
            if !creating && !exists {
                bail!("no user {name:?}; use `rivulet user create`");
            }
            let body = json!({ "password": password.read()? });
            args.http
                .call_with("PUT", &format!("/v1/users/{name}"), Some(&body), timeout)?;
            let verb = if creating {
                "Created"
            } else {
                "Changed the password of"
            };
            emit(&format!("{verb} user {name}\n"))
        }
        UserCommand::List => {
            let value = args.http.call("GET", "/v1/users", timeout)?;
            if json {
                return emit_json(&value);
            }
            let mut table = Table::new(&["name", "mechanisms"]);
            for u in value["users"].as_array().into_iter().flatten() {
                let mechanisms: Vec<String> = u["credentials"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|c| format!("{} ({})", c["mechanism"].as_str().unwrap_or("?"), c["iterations"]))
                    .collect();
                table.row(vec![
                    u["name"].as_str().unwrap_or("?").to_string(),
                    mechanisms.join(", "),
                ]);
            }
            emit(&table.render())
        }
        UserCommand::Delete { name } => {
            args.http.call("DELETE", &format!("/v1/users/{name}"), timeout)?;
            emit(&format!("Deleted user {name}\n"))
        }
    }
}
