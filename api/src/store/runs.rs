use cairn_domain::{RunKind, RunStatus};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

/// The columns of `Run`, for statements that alias `runs` as `r`. A macro so that statements
/// stay `&'static str` (sqlx 0.9 refuses runtime-built SQL).
macro_rules! run_columns {
    () => {
        "r.id, r.experiment_id, r.name, r.kind, r.status, r.params, r.parent_run_id, r.queue, r.priority,
         r.attempt, r.worker_id, r.error, r.cancel_requested_at, r.created_at, r.started_at, r.finished_at,
         r.submitted_by, r.sweep_id, r.trial, r.time_limit_seconds, r.retry_at"
    };
}

/// Joins a run `r` to its accuracy `acc.value`: the last validation accuracy of a train run,
/// the accuracy of an evaluate run, the accuracy after pruning or quantizing. Read from the
/// `run_metrics` summaries, not the points.
macro_rules! accuracy_join {
    () => {
        "LEFT JOIN LATERAL (
             SELECT s.last_value AS value FROM run_metrics s
             WHERE s.run_id = r.id AND s.key IN ('val_accuracy', 'accuracy', 'accuracy_after')
             ORDER BY s.last_step DESC LIMIT 1
         ) acc ON true"
    };
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow, schemars::JsonSchema)]
pub struct Run {
    pub id: i64,
    pub experiment_id: i64,
    pub name: Option<String>,
    pub kind: String,
    pub status: String,
    pub params: serde_json::Value,
    pub parent_run_id: Option<i64>,
    pub queue: String,
    pub priority: i32,
    pub attempt: i32,
    pub worker_id: Option<String>,
    pub error: Option<String>,
    pub cancel_requested_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// The user who submitted it (`None` once that user is deleted).
    pub submitted_by: Option<i64>,
    /// The sweep it is a trial (or part of a trial's pipeline) of, and the trial's number.
    pub sweep_id: Option<i64>,
    pub trial: Option<i32>,
    pub time_limit_seconds: Option<i32>,
    /// While queued after an infrastructure failure: no worker starts it again before then.
    pub retry_at: Option<DateTime<Utc>>,
}

impl Run {
    pub fn status(&self) -> Option<RunStatus> {
        self.status.parse().ok()
    }

    /// Wall time from start to finish, or to now while running.
    pub fn duration_seconds(&self) -> Option<f64> {
        let started = self.started_at?;
        let end = self.finished_at.unwrap_or_else(Utc::now);
        Some((end - started).num_milliseconds() as f64 / 1e3)
    }
}

/// A run with its accuracy (the last validation accuracy of a train run, the accuracy of an
/// evaluate run), for tables.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, schemars::JsonSchema)]
pub struct RunRow {
    #[sqlx(flatten)]
    #[serde(flatten)]
    pub run: Run,
    pub accuracy: Option<f64>,
}

pub struct NewRun<'a> {
    pub experiment_id: i64,
    pub name: Option<&'a str>,
    pub submitted_by: i64,
    pub time_limit_seconds: Option<i32>,
    pub kind: RunKind,
    /// Queued, or waiting for its parent to succeed.
    pub status: RunStatus,
    pub parent_run_id: Option<i64>,
    pub params: serde_json::Value,
    pub queue: &'a str,
    pub priority: i32,
}

/// Records a run inside the caller's transaction and, if it is queued, tells the scheduler:
/// once it commits, the run exists and will be pushed (by the notification, or by the next
/// sweep).
pub async fn create(tx: &mut sqlx::PgConnection, new: NewRun<'_>) -> sqlx::Result<Run> {
    let run: Run = sqlx::query_as(concat!(
        "INSERT INTO runs AS r (experiment_id, kind, params, queue, priority, parent_run_id, status, name, submitted_by,
                                time_limit_seconds)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
         RETURNING ",
        run_columns!(),
        ""
    ))
    .bind(new.experiment_id)
    .bind(new.kind.as_str())
    .bind(&new.params)
    .bind(new.queue)
    .bind(new.priority)
    .bind(new.parent_run_id)
    .bind(new.status.as_str())
    .bind(new.name)
    .bind(new.submitted_by)
    .bind(new.time_limit_seconds)
    .fetch_one(&mut *tx)
    .await?;
    if new.status == RunStatus::Queued {
        sqlx::query("SELECT pg_notify('cairn_runs_queued', $1)").bind(run.id.to_string()).execute(&mut *tx).await?;
    }
    Ok(run)
}

