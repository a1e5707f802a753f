use anyhow::Context;
use cairn_scheduler::{Scheduler, Settings};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    cairn_process::init_tracing();
    let settings = Settings::from_env().map_err(anyhow::Error::msg).context("reading settings")?;
    let scheduler = Scheduler::build(settings).await?;
    scheduler.run_until(cairn_process::shutdown_signal()).await
}
