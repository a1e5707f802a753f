//! The worker process: takes run jobs from its Redis queues through apalis, claims each run
//! in Postgres, executes it and records the outcome. apalis never retries a job: whatever
//! happens, the handler reports success to it, and retries are decided in Postgres.
use crate::{device, execute::Executor, settings::Settings, store::Store};
use anyhow::Context;
use apalis::prelude::*;
use cairn_datasets::DataDir;
use cairn_domain::{RunJob, job::RUN_JOB_VERSION};
use sqlx::postgres::PgPoolOptions;
use std::{future::Future, sync::Arc, time::Duration};
use tokio::sync::Semaphore;
use tracing::Instrument;

pub struct Worker {
    settings: Settings,
    state: Arc<WorkerState>,
    redis: cairn_queue::Connection,
}

struct WorkerState {
    worker_id: String,
    store: Store,
    executor: Executor,
    /// One run at a time per process, whichever queue it came from.
    busy: Semaphore,
}

impl Worker {
    /// Connects to Postgres and Redis and registers the worker with the device it really has.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        tch::set_num_threads(settings.torch_threads);
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(5))
            .connect(&settings.database_url)
            .await
            .context("connecting to Postgres")?;
        let store = Store::new(pool);
        let device = device::available();
        let described = device::describe(device);
        store
            .register_worker(&settings.worker_id, &crate::settings::host_name(), &described, &settings.queues)
            .await
            .context("registering the worker")?;
        let redis = cairn_queue::connect(&settings.redis_url).await?;
        tracing::info!(worker.id = %settings.worker_id, device = %described, queues = ?settings.queues, "worker ready");
        let executor = Executor {
            store: store.clone(),
            data_dir: DataDir::new(&settings.data_dir),
            artifact_dir: settings.artifact_dir.clone(),
            device,
            heartbeat_interval: settings.heartbeat_interval,
        };
        let state =
            Arc::new(WorkerState { worker_id: settings.worker_id.clone(), store, executor, busy: Semaphore::new(1) });
        Ok(Self { settings, state, redis })
    }

    pub fn worker_id(&self) -> &str {
        &self.settings.worker_id
    }

    /// Serves the queues until `shutdown` completes, then lets the run in progress finish.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let heartbeat = tokio::spawn(heartbeat(self.state.clone(), self.settings.heartbeat_interval));
        let mut monitor = Monitor::new().shutdown_timeout(Duration::from_secs(30));
        for queue in &self.settings.queues {
            let storage = cairn_queue::storage(self.redis.clone(), &self.settings.queue_prefix, queue)
                .poll_with_interval(self.settings.poll_interval);
            let state = self.state.clone();
            // A unique apalis name per process start: reusing one within its heartbeat window
            // makes apalis refuse to start.
            let name = format!("{}-{queue}", self.settings.worker_id);
            monitor = monitor.register(move |_restarts| {
                WorkerBuilder::new(name.clone()).backend(storage.clone()).data(state.clone()).build(handle_job)
            });
        }
        let result = monitor
            .run_with_signal(async move {
                shutdown.await;
                Ok(())
            })
            .await;
        heartbeat.abort();
        result.context("the job monitor failed")
    }
}

async fn handle_job(job: RunJob, state: Data<Arc<WorkerState>>) -> Result<(), BoxDynError> {
    let span =
        tracing::info_span!("run", run.id = %job.run_id, run.attempt = job.attempt, worker.id = %state.worker_id);
    state.run_job(job).instrument(span).await;
    Ok(())
}

impl WorkerState {
    async fn run_job(&self, job: RunJob) {
        if job.version != RUN_JOB_VERSION {
            tracing::error!(job.version = job.version, "job written by an incompatible version; skipped");
            return;
        }
        let Ok(_permit) = self.busy.acquire().await else {
            return;
        };
        let Some(run) = self.claim(&job).await else {
            tracing::debug!("job is stale: the run was taken, cancelled or finished");
            return;
        };
        tracing::info!("run started");
        let lease = run.lease;
        let end = self.executor.execute(run).await;
        let (status, error) = end.status_and_error();
        match error {
            Some(error) if status == cairn_domain::RunStatus::Failed => {
                tracing::error!(error, "run failed")
            }
            _ => tracing::info!(status = %status, "run ended"),
        }
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.store.finish(lease, &self.worker_id, status, error).await {
                Ok(true) => return,
                Ok(false) => {
                    tracing::warn!("the run's lease was taken over; its outcome is not recorded");
                    return;
                }
                Err(err) => {
                    tracing::warn!(error = %err, "recording the outcome failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Claims the run, waiting out a Postgres outage rather than dropping the job.
    async fn claim(&self, job: &RunJob) -> Option<crate::store::ClaimedRun> {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.store.claim(job, &self.worker_id).await {
                Ok(claimed) => return claimed,
                Err(err) => {
                    tracing::warn!(error = %err, "claiming the run failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

async fn heartbeat(state: Arc<WorkerState>, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    loop {
        ticks.tick().await;
        if let Err(err) = state.store.heartbeat(&state.worker_id).await {
            tracing::warn!(worker.id = %state.worker_id, error = %err, "heartbeat failed");
        }
    }
}
