//! `ironhub serve`: wiring only.

pub async fn run(args: crate::config::ServeArgs) -> anyhow::Result<()> {
    let _config = args.resolve()?;
    anyhow::bail!("serve is being written")
}
