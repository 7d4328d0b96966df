//! `vaultmesh keys`: create, list and revoke API keys (only their hashes are stored).

use clap::{Subcommand, ValueEnum};
use ledger::storage::KeyStore;
use ledger::store::{PoolOptions, Role, Store};

/// Subcommands of `vaultmesh keys`.
#[derive(Subcommand)]
pub enum KeysCommand {
    /// Create a key and print its bearer token (shown only once).
    Create {
        #[command(flatten)]
        db: DbArg,
        /// Role: writer, reader or admin.
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// Scrolls a writer may write to (comma-separated); all if omitted.
        #[arg(long, value_delimiter = ',')]
        scrolls: Option<Vec<String>>,
        /// Free-text label.
        #[arg(long, default_value = "")]
        label: String,
        /// Output: `text` (id and token) or `token` (the token alone, for scripts).
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// List keys (never secrets).
    List {
        #[command(flatten)]
        db: DbArg,
    },
    /// Revoke a key by id.
    Revoke {
        #[command(flatten)]
        db: DbArg,
        /// Key id (`key_…`).
        id: String,
    },
}

/// Database connection option shared by the key commands.
#[derive(clap::Args)]
pub struct DbArg {
    /// Postgres URL of the schema owner (only the owner manages API keys).
    #[arg(long, env = "VAULTMESH_OWNER_DATABASE_URL", default_value = ledger::config::DEFAULT_OWNER_DATABASE_URL)]
    database_url: String,
}

/// How `keys create` prints.
#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    /// `id token` on one line.
    Text,
    /// The token alone.
    Token,
}

fn parse_role(s: &str) -> Result<Role, String> {
    s.parse()
}

fn store(db: &DbArg) -> anyhow::Result<Store> {
    Ok(Store::connect(
        &db.database_url,
        &PoolOptions {
            max_size: 1,
            ..PoolOptions::default()
        },
    )?)
}

/// Runs one key command.
pub async fn run(cmd: KeysCommand) -> anyhow::Result<()> {
    match cmd {
        KeysCommand::Create {
            db,
            role,
            scrolls,
            label,
            format,
        } => {
            if let Some(list) = &scrolls {
                for s in list {
                    ledger::receipt::validate_scroll_name(s)?;
                }
            }
            let created = store(&db)?.create_api_key(role, scrolls, &label).await?;
            match format {
                Format::Text => println!("{} {}", created.key.id, created.token),
                Format::Token => println!("{}", created.token),
            }
        }
        KeysCommand::List { db } => {
            for k in store(&db)?.list_api_keys().await? {
                println!("{}", serde_json::to_string(&k)?);
            }
        }
        KeysCommand::Revoke { db, id } => {
            if !store(&db)?.revoke_api_key(&id).await? {
                anyhow::bail!("no active key with id {id}");
            }
            eprintln!("revoked {id}");
        }
    }
    Ok(())
}
