use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// The run page shows the last lines; a run that logged more says how many it left out.
pub const SHOWN_LINES: i64 = 500;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LogLine {
    pub attempt: i32,
    pub at: DateTime<Utc>,
    pub level: String,
    pub message: String,
}

/// The last `SHOWN_LINES` lines a worker logged for a run, oldest first, and how many it
/// logged in all.
pub async fn tail(pool: &PgPool, run_id: i64) -> sqlx::Result<(Vec<LogLine>, i64)> {
    let mut lines: Vec<LogLine> =
        sqlx::query_as("SELECT attempt, at, level, message FROM run_logs WHERE run_id = $1 ORDER BY id DESC LIMIT $2")
            .bind(run_id)
            .bind(SHOWN_LINES)
            .fetch_all(pool)
            .await?;
    lines.reverse();
    let total = if (lines.len() as i64) < SHOWN_LINES {
        lines.len() as i64
    } else {
        sqlx::query_scalar("SELECT count(*) FROM run_logs WHERE run_id = $1").bind(run_id).fetch_one(pool).await?
    };
    Ok((lines, total))
}
