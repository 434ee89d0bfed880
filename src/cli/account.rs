//! `callflow account create` and `callflow api-key create|list|revoke`:
//! accounts and the keys clients exchange for tokens (`PUT /v2/api_auth`).

use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::json;

use super::{FlowsArgs, Format};
use callflow::ids::AccountId;
use callflow::model::Object;
use callflow::store::FlowsDir;

#[derive(Debug, Subcommand)]
pub enum AccountCommand {
    /// Create an account folder with its account.json; prints the new id.
    Create(CreateArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The account's name.
    name: String,
    /// The account id (default: a new 32-hex id, as Kazoo's).
    #[arg(long, value_name = "ID")]
    id: Option<String>,
    /// The account's time zone (an IANA name).
    #[arg(long, value_name = "TZ")]
    timezone: Option<String>,
    #[command(flatten)]
    flows: FlowsArgs,
}

#[derive(Debug, Subcommand)]
pub enum ApiKeyCommand {
    /// Create an API key for an account; prints it once.
    ///
    /// The key goes to stdout, its id and name to stderr; only its SHA-256
    /// is stored, in account.json. Clients exchange the key for a token
    /// with `PUT /v2/api_auth`.
    ///
    /// Exit status: 0 when the key is created, 2 for an unknown account or
    /// a bad name.
    Create(CreateKeyArgs),
    /// List an account's API keys: id, name, created, last used.
    ///
    /// Times are ISO 8601 (UTC); the last use is noted at most once a
    /// minute per key. The keys themselves are never stored, so never
    /// shown.
    ///
    /// Exit status: 0, or 2 for an unknown account.
    List(ListKeysArgs),
    /// Revoke an API key by its id; its tokens stop working too.
    ///
    /// The key (see `list` for ids) can no longer log in, and the tokens it
    /// gave stop working on a running server as soon as the server reloads
    /// account.json: at once with its file watcher, else at the next poll,
    /// SIGHUP or POST /v2/reload.
    ///
    /// Exit status: 0 when the key is revoked, 2 for an unknown account or
    /// key id.
    Revoke(RevokeKeyArgs),
}

#[derive(Debug, Args)]
pub struct CreateKeyArgs {
    /// The account the key gives access to.
    #[arg(value_name = "ACCOUNT", required_unless_present = "account")]
    account_id: Option<String>,
    /// The account, as a flag (the older spelling of ACCOUNT).
    #[arg(long, value_name = "ID", conflicts_with = "account_id")]
    account: Option<String>,
    /// A name to tell the key by (default: key-<id>).
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    #[command(flatten)]
    flows: FlowsArgs,
}

#[derive(Debug, Args)]
pub struct ListKeysArgs {
    /// The account whose keys to list.
    #[arg(value_name = "ACCOUNT")]
    account: String,
    /// Output format: a table, or one JSON object.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    #[command(flatten)]
    flows: FlowsArgs,
}

#[derive(Debug, Args)]
pub struct RevokeKeyArgs {
    /// The account the key belongs to.
    #[arg(value_name = "ACCOUNT")]
    account: String,
    /// The key's id, as `list` shows it.
    #[arg(value_name = "KEY_ID")]
    key_id: String,
    #[command(flatten)]
    flows: FlowsArgs,
}

impl AccountCommand {
    pub(super) fn apply(&mut self, project: &super::Project) {
        let AccountCommand::Create(args) = self;
        args.flows.apply(project);
    }
}

impl ApiKeyCommand {
    pub(super) fn apply(&mut self, project: &super::Project) {
        match self {
            ApiKeyCommand::Create(args) => args.flows.apply(project),
            ApiKeyCommand::List(args) => args.flows.apply(project),
            ApiKeyCommand::Revoke(args) => args.flows.apply(project),
        }
    }
}

pub fn run_account(command: &AccountCommand) -> anyhow::Result<ExitCode> {
    let AccountCommand::Create(args) = command;
    let id = if let Some(id) = &args.id {
        AccountId::new(id)?
    } else {
        AccountId::new(&callflow::api::random_hex(16)?)?
    };
    if let Some(tz) = &args.timezone {
        jiff::tz::TimeZone::get(tz).with_context(|| format!("{tz:?} is not an IANA time zone"))?;
    }
    let mut doc = Object::new();
    doc.insert("name".into(), json!(args.name));
    if let Some(tz) = &args.timezone {
        doc.insert("timezone".into(), json!(tz));
    }
    let path = FlowsDir::new(args.flows.dir())
        .create_account(&id, &doc)
        .context("cannot create the account")?;
    eprintln!("created {}", path.display());
    println!("{id}");
    Ok(ExitCode::SUCCESS)
}

pub fn run_api_key(command: &ApiKeyCommand) -> anyhow::Result<ExitCode> {
    match command {
        ApiKeyCommand::Create(args) => create_key(args),
        ApiKeyCommand::List(args) => list_keys(args),
        ApiKeyCommand::Revoke(args) => revoke_key(args),
    }
}

fn create_key(args: &CreateKeyArgs) -> anyhow::Result<ExitCode> {
    let Some(account) = args.account_id.as_ref().or(args.account.as_ref()) else {
        anyhow::bail!("which account? give it: callflow api-key create ACCOUNT");
    };
    let account = AccountId::new(account)?;
    let (shown, key) = callflow::api::create_key(
        &FlowsDir::new(args.flows.dir()),
        &account,
        args.name.as_deref(),
    )?;
    eprintln!(
        "API key {} ({}) for account {account}, shown once (only its hash is stored):",
        shown.id, shown.name
    );
    println!("{key}");
    Ok(ExitCode::SUCCESS)
}

/// A time as the CLI shows it: ISO 8601, UTC, to the second.
fn iso(time: Option<jiff::Timestamp>) -> Option<String> {
    time.map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
}

fn list_keys(args: &ListKeysArgs) -> anyhow::Result<ExitCode> {
    let account = AccountId::new(&args.account)?;
    let keys = callflow::api::list_keys(&FlowsDir::new(args.flows.dir()), &account)?;
    if args.format == Format::Json {
        let keys: Vec<_> = keys
            .iter()
            .map(|k| {
                json!({
                    "id": k.id,
                    "name": k.name,
                    "created": iso(k.created),
                    "last_used": iso(k.last_used),
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({"account": account.as_str(), "keys": keys}))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<[String; 4]> = keys
        .iter()
        .map(|k| {
            [
                k.id.clone(),
                k.name.clone(),
                iso(k.created).unwrap_or_else(|| "-".to_owned()),
                iso(k.last_used).unwrap_or_else(|| "never".to_owned()),
            ]
        })
        .collect();
    let header = ["ID", "NAME", "CREATED", "LAST USED"].map(str::to_owned);
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
    if rows.is_empty() {
        eprintln!(
            "account {account} has no API keys (create one with `callflow api-key create {account}`)"
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn revoke_key(args: &RevokeKeyArgs) -> anyhow::Result<ExitCode> {
    let account = AccountId::new(&args.account)?;
    let key = callflow::api::revoke_key(&FlowsDir::new(args.flows.dir()), &account, &args.key_id)?;
    println!(
        "revoked API key {} ({}) of account {account}",
        key.id, key.name
    );
    Ok(ExitCode::SUCCESS)
}
