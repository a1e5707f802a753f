//! What the queue page shows: queued runs in the order workers will take them, running runs
//! with their progress, and the workers.
use chrono::{DateTime, Utc};
use sqlx::PgPool;

#[derive(Debug, sqlx::FromRow)]
pub struct QueuedRun {
    pub id: i64,
    pub name: Option<String>,
    pub kind: String,
    pub experiment_name: String,
    pub queue: String,
    pub priority: i32,
    /// 1 for the next run this queue starts.
    pub position: i64,
    /// Since it was submitted, or since its parent finished for a pipeline child.
    pub queued_at: DateTime<Utc>,
    /// Set after an infrastructure failure: no worker starts it again before then.
    pub retry_at: Option<DateTime<Utc>>,
}

#[derive(Debug, sqlx::FromRow)]
pub struct RunningRun {
    pub id: i64,
    pub name: Option<String>,
    pub kind: String,
    pub experiment_name: String,
    pub queue: String,
    pub worker_id: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub attempt: i32,
    /// Epochs finished so far and planned (train runs, and prune runs' fine-tuning).
    pub epochs_done: Option<i64>,
    pub epochs_planned: Option<i64>,
    pub last_step: Option<i64>,
    pub cancel_requested: bool,
}

#[derive(Debug, sqlx::FromRow)]
pub struct WorkerRow {
    pub id: String,
    pub host: String,
    pub device: String,
    pub queues: Vec<String>,
    pub started_at: DateTime<Utc>,
    pub heartbeat_seconds: f64,
    pub current_run_id: Option<i64>,
}

/// Queued runs of the user's teams, by queue and position. Positions count every queued run
/// of the queue, the user's or not, because other teams' runs go first just the same.
pub async fn queued(pool: &PgPool, user_id: i64) -> sqlx::Result<Vec<QueuedRun>> {
    sqlx::query_as(
        "SELECT q.id, q.name, q.kind, e.name AS experiment_name, q.queue, q.priority, q.position, q.queued_at, q.retry_at
         FROM (
             SELECT r.id, r.name, r.kind, r.experiment_id, r.queue, r.priority,
                    row_number() OVER (PARTITION BY r.queue ORDER BY r.priority DESC, r.id) AS position,
                    greatest(r.created_at, p.finished_at) AS queued_at, r.retry_at
             FROM runs r LEFT JOIN runs p ON p.id = r.parent_run_id
             WHERE r.status = 'queued'
         ) q
         JOIN experiments e ON e.id = q.experiment_id
         JOIN memberships m ON m.team_id = e.team_id AND m.user_id = $1
         ORDER BY q.queue, q.position
         LIMIT 1000",
    )
    .bind(user_id)
    .fetch_all(pool)
    .await
}

pub async fn running(pool: &PgPool, user_id: i64) -> sqlx::Result<Vec<RunningRun>> {
    sqlx::query_as(
        "SELECT r.id, r.name, r.kind, e.name AS experiment_name, r.queue, r.worker_id, r.started_at, r.attempt,
                (SELECT s.points FROM run_metrics s WHERE s.run_id = r.id AND s.key = 'epoch_seconds') AS epochs_done,
                coalesce(r.params #>> '{epochs}', r.params #>> '{fine_tune,epochs}')::bigint AS epochs_planned,
                (SELECT s.last_step FROM run_metrics s WHERE s.run_id = r.id AND s.key = 'train_loss') AS last_step,
                r.cancel_requested_at IS NOT NULL AS cancel_requested
         FROM runs r JOIN experiments e ON e.id = r.experiment_id
         JOIN memberships m ON m.team_id = e.team_id AND m.user_id = $1
         WHERE r.status = 'running'
         ORDER BY r.started_at, r.id",
    )
    .bind(user_id)
    .fetch_all(pool)
    .await
}

/// Workers heard from in the last day, the most recent first.
pub async fn workers(pool: &PgPool) -> sqlx::Result<Vec<WorkerRow>> {
    sqlx::query_as(
        "SELECT id, host, device, queues, started_at,
                extract(epoch FROM now() - last_heartbeat_at)::float8 AS heartbeat_seconds, current_run_id
         FROM workers WHERE last_heartbeat_at > now() - interval '1 day'
         ORDER BY last_heartbeat_at DESC, id",
    )
    .fetch_all(pool)
    .await
}
