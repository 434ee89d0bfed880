//! `callflow account create` and `callflow api-key create`: accounts and the
//! keys clients exchange for tokens (`PUT /v2/api_auth`).

use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::json;

use super::FlowsArgs;
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
    /// Create an API key for an account: prints it once; only its SHA-256
    /// is stored (in account.json).
    Create(KeyArgs),
}

#[derive(Debug, Args)]
pub struct KeyArgs {
    /// The account the key gives access to.
    #[arg(long, value_name = "ID")]
    account: String,
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
        let ApiKeyCommand::Create(args) = self;
        args.flows.apply(project);
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
    let ApiKeyCommand::Create(args) = command;
    let account = AccountId::new(&args.account)?;
    let key = callflow::api::create_api_key(&FlowsDir::new(args.flows.dir()), &account)?;
    eprintln!("API key for account {account} (shown once; only its hash is stored):");
    println!("{key}");
    Ok(ExitCode::SUCCESS)
}