pub async fn get(pool: &PgPool, id: i64) -> sqlx::Result<Option<Run>> {
    sqlx::query_as(concat!("SELECT ", run_columns!(), " FROM runs r WHERE r.id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await
}

/// A run with the role `user_id` has in its team (`None`: not a member), in one query.
pub async fn get_with_role(pool: &PgPool, id: i64, user_id: i64) -> sqlx::Result<Option<(Run, Option<String>)>> {
    #[derive(sqlx::FromRow)]
    struct Row {
        #[sqlx(flatten)]
        run: Run,
        role: Option<String>,
    }
    let row: Option<Row> = sqlx::query_as(concat!(
        "SELECT ",
        run_columns!(),
        ", m.role FROM runs r JOIN experiments e ON e.id = r.experiment_id
         LEFT JOIN memberships m ON m.team_id = e.team_id AND m.user_id = $2 WHERE r.id = $1"
    ))
    .bind(id)
    .bind(user_id)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|row| (row.run, row.role)))
}

/// A run's lineage: the run it was made from, and the runs made from it (evaluations of its
/// checkpoint), oldest first. They share the run's experiment, so whoever sees the run sees them.
pub async fn lineage(pool: &PgPool, run: &Run) -> sqlx::Result<(Option<RunRow>, Vec<RunRow>)> {
    let rows: Vec<RunRow> = sqlx::query_as(concat!(
        "SELECT ",
        run_columns!(),
        ", acc.value AS accuracy
         FROM runs r ",
        accuracy_join!(),
        " WHERE r.parent_run_id = $1 OR r.id = $2 ORDER BY r.id"
    ))
    .bind(run.id)
    .bind(run.parent_run_id)
    .fetch_all(pool)
    .await?;
    let (parents, children): (Vec<RunRow>, Vec<RunRow>) =
        rows.into_iter().partition(|row| Some(row.run.id) == run.parent_run_id);
    Ok((parents.into_iter().next(), children))
}

pub struct ListFilter {
    /// Only runs of teams this user belongs to.
    pub user_id: i64,
    pub experiment_id: Option<i64>,
    pub status: Option<RunStatus>,
    /// Only runs with a smaller id (the cursor of the previous page).
    pub before_id: Option<i64>,
    pub limit: i64,
}

/// Runs newest first, with their final validation accuracy.
pub async fn list(pool: &PgPool, filter: &ListFilter) -> sqlx::Result<Vec<RunRow>> {
    sqlx::query_as(concat!(
        "SELECT ",
        run_columns!(),
        ", acc.value AS accuracy
         FROM runs r ",
        accuracy_join!(),
        " WHERE ($1::bigint IS NULL OR r.experiment_id = $1)
           AND ($2::text IS NULL OR r.status = $2)
           AND ($3::bigint IS NULL OR r.id < $3)
           AND r.experiment_id IN (
               SELECT e.id FROM experiments e JOIN memberships m ON m.team_id = e.team_id WHERE m.user_id = $5)
         ORDER BY r.id DESC
         LIMIT $4"
    ))
    .bind(filter.experiment_id)
    .bind(filter.status.map(RunStatus::as_str))
    .bind(filter.before_id)
    .bind(filter.limit)
    .bind(filter.user_id)
    .fetch_all(pool)
    .await
}

