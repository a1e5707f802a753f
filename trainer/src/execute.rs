//! Executing one claimed run: resolve its inputs, run its job on a blocking thread while its
//! lease is renewed, stream metrics to Postgres, record its files, and say how it ended.
use crate::{
    checkpoint,
    failure::Failure,
    jobs::{self, Inputs, Job},
    store::{ClaimedRun, Lease, LeaseState, MetricPoint, Store},
    training::{Checkpoint, Progress, Stop},
};
use anyhow::Context;
use cairn_datasets::DataDir;
use cairn_domain::{PredictInput, PredictParams, RunId, RunKind, RunParams, RunStatus};
use std::{
    borrow::Cow,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};
use tokio::sync::{mpsc, oneshot};

/// Points held in memory between the training thread and Postgres. When Postgres is slow or
/// away, training waits instead of growing memory without bound.
const METRIC_BUFFER: usize = 10_000;
const METRIC_BATCH: usize = 1_000;

/// How an attempt ended.
#[derive(Debug)]
pub enum RunEnd {
    Succeeded,
    Cancelled,
    /// A problem with the run itself (bad params, bad data, a model error): not retried.
    Failed(String),
    /// A problem of the infrastructure (out of memory, Postgres, files that cannot be
    /// written): the run is retried under the retry policy.
    InfrastructureFailed(String),
    /// The worker is shutting down: the run goes back to the queue and resumes elsewhere.
    HandedBack,
    /// Another attempt holds the run now: this one records nothing.
    LeaseLost,
    /// Early stopping ended this sweep trial at a rung (the message says which).
    StoppedEarly(String),
}

/// What the executor needs from the worker, built once per process.
pub struct Executor {
    pub store: Store,
    pub data_dir: DataDir,
    pub artifact_dir: PathBuf,
    pub device: tch::Device,
    pub heartbeat_interval: Duration,
    pub lease_duration: Duration,
    /// Raised when the worker shuts down: runs stop after a checkpoint and are handed back.
    pub shutting_down: Arc<AtomicBool>,
}

/// Stops a background task when its owner goes away, so a lease is never renewed for an
/// attempt nobody is executing.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Why the run in progress should stop, raised by the lease watcher and the worker.
#[derive(Default)]
struct StopFlags {
    cancel: AtomicBool,
    lease_lost: AtomicBool,
    /// Set when early stopping ends the run, with the reason it records.
    stopped_early: std::sync::OnceLock<String>,
}

/// A message from the training thread to the metric writer.
enum ToWriter {
    Point(MetricPoint),
    /// Answer once every point sent before is in Postgres.
    Flush(oneshot::Sender<()>),
}

impl Executor {
    /// Runs the claimed attempt, renewing its lease from the claim to the end (data loading
    /// included: a slow load must not look like a dead worker).
    pub async fn execute(&self, run: ClaimedRun) -> RunEnd {
        let flags = Arc::new(StopFlags::default());
        let watcher = AbortOnDrop(tokio::spawn(watch_lease(
            self.store.clone(),
            run.lease,
            flags.clone(),
            self.heartbeat_interval,
            self.lease_duration,
        )));
        let end = self.run_job(run, flags).await;
        drop(watcher);
        end
    }

