//! The command line: `serve`, `migrate`, and the helpers an operator reaches for.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config::{Overrides, Settings};
use crate::connectors::Manifest;
use crate::startup::{Application, Role, resolve_master_key};
use crate::vault::MasterKey;

#[derive(Debug, Parser)]
#[command(
    name = "synchub",
    version,
    about = "Keeps marketplaces and ERPs in sync"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// Address to listen on (SYNCHUB_LISTEN).
    #[arg(long)]
    pub listen: Option<String>,
    /// Directory for the embedded database and local master key (SYNCHUB_DATA_DIR).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

impl ServerArgs {
    fn overrides(&self) -> Overrides {
        Overrides {
            listen: self.listen.clone(),
            data_dir: self.data_dir.clone(),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the REST API and webhook ingress (with no configuration: SQLite under ./data).
    Serve(ServerArgs),
    /// Only the REST API and webhook ingress (scale out over PostgreSQL with `worker`).
    Api(ServerArgs),
    /// Only the scheduler and the run workers, with /healthz, /readyz and /metrics.
    Worker(ServerArgs),
    /// Apply pending database migrations and exit.
    Migrate(ServerArgs),
    /// Create an operator token (admin over every tenant) and print it once: the first in
    /// production, where none is generated at start, or one that replaces a lost one.
    OperatorToken {
        #[command(flatten)]
        server: ServerArgs,
        /// The token's name in the audit log and token lists.
        #[arg(long, default_value = "operator")]
        name: String,
        /// Revoke this operator token (its id, `tok_...`) instead of creating one: a leaked
        /// one, even the last (this command can always make another).
        #[arg(long, value_name = "TOKEN_ID", conflicts_with = "name")]
        revoke: Option<String>,
    },
    /// Ask a running synchub whether it is ready: exit 0 when the URL answers 2xx within
    /// five seconds (a container's HEALTHCHECK, which has no curl).
    Health {
        #[arg(default_value = "http://127.0.0.1:8080/readyz")]
        url: String,
    },
    /// Master key helpers.
    #[command(subcommand)]
    MasterKey(MasterKeyCommand),
    /// Connector manifest helpers.
    #[command(subcommand)]
    Connector(ConnectorCommand),
    /// Serve the platform simulator (Shopify, generic ERP) for tests, demos and benchmarks.
    #[cfg(feature = "dev-tools")]
    Sim {
        #[arg(long, default_value = "127.0.0.1:9090")]
        listen: String,
        /// Orders each simulated shop starts with.
        #[arg(long, default_value_t = 1000)]
        orders: usize,
    },
    /// Watch orders flow: the simulator, the service, a tenant, stores, an ERP and flows,
    /// with a live table.
    #[cfg(feature = "dev-tools")]
    Demo(crate::demo::DemoArgs),
    /// Benchmarks (run on a release build).
    #[cfg(feature = "dev-tools")]
    #[command(subcommand)]
    Bench(crate::bench::BenchCommand),
}

#[derive(Debug, Subcommand)]
pub enum MasterKeyCommand {
    /// Print a new random master key (base64 of 32 bytes).
    Generate,
    /// Re-wrap every secret's data key with a new master key. The current key comes from
    /// the usual configuration; the new one from SYNCHUB_NEW_MASTER_KEY (or is generated).
    Rotate(ServerArgs),
}

#[derive(Debug, Subcommand)]
pub enum ConnectorCommand {
    /// Check a manifest and report every problem with its field path.
    Lint { file: PathBuf },
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => run_role(&args, Role::All).await?,
        Command::Api(args) => run_role(&args, Role::Api).await?,
        Command::Worker(args) => run_role(&args, Role::Worker).await?,
        Command::Migrate(args) => {
            let settings = Settings::load(&args.overrides())?;
            crate::telemetry::init_logging(settings.log_json);
            let db = crate::store::connect(&settings).await?;
            crate::store::settle_schema(&db, true, std::time::Duration::ZERO).await?;
            // The job queue's tables too, so that the roles find everything in place.
            let queue_db = crate::store::connect_queue(&settings, &db).await?;
            crate::runtime::Queue::open(queue_db.as_ref().unwrap_or(&db))
                .await
                .context("preparing the job queue's tables")?;
            println!("migrations applied");
        }
        Command::Health { url } => health(&url).await?,
        Command::OperatorToken {
            server,
            name,
            revoke,
        } => {
            let settings = Settings::load(&server.overrides())?;
            crate::telemetry::init_logging(settings.log_json);
            let db = crate::store::connect(&settings).await?;
            crate::store::settle_schema(&db, false, std::time::Duration::ZERO).await?;
            match revoke {
                Some(id) => {
                    let revoked = crate::tenancy::revoke_operator_token(
                        &db,
                        &crate::audit::Actor::system("cli:operator-token"),
                        &id,
                        crate::tenancy::LastOperatorToken::MayRevoke,
                        chrono::Utc::now(),
                    )
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                    println!("revoked {} ({})", revoked.id, revoked.name);
                }
                None => {
                    let token = crate::tenancy::create_operator_token(&db, &name)
                        .await
                        .map_err(|e| anyhow::anyhow!("{e}"))?;
                    println!("{token}");
                }
            }
        }
        Command::MasterKey(MasterKeyCommand::Generate) => {
            println!("{}", MasterKey::generate()?.to_base64());
        }
        Command::MasterKey(MasterKeyCommand::Rotate(args)) => rotate_master_key(&args).await?,
        Command::Connector(ConnectorCommand::Lint { file }) => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            match Manifest::parse(&text) {
                Ok(manifest) => println!(
                    "{}: ok ({} {})",
                    file.display(),
                    manifest.name,
                    manifest.version
                ),
                Err(problems) => {
                    for problem in &problems {
                        eprintln!("{}: {}: {}", file.display(), problem.field, problem.message);
                    }
                    anyhow::bail!("{} problem(s) in {}", problems.len(), file.display());
                }
            }
        }
        #[cfg(feature = "dev-tools")]
        Command::Sim { listen, orders } => crate::sim::serve(&listen, orders).await?,
        #[cfg(feature = "dev-tools")]
        Command::Demo(args) => crate::demo::run(args).await?,
        #[cfg(feature = "dev-tools")]
        Command::Bench(command) => crate::bench::run(command).await?,
    }
    Ok(())
}