/// Sets the priority of a run that has not started; `None` if it has.
pub async fn set_priority(tx: &mut sqlx::PgConnection, id: i64, priority: i32) -> sqlx::Result<Option<Run>> {
    sqlx::query_as(concat!(
        "UPDATE runs r SET priority = $2 WHERE r.id = $1 AND r.status IN ('queued', 'waiting') RETURNING ",
        run_columns!(),
        ""
    ))
    .bind(id)
    .bind(priority)
    .fetch_optional(tx)
    .await
}

pub enum CancelOutcome {
    /// It was queued or waiting and is now cancelled (and so are its waiting children).
    Cancelled(Run),
    /// It is running; its worker stops it at the next step.
    Requested(Run),
    AlreadyFinished(Run),
    NotFound,
}

pub async fn cancel(pool: &PgPool, id: i64) -> sqlx::Result<CancelOutcome> {
    let cancelled: Option<Run> = sqlx::query_as(concat!(
        "UPDATE runs r SET status = 'cancelled', finished_at = now(), cancel_requested_at = now(),
                error = 'cancelled before it started'
         WHERE r.id = $1 AND r.status IN ('queued', 'waiting') RETURNING ",
        run_columns!(),
        ""
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    if let Some(run) = cancelled {
        return Ok(CancelOutcome::Cancelled(run));
    }
    let requested: Option<Run> = sqlx::query_as(concat!(
        "UPDATE runs r SET cancel_requested_at = coalesce(cancel_requested_at, now())
         WHERE r.id = $1 AND r.status = 'running' RETURNING ",
        run_columns!(),
        ""
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    if let Some(run) = requested {
        return Ok(CancelOutcome::Requested(run));
    }
    Ok(match get(pool, id).await? {
        Some(run) => CancelOutcome::AlreadyFinished(run),
        None => CancelOutcome::NotFound,
    })
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow, schemars::JsonSchema)]
pub struct Artifact {
    pub id: i64,
    pub kind: String,
    pub path: String,
    pub bytes: i64,
    pub sha256: String,
    pub created_at: DateTime<Utc>,
}

pub async fn artifact(pool: &PgPool, run_id: i64, artifact_id: i64) -> sqlx::Result<Option<Artifact>> {
    sqlx::query_as("SELECT id, kind, path, bytes, sha256, created_at FROM artifacts WHERE run_id = $1 AND id = $2")
        .bind(run_id)
        .bind(artifact_id)
        .fetch_optional(pool)
        .await
}

pub async fn artifacts(pool: &PgPool, run_id: i64) -> sqlx::Result<Vec<Artifact>> {
    sqlx::query_as("SELECT id, kind, path, bytes, sha256, created_at FROM artifacts WHERE run_id = $1 ORDER BY id")
        .bind(run_id)
        .fetch_all(pool)
        .await
}

/// Those of `ids` that `user_id` may read (runs of the user's teams), in no particular order.
pub async fn visible(pool: &PgPool, user_id: i64, ids: &[i64]) -> sqlx::Result<Vec<Run>> {
    sqlx::query_as(concat!(
        "SELECT ",
        run_columns!(),
        " FROM runs r JOIN experiments e ON e.id = r.experiment_id
         JOIN memberships m ON m.team_id = e.team_id AND m.user_id = $2
         WHERE r.id = ANY($1)"
    ))
    .bind(ids)
    .bind(user_id)
    .fetch_all(pool)
    .await
}

/// One attempt of a run: which worker ran it, when, and how it ended.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, schemars::JsonSchema)]
pub struct Attempt {
    pub attempt: i32,
    pub worker_id: String,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub outcome: Option<String>,
    pub error: Option<String>,
}

pub async fn attempts(pool: &PgPool, run_id: i64) -> sqlx::Result<Vec<Attempt>> {
    sqlx::query_as(
        "SELECT attempt, worker_id, started_at, ended_at, outcome, error FROM run_attempts WHERE run_id = $1 ORDER BY attempt",
    )
    .bind(run_id)
    .fetch_all(pool)
    .await
}
