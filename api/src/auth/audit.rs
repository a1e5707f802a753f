//! Who created, cancelled or revoked what, and when.
use serde::Serialize;
use sqlx::PgExecutor;

pub struct Entry<'a> {
    pub user_id: i64,
    pub team_id: Option<i64>,
    pub action: &'a str,
    pub target_type: &'a str,
    pub target_id: Option<i64>,
    pub details: serde_json::Value,
}

pub async fn record(db: impl PgExecutor<'_>, entry: Entry<'_>) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO audit_log (user_id, team_id, action, target_type, target_id, details) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(entry.user_id)
    .bind(entry.team_id)
    .bind(entry.action)
    .bind(entry.target_type)
    .bind(entry.target_id)
    .bind(entry.details)
    .execute(db)
    .await?;
    Ok(())
}

#[derive(Debug, Serialize, sqlx::FromRow, schemars::JsonSchema)]
pub struct Logged {
    pub id: i64,
    pub at: chrono::DateTime<chrono::Utc>,
    pub user: Option<String>,
    pub team_id: Option<i64>,
    pub action: String,
    pub target_type: String,
    pub target_id: Option<i64>,
    pub details: serde_json::Value,
}

/// The newest entries of a team, or of the user's own actions when `team_id` is `None`.
pub async fn list(db: impl PgExecutor<'_>, team_id: i64, limit: i64) -> sqlx::Result<Vec<Logged>> {
    sqlx::query_as(
        "SELECT a.id, a.at, u.name AS user, a.team_id, a.action, a.target_type, a.target_id, a.details
         FROM audit_log a LEFT JOIN users u ON u.id = a.user_id
         WHERE a.team_id = $1 ORDER BY a.id DESC LIMIT $2",
    )
    .bind(team_id)
    .bind(limit)
    .fetch_all(db)
    .await
}
