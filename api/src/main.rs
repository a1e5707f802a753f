use anyhow::Context;
use cairn_api::{Application, Settings, migrate};

/// `cairn-api` serves. Administration:
///   cairn-api migrate                 apply the migrations
///   cairn-api bootstrap TEAM USER     make USER an admin of TEAM (printing a new user's password)
///   cairn-api token USER [NAME]       print a new API token of USER
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    cairn_process::init_tracing();
    let settings = Settings::from_env().map_err(anyhow::Error::msg).context("reading settings")?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let pool = || sqlx::PgPool::connect(settings.database_url.expose());
    match args[..] {
        ["migrate"] => migrate(settings.database_url.expose()).await,
        ["bootstrap", team, user] => {
            match cairn_api::admin::bootstrap(&pool().await?, team, user).await? {
                Some(password) => println!("created user {user} (admin of {team}) with password {password}"),
                None => println!("user {user} is an admin of {team}"),
            }
            Ok(())
        }
        ["token", user] | ["token", user, _] => {
            let name = args.get(2).copied().unwrap_or("cli");
            println!("{}", cairn_api::admin::token(&pool().await?, user, name).await?);
            Ok(())
        }
        [] => {
            let app = Application::build(settings).await?;
            tracing::info!(port = app.port(), "api listening");
            Ok(app.run_until_stopped().await?)
        }
        _ => anyhow::bail!(
            "unknown command {args:?}; expected none, `migrate`, `bootstrap TEAM USER` or `token USER [NAME]`"
        ),
    }
}
