//! The scheduler moves work from Postgres to the queue. Postgres decides what runs: every
//! queued run is pushed as soon as its row is committed (the API notifies on the
//! `cairn_runs_queued` channel), and all queued runs are pushed again on every sweep, so a
//! run whose push was lost (a crash between commit and push, Redis flushed or restarted) is
//! still trained. Pushing a job that is already on the queue is a no-op.

mod settings;

use anyhow::Context;
use cairn_domain::{RunId, RunJob};
use sqlx::{PgPool, postgres::PgListener};
use std::{
    collections::HashMap,
    future::Future,
    time::{Duration, Instant},
};

pub use settings::Settings;

/// The channel the API notifies with a run id when it commits a queued run.
pub const RUNS_QUEUED_CHANNEL: &str = "cairn_runs_queued";

/// A queued run whose retry backoff, if any, is over: one a worker may claim now.
macro_rules! due {
    () => {
        "status = 'queued' AND (retry_at IS NULL OR retry_at <= now())"
    };
}

/// How many queued runs one sweep pushes at most, in start order.
const SWEEP_LIMIT: i64 = 5_000;

pub struct Scheduler {
    settings: Settings,
    pool: PgPool,
    redis: cairn_queue::Connection,
    queues: HashMap<String, cairn_queue::Storage>,
    postgres_reachable_since: Instant,
}