    async fn run_job(&self, run: ClaimedRun, flags: Arc<StopFlags>) -> RunEnd {
        let lease = run.lease;
        let params = match run.kind.parse::<RunKind>() {
            Ok(kind) => RunParams::from_stored(kind, run.params),
            Err(message) => return RunEnd::Failed(format!("this worker cannot run it: {message}")),
        };
        let params = match params {
            Ok(params) => params,
            Err(err) => return RunEnd::Failed(format!("stored params are invalid: {err}")),
        };
        let inputs = match self.inputs(lease.run_id, &params, run.parent_run_id).await {
            Ok(inputs) => inputs,
            Err(err) => return RunEnd::failed(&err),
        };
        let job = Job {
            run_id: lease.run_id.0,
            params,
            inputs,
            data_dir: self.data_dir.clone(),
            artifact_dir: self.artifact_dir.clone(),
            worker_device: self.device,
        };

        let (to_writer, receiver) = mpsc::channel(METRIC_BUFFER);
        let writer = tokio::spawn(write_metrics(self.store.clone(), lease, receiver));
        let mut progress = RunProgress {
            to_writer,
            flags: flags.clone(),
            shutting_down: self.shutting_down.clone(),
            store: self.store.clone(),
            lease,
            artifact_dir: self.artifact_dir.clone(),
            runtime: tokio::runtime::Handle::current(),
        };
        let run_span = tracing::Span::current();
        let done = tokio::task::spawn_blocking(move || {
            let _entered = run_span.enter();
            jobs::run(&job, &mut progress)
        })
        .await;
        // The job dropped its sender, so the writer ends once the buffer is empty.
        let _ = writer.await;

        match done {
            Ok(Ok(Some(written))) => {
                for (kind, file) in written {
                    match self.store.insert_artifact(lease, kind, &file.path, file.bytes, &file.sha256).await {
                        Ok(true) => {}
                        Ok(false) => return RunEnd::LeaseLost,
                        Err(err) => {
                            return RunEnd::failed(&anyhow::Error::from(err).context(format!("recording the {kind}")));
                        }
                    }
                }
                RunEnd::Succeeded
            }
            Ok(Ok(None)) if flags.lease_lost.load(Ordering::Relaxed) => RunEnd::LeaseLost,
            Ok(Ok(None)) if let Some(reason) = flags.stopped_early.get() => RunEnd::StoppedEarly(reason.clone()),
            Ok(Ok(None)) if flags.cancel.load(Ordering::Relaxed) => RunEnd::Cancelled,
            Ok(Ok(None)) => RunEnd::HandedBack,
            Ok(Err(err)) => RunEnd::failed(&err),
            Err(err) => RunEnd::Failed(format!("the job panicked: {err}")),
        }
    }

    /// Resolves the files a job reads: the checkpoints of its parent (and ensemble members),
    /// an earlier attempt's checkpoint, an uploaded file.
    async fn inputs(&self, run_id: RunId, params: &RunParams, parent: Option<RunId>) -> anyhow::Result<Inputs> {
        let mut from = Vec::from_iter(parent);
        if let RunParams::Ensemble(ensemble) = params {
            from.extend(&ensemble.members);
        }
        let mut inputs = Inputs::default();
        for run in from {
            let path = self
                .store
                .final_checkpoint(run)
                .await
                .with_context(|| format!("looking up the checkpoint of run {run}"))?;
            let path = path.with_context(|| format!("run {run} has no final checkpoint"))?;
            inputs.models.push(self.artifact_dir.join(path));
        }
        if matches!(params, RunParams::Train(_) | RunParams::Prune(_)) {
            let path = self.store.resume_checkpoint(run_id).await.context("looking up the resume checkpoint")?;
            inputs.resume = path.map(|path| self.artifact_dir.join(path));
        }
        if let RunParams::Predict(PredictParams { input: PredictInput::Upload { upload_id, .. }, .. }) = params {
            let path =
                self.store.upload_path(*upload_id).await.with_context(|| format!("looking up upload {upload_id}"))?;
            let path = path.with_context(|| format!("upload {upload_id} no longer exists"))?;
            inputs.upload = Some(self.artifact_dir.join(path));
        }
        Ok(inputs)
    }
}

impl RunEnd {
    /// The end of an attempt that failed with `err`: retried if the infrastructure is at fault.
    fn failed(err: &anyhow::Error) -> Self {
        match Failure::of(err) {
            Failure::Run(message) => Self::Failed(message),
            Failure::Infrastructure(message) => Self::InfrastructureFailed(message),
        }
    }

    /// The final status and error this outcome records, if it ends the run.
    pub fn final_status(&self) -> Option<(RunStatus, Option<&str>)> {
        match self {
            Self::Succeeded => Some((RunStatus::Succeeded, None)),
            Self::Cancelled => Some((RunStatus::Cancelled, Some("cancelled on request"))),
            Self::Failed(message) => Some((RunStatus::Failed, Some(message))),
            Self::StoppedEarly(reason) => Some((RunStatus::StoppedEarly, Some(reason))),
            Self::InfrastructureFailed(_) | Self::HandedBack | Self::LeaseLost => None,
        }
    }
}

/// Connects the training thread to the metric writer, the stop flags and the checkpoint
/// store. It runs on the blocking thread and waits on async work through `runtime`.
struct RunProgress {
    to_writer: mpsc::Sender<ToWriter>,
    flags: Arc<StopFlags>,
    shutting_down: Arc<AtomicBool>,
    store: Store,
    lease: Lease,
    artifact_dir: PathBuf,
    runtime: tokio::runtime::Handle,
}

