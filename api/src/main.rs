use anyhow::Context;
use cairn_api::{Application, Settings, migrate};

/// `cairn-api` serves; `cairn-api migrate` applies the migrations and exits.
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    init_tracing();
    let settings = Settings::from_env().map_err(anyhow::Error::msg).context("reading settings")?;
    match std::env::args().nth(1).as_deref() {
        Some("migrate") => migrate(&settings.database_url).await,
        None => {
            let app = Application::build(settings).await?;
            tracing::info!(port = app.port(), "api listening");
            Ok(app.run_until_stopped().await?)
        }
        Some(other) => {
            anyhow::bail!("unknown command `{other}`; expected no argument or `migrate`")
        }
    }
}

/// Logs to stderr, filtered by `CAIRN_LOG` (default `info`); colours only on a terminal.
fn init_tracing() {
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("CAIRN_LOG").unwrap_or_else(|_| "info".into()))
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}