impl Scheduler {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let pool = cairn_process::connect_postgres(settings.database_url.expose()).await?;
        let redis = cairn_queue::connect(settings.redis_url.expose()).await?;
        Ok(Self { settings, pool, redis, queues: HashMap::new(), postgres_reachable_since: Instant::now() })
    }

    /// Dispatches until `shutdown` completes.
    pub async fn run_until(mut self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let mut listener = PgListener::connect_with(&self.pool).await.context("listening to Postgres")?;
        listener.listen(RUNS_QUEUED_CHANNEL).await.context("listening to Postgres")?;
        let mut sweeps = tokio::time::interval(self.settings.sweep_interval);
        let mut vacuums = tokio::time::interval(self.settings.vacuum_interval);
        tokio::pin!(shutdown);
        tracing::info!(sweep_interval_ms = self.settings.sweep_interval.as_millis() as u64, "scheduler ready");
        loop {
            tokio::select! {
                () = &mut shutdown => return Ok(()),
                _ = sweeps.tick() => {
                    // Leases are only judged after Postgres has been reachable for a while:
                    // workers could not renew while it was away.
                    if self.postgres_reachable_since.elapsed() >= self.settings.reap_grace {
                        self.log_errors("ending expired leases", Self::reap_expired_leases).await;
                    }
                    self.log_errors("enforcing time limits", Self::enforce_time_limits).await;
                    self.log_errors("dispatching queued runs", Self::dispatch_all).await;
                }
                _ = vacuums.tick() => self.log_errors("vacuuming finished jobs", Self::vacuum_queues).await,
                notification = listener.recv() => match notification {
                    Ok(notification) => match notification.payload().parse::<i64>() {
                        Ok(run_id) => self.dispatch_one(RunId(run_id)).await,
                        Err(_) => tracing::warn!(payload = notification.payload(), "ignoring a malformed notification"),
                    },
                    // The listener reconnects by itself; the next sweep covers what was missed.
                    Err(err) => {
                        self.postgres_reachable_since = Instant::now();
                        tracing::warn!(error = %err, "listening to Postgres failed");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                },
            }
        }
    }

    async fn log_errors<F>(&mut self, what: &str, step: F)
    where
        F: AsyncFnOnce(&mut Self) -> anyhow::Result<usize>,
    {
        match step(self).await {
            Ok(0) => {}
            Ok(runs) => tracing::debug!(runs, "{what}"),
            Err(err) => {
                if err.downcast_ref::<sqlx::Error>().is_some() {
                    self.postgres_reachable_since = Instant::now();
                }
                tracing::warn!(error = format!("{err:#}"), "{what} failed; retrying on the next sweep")
            }
        }
    }

    async fn dispatch_one(&mut self, run_id: RunId) {
        let result = async {
            let row: Option<(i64, i32, String)> =
                sqlx::query_as(concat!("SELECT id, attempt, queue FROM runs WHERE id = $1 AND ", due!()))
                    .bind(run_id.0)
                    .fetch_optional(&self.pool)
                    .await?;
            if let Some(row) = row {
                self.push(row).await?;
            }
            anyhow::Ok(())
        }
        .await;
        if let Err(err) = result {
            tracing::warn!(run.id = %run_id, error = format!("{err:#}"), "dispatching a run failed; the next sweep retries");
        }
    }

    /// Fails every running run past its time limit, naming the limit. The attempt's worker
    /// finds its run no longer running at its next lease renewal and stops writing.
    pub async fn enforce_time_limits(&mut self) -> anyhow::Result<usize> {
        let stopped: Vec<(i64, i32, i32)> = sqlx::query_as(
            "WITH late AS (
                 SELECT r.id, r.attempt, r.time_limit_seconds FROM runs r
                 WHERE r.status = 'running' AND r.time_limit_seconds IS NOT NULL
                   AND r.started_at + make_interval(secs => r.time_limit_seconds) < now()
                 FOR UPDATE SKIP LOCKED
             ), ended AS (
                 UPDATE run_attempts a SET outcome = 'failed', ended_at = now(), error = 'time limit exceeded'
                 FROM late l WHERE a.run_id = l.id AND a.attempt = l.attempt
             )
             UPDATE runs r SET status = 'failed', finished_at = now(), lease_expires_at = NULL,
                    error = format('stopped: past its time limit of %s s', l.time_limit_seconds)
             FROM late l WHERE r.id = l.id
             RETURNING r.id, l.attempt, l.time_limit_seconds",
        )
        .fetch_all(&self.pool)
        .await?;
        for (run_id, attempt, limit) in &stopped {
            tracing::warn!(
                run.id = run_id,
                run.attempt = attempt,
                time_limit_seconds = limit,
                "run past its time limit: failed"
            );
        }
        Ok(stopped.len())
    }

    /// Ends every attempt whose lease expired (its worker died, hung or lost Postgres for too
    /// long) as lost: the run is queued again after its backoff, or fails once the retry
    /// policy's attempts are spent. The run's attempt count is its fencing token, so the lost
    /// worker, should it come back, can write nothing more.
    pub async fn reap_expired_leases(&mut self) -> anyhow::Result<usize> {
        let (first_backoff, max_backoff) = self.settings.retry.backoff_millis();
        let reaped: Vec<(i64, i32, Option<String>, Option<String>)> = sqlx::query_as(
            "SELECT e.id, e.attempt, e.worker_id,
                    retry_or_fail(e.id, e.attempt, 'lost', 'the worker stopped renewing its lease', $1, $2, $3)
             FROM (SELECT id, attempt, worker_id FROM runs
                   WHERE status = 'running' AND lease_expires_at < now()
                   FOR UPDATE SKIP LOCKED) e",
        )
        .bind(self.settings.retry.max_attempts as i32)
        .bind(first_backoff)
        .bind(max_backoff)
        .fetch_all(&self.pool)
        .await?;
        for (run_id, attempt, worker, status) in &reaped {
            tracing::warn!(
                run.id = run_id,
                run.attempt = attempt,
                worker.id = worker.as_deref().unwrap_or("?"),
                status = status.as_deref().unwrap_or("unchanged"),
                "lease expired: attempt lost"
            );
        }
        Ok(reaped.len())
    }

    /// Removes finished jobs from every queue a worker serves, and idempotency keys past
    /// their 24 hours.
    pub async fn vacuum_queues(&mut self) -> anyhow::Result<usize> {
        sqlx::query("DELETE FROM idempotency_keys WHERE created_at < now() - interval '24 hours'")
            .execute(&self.pool)
            .await?;
        let queues: Vec<String> =
            sqlx::query_scalar("SELECT DISTINCT unnest(queues) FROM workers").fetch_all(&self.pool).await?;
        let mut removed = 0;
        for queue in queues {
            removed += cairn_queue::vacuum(self.storage(queue)).await?;
        }
        Ok(removed)
    }

    fn storage(&mut self, queue: String) -> &mut cairn_queue::Storage {
        self.queues
            .entry(queue)
            .or_insert_with_key(|queue| cairn_queue::storage(self.redis.clone(), &self.settings.queue_prefix, queue))
    }

    /// Pushes every queued run, in the order they should start.
    pub async fn dispatch_all(&mut self) -> anyhow::Result<usize> {
        let rows: Vec<(i64, i32, String)> = sqlx::query_as(concat!(
            "SELECT id, attempt, queue FROM runs WHERE ",
            due!(),
            " ORDER BY queue, priority DESC, id LIMIT $1"
        ))
        .bind(SWEEP_LIMIT)
        .fetch_all(&self.pool)
        .await?;
        let count = rows.len();
        for row in rows {
            self.push(row).await?;
        }
        Ok(count)
    }

    async fn push(&mut self, (run_id, attempt, queue): (i64, i32, String)) -> anyhow::Result<()> {
        let storage = self.storage(queue);
        // The job starts the attempt after the last one begun.
        cairn_queue::push(storage, RunJob::new(RunId(run_id), attempt + 1)).await
    }
}
