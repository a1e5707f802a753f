use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

#[derive(Debug, Clone, Serialize, sqlx::FromRow, schemars::JsonSchema)]
pub struct Experiment {
    pub id: i64,
    pub team_id: i64,
    pub name: String,
    pub description: String,
    pub created_at: DateTime<Utc>,
}

/// An experiment with what the experiments page shows about its runs.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, schemars::JsonSchema)]
pub struct ExperimentSummary {
    #[sqlx(flatten)]
    #[serde(flatten)]
    pub experiment: Experiment,
    pub runs: i64,
    /// Pipeline children waiting for their parent.
    pub waiting: i64,
    pub queued: i64,
    pub running: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub cancelled: i64,
    /// Sweep trials that early stopping ended.
    pub stopped_early: i64,
    /// Its main metric: the best accuracy among its runs (the last validation accuracy of a
    /// train run, the accuracy an evaluation measured).
    pub best_accuracy: Option<f64>,
    pub last_activity_at: DateTime<Utc>,
}

pub enum Created {
    Experiment(Experiment),
    NameTaken,
}

pub async fn create(
    db: impl sqlx::PgExecutor<'_>,
    team_id: i64,
    name: &str,
    description: &str,
) -> sqlx::Result<Created> {
    let row = sqlx::query_as(
        "INSERT INTO experiments (team_id, name, description) VALUES ($1, $2, $3)
         ON CONFLICT (team_id, name) DO NOTHING RETURNING id, team_id, name, description, created_at",
    )
    .bind(team_id)
    .bind(name)
    .bind(description)
    .fetch_optional(db)
    .await?;
    Ok(row.map_or(Created::NameTaken, Created::Experiment))
}

pub async fn get(pool: &PgPool, id: i64) -> sqlx::Result<Option<Experiment>> {
    sqlx::query_as("SELECT id, team_id, name, description, created_at FROM experiments WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await
}

/// An experiment with the role `user_id` has in its team (`None`: not a member), in one query.
pub async fn get_with_role(pool: &PgPool, id: i64, user_id: i64) -> sqlx::Result<Option<(Experiment, Option<String>)>> {
    #[derive(sqlx::FromRow)]
    struct Row {
        #[sqlx(flatten)]
        experiment: Experiment,
        role: Option<String>,
    }
    let row: Option<Row> = sqlx::query_as(
        "SELECT e.id, e.team_id, e.name, e.description, e.created_at, m.role FROM experiments e
         LEFT JOIN memberships m ON m.team_id = e.team_id AND m.user_id = $2 WHERE e.id = $1",
    )
    .bind(id)
    .bind(user_id)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|row| (row.experiment, row.role)))
}

/// The experiments of every team `user_id` belongs to.
pub async fn list(pool: &PgPool, user_id: i64) -> sqlx::Result<Vec<ExperimentSummary>> {
    sqlx::query_as(
        "SELECT e.id, e.team_id, e.name, e.description, e.created_at,
                count(r.id) AS runs,
                count(r.id) FILTER (WHERE r.status = 'waiting') AS waiting,
                count(r.id) FILTER (WHERE r.status = 'queued') AS queued,
                count(r.id) FILTER (WHERE r.status = 'running') AS running,
                count(r.id) FILTER (WHERE r.status = 'succeeded') AS succeeded,
                count(r.id) FILTER (WHERE r.status = 'failed') AS failed,
                count(r.id) FILTER (WHERE r.status = 'cancelled') AS cancelled,
                count(r.id) FILTER (WHERE r.status = 'stopped_early') AS stopped_early,
                max(best.value) AS best_accuracy,
                greatest(e.created_at, max(coalesce(r.finished_at, r.started_at, r.created_at))) AS last_activity_at
         FROM experiments e
         LEFT JOIN runs r ON r.experiment_id = e.id
         LEFT JOIN LATERAL (
             SELECT max(s.last_value) AS value FROM run_metrics s
             WHERE s.run_id = r.id AND s.key IN ('val_accuracy', 'accuracy')
         ) best ON true
         WHERE e.team_id IN (SELECT team_id FROM memberships WHERE user_id = $1)
         GROUP BY e.id
         ORDER BY last_activity_at DESC, e.id DESC",
    )
    .bind(user_id)
    .fetch_all(pool)
    .await
}

/// The team an experiment belongs to.
pub async fn team_id(db: impl sqlx::PgExecutor<'_>, experiment_id: i64) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT team_id FROM experiments WHERE id = $1").bind(experiment_id).fetch_one(db).await
}
