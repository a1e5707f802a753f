//! The worker process: takes run jobs from its Redis queues through apalis, claims each run
//! in Postgres, executes it and records the outcome. apalis never retries a job: whatever
//! happens, the handler reports success to it, and retries are decided in Postgres.
use crate::{
    device,
    execute::{Executor, RunEnd},
    settings::Settings,
    store::Store,
};
use anyhow::Context;
use apalis::prelude::*;
use cairn_datasets::DataDir;
use cairn_domain::{RetryPolicy, RunJob, job::RUN_JOB_VERSION};
use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};
use tokio::sync::Semaphore;
use tracing::Instrument;

const RESTART_PAUSE: Duration = Duration::from_millis(500);

pub struct Worker {
    settings: Settings,
    state: Arc<WorkerState>,
    redis: cairn_queue::Connection,
}

struct WorkerState {
    worker_id: String,
    store: Store,
    executor: Executor,
    retry: RetryPolicy,
    /// One run at a time per process, whichever queue it came from.
    busy: Semaphore,
}

impl Worker {
    /// Connects to Postgres and Redis and registers the worker with the device it really has.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        tch::set_num_threads(settings.torch_threads);
        let pool = cairn_process::connect_postgres(settings.database_url.expose()).await?;
        crate::run_log::start(&pool);
        let store = Store::new(pool);
        let device = device::available();
        let described = device::describe(device);
        store
            .register_worker(&settings.worker_id, &crate::settings::host_name(), &described, &settings.queues)
            .await
            .context("registering the worker")?;
        let redis = cairn_queue::connect(settings.redis_url.expose()).await?;
        tracing::info!(worker.id = %settings.worker_id, device = %described, queues = ?settings.queues, "worker ready");
        let executor = Executor {
            store: store.clone(),
            data_dir: DataDir::new(&settings.data_dir),
            artifact_dir: settings.artifact_dir.clone(),
            device,
            heartbeat_interval: settings.heartbeat_interval,
            lease_duration: settings.lease_duration,
            shutting_down: Arc::new(AtomicBool::new(false)),
        };
        let state = Arc::new(WorkerState {
            worker_id: settings.worker_id.clone(),
            store,
            executor,
            retry: settings.retry,
            busy: Semaphore::new(1),
        });
        Ok(Self { settings, state, redis })
    }

    pub fn worker_id(&self) -> &str {
        &self.settings.worker_id
    }

    /// Serves the queues until `shutdown` completes. The run in progress then stops after its
    /// current step, saves a checkpoint and goes back to the queue, to resume elsewhere.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let heartbeat = tokio::spawn(heartbeat(self.state.clone(), self.settings.heartbeat_interval));
        // When Redis loses the worker's registration (FLUSHALL, a restart without persistence)
        // or the connection fails, apalis ends the worker with an error. Restart it under a
        // new name (a name reused within its heartbeat window is refused); the pause keeps a
        // Redis that is down from turning this into a busy loop.
        let mut monitor = Monitor::new().shutdown_timeout(Duration::from_secs(30)).should_restart(|worker, error| {
            tracing::warn!(worker = %worker.name(), restarts = worker.restarts(), %error, "queue connection failed; restarting");
            std::thread::sleep(RESTART_PAUSE);
            true
        });
        for queue in &self.settings.queues {
            let storage = cairn_queue::storage(self.redis.clone(), &self.settings.queue_prefix, queue)
                .poll_with_interval(self.settings.poll_interval);
            let state = self.state.clone();
            let name = format!("{}-{queue}", self.settings.worker_id);
            monitor = monitor.register(move |restarts| {
                WorkerBuilder::new(format!("{name}-{restarts}"))
                    .backend(storage.clone())
                    .data(state.clone())
                    .build(handle_job)
            });
        }
        let shutting_down = self.state.executor.shutting_down.clone();
        let result = monitor
            .run_with_signal(async move {
                shutdown.await;
                tracing::info!("shutting down: handing the run in progress back");
                shutting_down.store(true, Ordering::Relaxed);
                Ok(())
            })
            .await;
        heartbeat.abort();
        result.context("the job monitor failed")
    }
}

async fn handle_job(job: RunJob, state: Data<Arc<WorkerState>>) -> Result<(), BoxDynError> {
    let span = tracing::info_span!("job", job.run_id = %job.run_id, worker.id = %state.worker_id);
    let state = Arc::clone(&state);
    // The run lives in a task of its own: when apalis drops this handler (its consumer failed
    // because Redis lost its registration, say), the run still ends and records its outcome.
    let run = tokio::spawn(async move { state.run_job(job).instrument(span).await });
    run.await?;
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
            tracing::debug!("job is stale: nothing is queued in its run's queue any more");
            return;
        };
        // The claimed run may be another than the job's: the most urgent of the queue.
        let lease = run.lease;
        let span = tracing::info_span!("run", run.id = %lease.run_id, run.attempt = lease.attempt);
        self.execute(run).instrument(span).await;
    }

    async fn execute(&self, run: crate::store::ClaimedRun) {
        tracing::info!("run started");
        let lease = run.lease;
        let end = self.executor.execute(run).await;
        match &end {
            RunEnd::LeaseLost => tracing::warn!("the run's lease was taken over; its outcome is not recorded"),
            RunEnd::HandedBack => {
                retry("handing the run back", || self.store.hand_back(lease)).await;
                tracing::info!("run handed back to the queue");
            }
            RunEnd::Failed(error) => tracing::error!(error = %error, "run failed"),
            RunEnd::InfrastructureFailed(error) => {
                let status =
                    retry("recording the failure", || self.store.retry_or_fail(lease, error, &self.retry)).await;
                match status.as_deref() {
                    Some("queued") => {
                        tracing::warn!(error = %error, "attempt failed on the infrastructure; retrying after a backoff")
                    }
                    Some(_) => {
                        tracing::error!(error = %error, "attempt failed on the infrastructure; no attempts left: run failed")
                    }
                    None => tracing::warn!("the run's lease was taken over; its outcome is not recorded"),
                }
            }
            RunEnd::Succeeded | RunEnd::Cancelled | RunEnd::StoppedEarly(_) => {}
        }
        if let Some((status, error)) = end.final_status() {
            if retry("recording the outcome", || self.store.finish(lease, status, error)).await {
                tracing::info!(status = %status, "run ended");
            } else {
                tracing::warn!("the run's lease was taken over; its outcome is not recorded");
            }
        }
    }

    /// Claims the run, waiting out a Postgres outage rather than dropping the job.
    async fn claim(&self, job: &RunJob) -> Option<crate::store::ClaimedRun> {
        retry("claiming the run", || self.store.claim(job, &self.worker_id, self.executor.lease_duration)).await
    }
}

/// Runs `attempt` until Postgres answers, backing off up to 5 s: a worker waits out an outage
/// rather than dropping what it knows.
async fn retry<T, F, Fut>(what: &str, mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = sqlx::Result<T>>,
{
    let mut backoff = Duration::from_millis(100);
    loop {
        match attempt().await {
            Ok(value) => return value,
            Err(err) => {
                tracing::warn!(error = %err, "{what} failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
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