/// The operator's own probe of a local address: not a call a tenant can steer, so it needs
/// no guard.
#[allow(clippy::disallowed_methods)]
async fn health(url: &str) -> anyhow::Result<()> {
    let answer = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(5))
        .build()?
        .get(url)
        .send()
        .await
        .with_context(|| format!("asking {url}"))?;
    let status = answer.status();
    anyhow::ensure!(status.is_success(), "{url} answered {status}");
    println!("{url}: {status}");
    Ok(())
}

async fn run_role(args: &ServerArgs, role: Role) -> anyhow::Result<()> {
    let mut settings = Settings::load(&args.overrides())?;
    // A worker beside an api on one host: its own port, unless told where to listen.
    if role == Role::Worker && args.listen.is_none() && std::env::var_os("SYNCHUB_LISTEN").is_none()
    {
        settings.listen = settings.worker_listen;
    }
    crate::telemetry::init_logging(settings.log_json);
    let app = Application::build_role(settings, role).await?;
    app.run_until_stopped().await?;
    Ok(())
}

async fn rotate_master_key(args: &ServerArgs) -> anyhow::Result<()> {
    let settings = Settings::load(&args.overrides())?;
    crate::telemetry::init_logging(settings.log_json);
    let old = resolve_master_key(&settings)?;
    let (new, generated) = match std::env::var("SYNCHUB_NEW_MASTER_KEY") {
        Ok(text) => (
            MasterKey::from_base64(&text).context("SYNCHUB_NEW_MASTER_KEY")?,
            false,
        ),
        Err(_) => (MasterKey::generate()?, true),
    };
    let key_file = settings.data_dir.join(crate::vault::master_key::KEY_FILE);
    let file_based = settings.master_key.is_empty();
    // Keep the new key on disk before any row depends on it.
    let staged = key_file.with_extension("key.new");
    if file_based {
        crate::vault::master_key::write_private(&staged, &new.to_base64())?;
    }
    let db = crate::store::connect(&settings).await?;
    // One transaction: the secrets and every other sealed value move together.
    let txn = crate::store::begin_write(&db).await?;
    let count = crate::vault::rewrap_secrets(&txn, &old, &new).await?;
    let kept = crate::idempotency::rewrap_kept(&txn, &old, &new).await?;
    txn.commit().await?;
    tracing::info!(secrets = count, kept_responses = kept, "master key rotated");
    if file_based {
        std::fs::rename(&staged, &key_file).context("installing the new master key file")?;
        println!(
            "re-wrapped {count} secret(s); {} now holds key {}",
            key_file.display(),
            new.id()
        );
    } else {
        println!(
            "re-wrapped {count} secret(s) from key {} to key {}.",
            old.id(),
            new.id()
        );
        if generated {
            println!(
                "Set SYNCHUB_MASTER_KEY to this new key before restarting:\n{}",
                new.to_base64()
            );
        } else {
            println!("Set SYNCHUB_MASTER_KEY to the new key before restarting.");
        }
    }
    Ok(())
}
