//! Administration from the command line: the first team and admin, and API tokens for
//! scripts (`cairn-api bootstrap`, `cairn-api token`).
use crate::{auth::secrets, routes::issue_token};
use anyhow::Context;
use sqlx::PgPool;

/// Makes sure `team` exists and `user` is its admin. A user created here gets a random
/// password, returned once.
pub async fn bootstrap(pool: &PgPool, team: &str, user: &str) -> anyhow::Result<Option<String>> {
    let mut tx = pool.begin().await?;
    sqlx::query("INSERT INTO teams (name) VALUES ($1) ON CONFLICT (name) DO NOTHING")
        .bind(team)
        .execute(&mut *tx)
        .await?;
    let team_id: i64 =
        sqlx::query_scalar("SELECT id FROM teams WHERE name = $1").bind(team).fetch_one(&mut *tx).await?;
    let existing: Option<i64> =
        sqlx::query_scalar("SELECT id FROM users WHERE name = $1").bind(user).fetch_optional(&mut *tx).await?;
    let (user_id, password) = match existing {
        Some(id) => (id, None),
        None => {
            let password = secrets::generate("")[..24].to_owned();
            let hash = secrets::hash_password(&password).map_err(anyhow::Error::msg)?;
            let id: i64 = sqlx::query_scalar("INSERT INTO users (name, password_hash) VALUES ($1, $2) RETURNING id")
                .bind(user)
                .bind(hash)
                .fetch_one(&mut *tx)
                .await?;
            (id, Some(password))
        }
    };
    sqlx::query(
        "INSERT INTO memberships (team_id, user_id, role) VALUES ($1, $2, 'admin')
         ON CONFLICT (team_id, user_id) DO UPDATE SET role = 'admin'",
    )
    .bind(team_id)
    .bind(user_id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(password)
}

/// Creates a user with `password` and gives them `role` in `team` (which must exist).
pub async fn add_user(pool: &PgPool, team: &str, user: &str, password: &str, role: &str) -> anyhow::Result<i64> {
    let hash = secrets::hash_password(password).map_err(anyhow::Error::msg)?;
    let mut tx = pool.begin().await?;
    let team_id: i64 = sqlx::query_scalar("SELECT id FROM teams WHERE name = $1")
        .bind(team)
        .fetch_optional(&mut *tx)
        .await?
        .with_context(|| format!("no team `{team}`"))?;
    let user_id: i64 = sqlx::query_scalar(
        "INSERT INTO users (name, password_hash) VALUES ($1, $2)
         ON CONFLICT (name) DO UPDATE SET password_hash = $2 RETURNING id",
    )
    .bind(user)
    .bind(hash)
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO memberships (team_id, user_id, role) VALUES ($1, $2, $3)
         ON CONFLICT (team_id, user_id) DO UPDATE SET role = $3",
    )
    .bind(team_id)
    .bind(user_id)
    .bind(role)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(user_id)
}

/// A new API token of `user`, for scripts.
pub async fn token(pool: &PgPool, user: &str, name: &str) -> anyhow::Result<String> {
    let user_id: i64 = sqlx::query_scalar("SELECT id FROM users WHERE name = $1")
        .bind(user)
        .fetch_optional(pool)
        .await?
        .with_context(|| format!("no user `{user}`"))?;
    let (_, token) = issue_token(pool, user_id, name).await.map_err(|err| anyhow::anyhow!("{err}"))?;
    Ok(token)
}
