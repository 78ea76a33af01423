//! `ironhub migrate`: brings a cluster's PostgreSQL schema up to date without starting a
//! server, as an operator does before rolling out nodes of a new version (`serve --store`
//! applies what is missing at start too; both take the same advisory lock, so they never
//! migrate twice).

use clap::Args;

/// `ironhub migrate`
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The cluster's shared store: the `postgres://` URL `serve --store` takes.
    #[arg(long = "store", env = "IRONHUB_STORE", hide_env_values = true)]
    pub store: String,
    /// Only report what is missing; apply nothing, and fail when the schema is not current.
    #[arg(long)]
    pub check: bool,
}

/// Runs `ironhub migrate`.
#[allow(clippy::print_stdout)]
pub async fn run(args: &MigrateArgs) -> anyhow::Result<()> {
    let Some(options) = crate::config::store_url(Some(args.store.clone()))? else {
        anyhow::bail!("--store takes a postgres:// (or postgresql://) URL");
    };
    let pool = ironhub_postgres::connect(&options).await?;
    let newest = ironhub_postgres::MIGRATIONS.last().map_or(0, |(v, _)| *v);
    if args.check {
        let applied = ironhub_postgres::applied_versions(&pool).await?;
        let pending = ironhub_postgres::pending(&applied)?;
        if pending.is_empty() {
            println!("the schema is current (version {newest})");
            return Ok(());
        }
        anyhow::bail!(
            "the schema lacks migration(s) {} (run `ironhub migrate` without --check)",
            versions(&pending)
        );
    }
    let applied = ironhub_postgres::migrate(&pool).await?;
    if applied.is_empty() {
        println!("the schema is current (version {newest}); nothing to apply");
    } else {
        println!(
            "applied migration(s) {}; the schema is at version {newest}",
            versions(&applied)
        );
    }
    Ok(())
}

fn versions(list: &[i32]) -> String {
    list.iter()
        .map(i32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
