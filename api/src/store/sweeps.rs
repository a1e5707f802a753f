use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

#[derive(Debug, Clone, Serialize, sqlx::FromRow, schemars::JsonSchema)]
pub struct Sweep {
    pub id: i64,
    pub experiment_id: i64,
    pub spec: serde_json::Value,
    pub max_parallel: i32,
    pub metric: String,
    pub direction: String,
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// One trial: its first run (the root of its pipeline) and its best value of the sweep's
/// metric among all of the trial's runs.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, schemars::JsonSchema)]
pub struct Trial {
    pub trial: i32,
    pub run_id: i64,
    pub status: String,
    pub error: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub value: Option<f64>,
}

pub async fn create(
    tx: &mut sqlx::PgConnection,
    experiment_id: i64,
    submitted_by: i64,
    spec: &serde_json::Value,
    max_parallel: i32,
    metric: &str,
    direction: &str,
) -> sqlx::Result<Sweep> {
    sqlx::query_as(
        "INSERT INTO sweeps (experiment_id, submitted_by, spec, max_parallel, metric, direction)
         VALUES ($1, $2, $3, $4, $5, $6)
         RETURNING id, experiment_id, spec, max_parallel, metric, direction, status, created_at, finished_at",
    )
    .bind(experiment_id)
    .bind(submitted_by)
    .bind(spec)
    .bind(max_parallel)
    .bind(metric)
    .bind(direction)
    .fetch_one(tx)
    .await
}

/// Records a trial from its planned runs (`Planned::trial_runs`), queued or waiting; returns
/// the id of its root run.
pub async fn record_trial(
    tx: &mut sqlx::PgConnection,
    sweep_id: i64,
    trial: i32,
    runs: &serde_json::Value,
    queued: bool,
) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT record_sweep_trial($1, $2, $3, $4)")
        .bind(sweep_id)
        .bind(trial)
        .bind(runs)
        .bind(queued)
        .fetch_one(tx)
        .await
}

/// Keeps a validated spare trial, recorded by the database if a trial fails.
pub async fn keep_spare(
    tx: &mut sqlx::PgConnection,
    sweep_id: i64,
    trial: i32,
    runs: &serde_json::Value,
) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO sweep_spares (sweep_id, trial, runs) VALUES ($1, $2, $3)")
        .bind(sweep_id)
        .bind(trial)
        .bind(runs)
        .execute(tx)
        .await?;
    Ok(())
}

/// How many more failed trials the sweep can still replace.
pub async fn spares_left(pool: &PgPool, sweep_id: i64) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT count(*) FROM sweep_spares WHERE sweep_id = $1").bind(sweep_id).fetch_one(pool).await
}

pub async fn get(pool: &PgPool, id: i64) -> sqlx::Result<Option<Sweep>> {
    sqlx::query_as(
        "SELECT id, experiment_id, spec, max_parallel, metric, direction, status, created_at, finished_at
         FROM sweeps WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await
}

pub async fn trials(pool: &PgPool, sweep: &Sweep) -> sqlx::Result<Vec<Trial>> {
    sqlx::query_as(
        "SELECT r.trial, r.id AS run_id, r.status, r.error, r.started_at, r.finished_at,
                (SELECT CASE WHEN $3 = 'max' THEN max(s.last_value) ELSE min(s.last_value) END
                 FROM runs t JOIN run_metrics s ON s.run_id = t.id AND s.key = $2
                 WHERE t.sweep_id = $1 AND t.trial = r.trial) AS value
         FROM runs r WHERE r.sweep_id = $1 AND r.parent_run_id IS NULL ORDER BY r.trial",
    )
    .bind(sweep.id)
    .bind(&sweep.metric)
    .bind(&sweep.direction)
    .fetch_all(pool)
    .await
}

/// Stops a running sweep: it releases no more trials, its queued and waiting runs are
/// cancelled and its running ones asked to stop. `None` if it was not running.
pub async fn cancel(tx: &mut sqlx::PgConnection, id: i64) -> sqlx::Result<Option<(u64, u64)>> {
    let updated =
        sqlx::query("UPDATE sweeps SET status = 'cancelled', finished_at = now() WHERE id = $1 AND status = 'running'")
            .bind(id)
            .execute(&mut *tx)
            .await?;
    if updated.rows_affected() == 0 {
        return Ok(None);
    }
    let cancelled = sqlx::query(
        "UPDATE runs SET status = 'cancelled', finished_at = now(), cancel_requested_at = now(),
                error = format('sweep %s cancelled', $1::bigint)
         WHERE sweep_id = $1 AND status IN ('queued', 'waiting')",
    )
    .bind(id)
    .execute(&mut *tx)
    .await?;
    let stopping = sqlx::query(
        "UPDATE runs SET cancel_requested_at = coalesce(cancel_requested_at, now()) WHERE sweep_id = $1 AND status = 'running'",
    )
    .bind(id)
    .execute(&mut *tx)
    .await?;
    Ok(Some((cancelled.rows_affected(), stopping.rows_affected())))
}

/// An experiment's sweeps, newest first, with how many trials each has and has finished.
pub async fn of_experiment(pool: &PgPool, experiment_id: i64) -> sqlx::Result<Vec<(Sweep, i64, i64)>> {
    #[derive(sqlx::FromRow)]
    struct Row {
        #[sqlx(flatten)]
        sweep: Sweep,
        trials: i64,
        finished: i64,
    }
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT s.id, s.experiment_id, s.spec, s.max_parallel, s.metric, s.direction, s.status, s.created_at, s.finished_at,
                count(r.id) AS trials,
                count(r.id) FILTER (WHERE r.status IN ('succeeded', 'failed', 'cancelled', 'stopped_early')) AS finished
         FROM sweeps s LEFT JOIN runs r ON r.sweep_id = s.id AND r.parent_run_id IS NULL
         WHERE s.experiment_id = $1 GROUP BY s.id ORDER BY s.id DESC LIMIT 50",
    )
    .bind(experiment_id)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|row| (row.sweep, row.trials, row.finished)).collect())
}
