//! Everything the worker reads from and writes to Postgres. Every write about a run carries
//! its `Lease` (run and attempt): a worker whose attempt was superseded changes nothing.
use cairn_domain::{RetryPolicy, RunId, RunJob, RunStatus};
use sqlx::PgPool;
use std::borrow::Cow;
use std::time::Duration;

/// The right to write for one attempt of one run; the attempt is the fencing token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub run_id: RunId,
    pub attempt: i32,
}

/// What renewing a lease found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseState {
    Held,
    CancelRequested,
    /// The attempt no longer holds the run: stop and write nothing more.
    Lost,
}

/// A run this worker now executes.
#[derive(Debug)]
pub struct ClaimedRun {
    pub lease: Lease,
    pub kind: String,
    pub params: serde_json::Value,
    pub parent_run_id: Option<RunId>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MetricPoint {
    /// Static for training's keys; built for per-class ones such as `precision/3`.
    pub key: Cow<'static, str>,
    pub step: u64,
    pub value: f64,
}

#[derive(Debug, Clone)]
pub struct Store {
    pool: PgPool,
}

impl Store {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    pub async fn register_worker(&self, id: &str, host: &str, device: &str, queues: &[String]) -> sqlx::Result<()> {
        sqlx::query(
            "INSERT INTO workers (id, host, device, queues) VALUES ($1, $2, $3, $4)
             ON CONFLICT (id) DO UPDATE SET host = $2, device = $3, queues = $4, last_heartbeat_at = now()",
        )
        .bind(id)
        .bind(host)
        .bind(device)
        .bind(queues)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn heartbeat(&self, worker_id: &str) -> sqlx::Result<()> {
        sqlx::query("UPDATE workers SET last_heartbeat_at = now() WHERE id = $1")
            .bind(worker_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Claims the queued run that should start first in the queue of the job's run: the
    /// highest priority, then the oldest. A job on Redis only wakes a worker up; each queued
    /// run has one job there, so every job claims one run, and priorities hold whatever order
    /// the jobs arrived in. `None`: nothing is queued there any more (the job is stale).
    pub async fn claim(&self, job: &RunJob, worker_id: &str, lease: Duration) -> sqlx::Result<Option<ClaimedRun>> {
        let mut tx = self.pool.begin().await?;
        let row: Option<(i64, i32, String, serde_json::Value, Option<i64>)> = sqlx::query_as(
            "WITH best AS (
                 SELECT r.id FROM runs r
                 WHERE r.status = 'queued' AND r.queue = (SELECT queue FROM runs WHERE id = $1)
               AND (r.retry_at IS NULL OR r.retry_at <= now())
                 ORDER BY r.priority DESC, r.id
                 LIMIT 1
                 FOR UPDATE SKIP LOCKED
             )
             UPDATE runs SET status = 'running', attempt = runs.attempt + 1, worker_id = $2,
                    started_at = coalesce(started_at, now()), error = NULL, retry_at = NULL,
                    lease_expires_at = now() + make_interval(secs => $3)
             FROM best WHERE runs.id = best.id
             RETURNING runs.id, runs.attempt, runs.kind, runs.params, runs.parent_run_id",
        )
        .bind(job.run_id.0)
        .bind(worker_id)
        .bind(lease.as_secs_f64())
        .fetch_optional(&mut *tx)
        .await?;
        if let Some((run_id, attempt, ..)) = &row {
            sqlx::query("INSERT INTO run_attempts (run_id, attempt, worker_id) VALUES ($1, $2, $3)")
                .bind(run_id)
                .bind(attempt)
                .bind(worker_id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("UPDATE workers SET current_run_id = $2, last_heartbeat_at = now() WHERE id = $1")
                .bind(worker_id)
                .bind(run_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(row.map(|(run_id, attempt, kind, params, parent)| ClaimedRun {
            lease: Lease { run_id: RunId(run_id), attempt },
            kind,
            params,
            parent_run_id: parent.map(RunId),
        }))
    }

    /// Extends the lease by `duration` if the attempt still holds it.
    pub async fn renew_lease(&self, lease: Lease, duration: Duration) -> sqlx::Result<LeaseState> {
        let cancel_requested: Option<bool> = sqlx::query_scalar(
            "UPDATE runs SET lease_expires_at = now() + make_interval(secs => $3)
             WHERE id = $1 AND attempt = $2 AND status = 'running'
             RETURNING cancel_requested_at IS NOT NULL",
        )
        .bind(lease.run_id.0)
        .bind(lease.attempt)
        .bind(duration.as_secs_f64())
        .fetch_optional(&self.pool)
        .await?;
        Ok(match cancel_requested {
            None => LeaseState::Lost,
            Some(true) => LeaseState::CancelRequested,
            Some(false) => LeaseState::Held,
        })
    }

    /// Whether early stopping ends this sweep trial after `epoch`: the rung that stops it.
    /// The decision is Postgres's (`asha_stopping_rung`), over every trial's stored metric.
    pub async fn stopping_rung(&self, lease: Lease, epoch: u32) -> sqlx::Result<Option<i32>> {
        sqlx::query_scalar("SELECT asha_stopping_rung($1, $2)")
            .bind(lease.run_id.0)
            .bind(epoch as i32)
            .fetch_one(&self.pool)
            .await
    }

    /// The final checkpoint of a run, if it has one.
    pub async fn final_checkpoint(&self, run_id: RunId) -> sqlx::Result<Option<String>> {
        sqlx::query_scalar(
            "SELECT path FROM artifacts WHERE run_id = $1 AND kind = 'checkpoint' ORDER BY id DESC LIMIT 1",
        )
        .bind(run_id.0)
        .fetch_optional(&self.pool)
        .await
    }

    /// Where an uploaded file is kept, relative to the artifact directory.
    pub async fn upload_path(&self, upload_id: i64) -> sqlx::Result<Option<String>> {
        sqlx::query_scalar("SELECT path FROM uploads WHERE id = $1").bind(upload_id).fetch_optional(&self.pool).await
    }

    /// The checkpoint the last attempt that held the lease saved, if any.
    pub async fn resume_checkpoint(&self, run_id: RunId) -> sqlx::Result<Option<String>> {
        sqlx::query_scalar(
            "SELECT path FROM artifacts WHERE run_id = $1 AND kind = 'resume_checkpoint' ORDER BY created_at DESC LIMIT 1",
        )
        .bind(run_id.0)
        .fetch_optional(&self.pool)
        .await
    }

    /// Writes points in one statement; points already stored are kept as they are.
    pub async fn insert_metrics(&self, lease: Lease, points: &[MetricPoint]) -> sqlx::Result<u64> {
        let keys: Vec<&str> = points.iter().map(|p| p.key.as_ref()).collect();
        let steps: Vec<i64> = points.iter().map(|p| p.step as i64).collect();
        let values: Vec<f64> = points.iter().map(|p| p.value).collect();
        let result = sqlx::query(
            "INSERT INTO metrics (run_id, key, step, value)
             SELECT $1, p.key, p.step, p.value
             FROM UNNEST($3::text[], $4::int8[], $5::float8[]) AS p (key, step, value)
             WHERE EXISTS (SELECT 1 FROM runs WHERE id = $1 AND attempt = $2 AND status = 'running')
             ON CONFLICT (run_id, key, step) DO NOTHING",
        )
        .bind(lease.run_id.0)
        .bind(lease.attempt)
        .bind(&keys)
        .bind(&steps)
        .bind(&values)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected())
    }

    pub async fn insert_artifact(
        &self,
        lease: Lease,
        kind: &str,
        path: &str,
        bytes: u64,
        sha256: &str,
    ) -> sqlx::Result<bool> {
        let result = sqlx::query(
            "INSERT INTO artifacts (run_id, kind, path, bytes, sha256)
             SELECT $1, $3, $4, $5, $6
             WHERE EXISTS (SELECT 1 FROM runs WHERE id = $1 AND attempt = $2 AND status = 'running')
             ON CONFLICT (run_id, path) DO UPDATE SET bytes = $5, sha256 = $6, created_at = now()",
        )
        .bind(lease.run_id.0)
        .bind(lease.attempt)
        .bind(kind)
        .bind(path)
        .bind(bytes as i64)
        .bind(sha256)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    /// Ends the attempt with a final status. `false` if the lease was lost meanwhile.
    pub async fn finish(&self, lease: Lease, status: RunStatus, error: Option<&str>) -> sqlx::Result<bool> {
        let mut tx = self.pool.begin().await?;
        let result = sqlx::query(
            "UPDATE runs SET status = $3, error = $4, finished_at = now(), lease_expires_at = NULL
             WHERE id = $1 AND attempt = $2 AND status = 'running'",
        )
        .bind(lease.run_id.0)
        .bind(lease.attempt)
        .bind(status.as_str())
        .bind(error)
        .execute(&mut *tx)
        .await?;
        let held = result.rows_affected() == 1;
        if held {
            end_attempt(&mut tx, lease, status.as_str(), error).await?;
        }
        tx.commit().await?;
        Ok(held)
    }

    /// Ends the attempt with an infrastructure failure: the run is queued again after its
    /// backoff, or fails once `policy`'s attempts are spent. The new status, or `None` if the
    /// lease was lost meanwhile.
    pub async fn retry_or_fail(&self, lease: Lease, error: &str, policy: &RetryPolicy) -> sqlx::Result<Option<String>> {
        let (first_backoff, max_backoff) = policy.backoff_millis();
        sqlx::query_scalar("SELECT retry_or_fail($1, $2, 'infra_failed', $3, $4, $5, $6)")
            .bind(lease.run_id.0)
            .bind(lease.attempt)
            .bind(error)
            .bind(policy.max_attempts as i32)
            .bind(first_backoff)
            .bind(max_backoff)
            .fetch_one(&self.pool)
            .await
    }

    /// Returns the run to the queue for another attempt (the worker is shutting down), and
    /// tells the scheduler so it is pushed at once.
    pub async fn hand_back(&self, lease: Lease) -> sqlx::Result<bool> {
        let mut tx = self.pool.begin().await?;
        let result = sqlx::query(
            "UPDATE runs SET status = 'queued', worker_id = NULL, lease_expires_at = NULL
             WHERE id = $1 AND attempt = $2 AND status = 'running'",
        )
        .bind(lease.run_id.0)
        .bind(lease.attempt)
        .execute(&mut *tx)
        .await?;
        let held = result.rows_affected() == 1;
        if held {
            end_attempt(&mut tx, lease, "handed_back", Some("the worker shut down")).await?;
            sqlx::query("SELECT pg_notify('cairn_runs_queued', $1)")
                .bind(lease.run_id.0.to_string())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(held)
    }
}

/// Records how an attempt ended. (A trigger frees the worker once its run stops running.)
async fn end_attempt(
    tx: &mut sqlx::PgConnection,
    lease: Lease,
    outcome: &str,
    error: Option<&str>,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE run_attempts SET outcome = $3, error = $4, ended_at = now() WHERE run_id = $1 AND attempt = $2",
    )
    .bind(lease.run_id.0)
    .bind(lease.attempt)
    .bind(outcome)
    .bind(error)
    .execute(&mut *tx)
    .await?;
    Ok(())
}
