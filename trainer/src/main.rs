use anyhow::Context;
use cairn_trainer::{Settings, Worker};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    cairn_process::init_tracing_with(vec![Box::new(cairn_trainer::run_log::layer())]);
    let settings = Settings::from_env().map_err(anyhow::Error::msg).context("reading settings")?;
    let worker = Worker::build(settings).await?;
    worker.run_until(cairn_process::shutdown_signal()).await
}