impl Progress for RunProgress {
    fn metric(&mut self, key: impl Into<Cow<'static, str>>, step: u64, value: f64) {
        // Blocks while the buffer is full. An error means the writer is gone, which only
        // happens when the attempt is being torn down.
        let _ = self.to_writer.blocking_send(ToWriter::Point(MetricPoint { key: key.into(), step, value }));
    }

    fn stop(&self) -> Option<Stop> {
        let stopped = self.flags.lease_lost.load(Ordering::Relaxed)
            || self.flags.cancel.load(Ordering::Relaxed)
            || self.flags.stopped_early.get().is_some();
        if stopped {
            Some(Stop::Now)
        } else if self.shutting_down.load(Ordering::Relaxed) {
            Some(Stop::AfterCheckpoint)
        } else {
            None
        }
    }

    /// Writes the checkpoint under a name of this attempt's own (a superseded worker can never
    /// overwrite the one that counts), waits until every metric point before it is in
    /// Postgres, then records it. A resumed attempt thus never misses a point.
    fn checkpoint(&mut self, checkpoint: &Checkpoint<'_>) -> anyhow::Result<()> {
        let file = format!("resume-attempt-{}.safetensors", self.lease.attempt);
        let saved = checkpoint::save_tensors(&checkpoint.tensors(), &self.artifact_dir, self.lease.run_id.0, &file)?;
        let (flushed, wait) = oneshot::channel();
        self.to_writer
            .blocking_send(ToWriter::Flush(flushed))
            .map_err(|_| anyhow::anyhow!("the metric writer stopped"))?;
        self.runtime.block_on(async {
            wait.await.map_err(|_| anyhow::anyhow!("the metric writer stopped"))?;
            self.store
                .insert_artifact(self.lease, "resume_checkpoint", &saved.path, saved.bytes, &saved.sha256)
                .await?;
            anyhow::Ok(())
        })?;
        tracing::info!(epoch = checkpoint.position.epoch, step = checkpoint.position.step, "checkpoint saved");
        // Every point of the finished epoch is stored now, so a sweep's early stopping can
        // rank this trial against the others.
        let finished_epoch = checkpoint.position.epoch.saturating_sub(1);
        if let Some(rung) = self.runtime.block_on(self.store.stopping_rung(self.lease, finished_epoch))? {
            let reason = format!("stopped early by ASHA at rung {rung} (after epoch {finished_epoch})");
            tracing::info!(rung, epoch = finished_epoch, "stopped early: not among the best at this rung");
            let _ = self.flags.stopped_early.set(reason);
        }
        Ok(())
    }
}

/// Writes points in batches until the training thread hangs up. A failed write is retried
/// with the same points, so none is lost while Postgres is away.
async fn write_metrics(store: Store, lease: Lease, mut receiver: mpsc::Receiver<ToWriter>) {
    let mut messages = Vec::with_capacity(METRIC_BATCH);
    let mut batch = Vec::with_capacity(METRIC_BATCH);
    while receiver.recv_many(&mut messages, METRIC_BATCH).await > 0 {
        let mut flushed = Vec::new();
        for message in messages.drain(..) {
            match message {
                ToWriter::Point(point) => batch.push(point),
                ToWriter::Flush(done) => flushed.push(done),
            }
        }
        let mut backoff = Duration::from_millis(100);
        while !batch.is_empty() {
            match store.insert_metrics(lease, &batch).await {
                Ok(_) => batch.clear(),
                Err(err) => {
                    tracing::warn!(run.id = %lease.run_id, error = %err, points = batch.len(), "writing metrics failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        for done in flushed {
            let _ = done.send(());
        }
    }
}

/// Renews the lease every `every`; raises the flags on a cancel request or a lost lease.
async fn watch_lease(store: Store, lease: Lease, flags: Arc<StopFlags>, every: Duration, duration: Duration) {
    let mut ticks = tokio::time::interval(every);
    loop {
        ticks.tick().await;
        match store.renew_lease(lease, duration).await {
            Ok(LeaseState::Held) => {}
            Ok(LeaseState::CancelRequested) => flags.cancel.store(true, Ordering::Relaxed),
            Ok(LeaseState::Lost) => {
                tracing::warn!(run.id = %lease.run_id, "the lease was taken over; stopping without writing");
                flags.lease_lost.store(true, Ordering::Relaxed);
                return;
            }
            // Postgres is away: keep training; the lease runs out only if this lasts.
            Err(err) => tracing::warn!(run.id = %lease.run_id, error = %err, "renewing the lease failed"),
        }
    }
}
