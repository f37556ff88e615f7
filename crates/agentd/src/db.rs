//! `agentd db`: moving an installation between databases.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, bail};

use crate::database::Location;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Copy a whole SQLite installation (keys, agents, environments, files, every session's
    /// log byte for byte) into an empty PostgreSQL database. The source is only read (after
    /// being brought to this agentd's schema); stop the servers using it first.
    Copy {
        /// The SQLite database: `sqlite:PATH` (the `agentd.db` in a data dir).
        #[arg(long)]
        from: String,
        /// The PostgreSQL database: `postgres://USER[:PASSWORD]@HOST[:PORT]/DB`, empty.
        #[arg(long, hide_env_values = true)]
        to: String,
    },
}

pub async fn run(c: Command) -> anyhow::Result<ExitCode> {
    let Command::Copy { from, to } = c;
    let here = std::path::Path::new(".");
    let Location::Sqlite(source) = Location::parse(Some(&from), here)? else {
        bail!(
            "--from must name a SQLite database (sqlite:PATH); copies go from SQLite to PostgreSQL"
        );
    };
    if !source.is_file() {
        bail!(
            "{} does not exist: --from names the agentd.db of a data dir",
            source.display()
        );
    }
    let target = Location::parse(Some(&to), here)?;
    let Location::Postgres(url) = &target else {
        bail!("--to must name a PostgreSQL database (postgres://…)");
    };
    let pg = agentd_postgres::PgStore::open(url, agentd_postgres::Options::default())
        .await
        .with_context(|| format!("cannot open {}", target.shown()))?;
    eprintln!(
        "agentd: copying {} into {}",
        source.display(),
        target.shown()
    );
    let progress = |table: &str, n: u64| {
        eprint!("\r  {table}: {n} rows");
        let _ = std::io::stderr().flush();
    };
    let copied = agentd_postgres::copy::from_sqlite(&source, &pg, |t, n| progress(t, n)).await;
    eprintln!();
    let copied = copied.context("the copy failed and the target was left as it was")?;
    for (table, n) in copied {
        println!("{table}\t{n}");
    }
    eprintln!(
        "agentd: done; start agentd serve with --database-url {}",
        target.shown()
    );
    Ok(ExitCode::SUCCESS)
}
