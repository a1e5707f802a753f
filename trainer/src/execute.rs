//! Executing one claimed run: load its data, train on a blocking thread, stream metrics to
//! Postgres, save the checkpoint, and record how it ended.
use crate::{
    checkpoint, device, evaluation,
    model::TensorData,
    store::{ClaimedRun, Lease, LeaseState, MetricPoint, Store},
    training::{self, Checkpoint, Outcome, Progress, Resume, Stop},
};
use cairn_datasets::DataDir;
use cairn_domain::{EvaluateParams, RunId, RunStatus, TrainParams};
use std::{
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
    /// The worker is shutting down: the run goes back to the queue and resumes elsewhere.
    HandedBack,
    /// Another attempt holds the run now: this one records nothing.
    LeaseLost,
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
        let end = match run.kind.as_str() {
            "train" => self.train(run.lease, run.params, flags).await,
            "evaluate" => self.evaluate(run.lease, run.params, run.parent_run_id).await,
            other => RunEnd::Failed(format!("this worker cannot run jobs of kind `{other}`")),
        };
        drop(watcher);
        end
    }

    async fn train(&self, lease: Lease, params: serde_json::Value, flags: Arc<StopFlags>) -> RunEnd {
        let params: TrainParams = match serde_json::from_value(params) {
            Ok(params) => params,
            Err(err) => return RunEnd::Failed(format!("stored params are invalid: {err}")),
        };
        let device = match device::for_run(params.device, self.device) {
            Ok(device) => device,
            Err(message) => return RunEnd::Failed(message),
        };
        let data_dir = self.data_dir.clone();
        let loading = params.clone();
        let loaded = tokio::task::spawn_blocking(move || -> Result<_, cairn_datasets::DatasetError> {
            let train = data_dir.load(&loading.dataset, loading.train_range)?;
            let validation = data_dir.load(&loading.dataset, loading.validation_range)?;
            Ok((train, validation))
        })
        .await;
        let (train_samples, val_samples) = match loaded {
            Ok(Ok(samples)) => samples,
            Ok(Err(err)) => return RunEnd::Failed(err.to_string()),
            Err(err) => return RunEnd::Failed(format!("loading data panicked: {err}")),
        };

        let resume_path = match self.store.resume_checkpoint(lease.run_id).await {
            Ok(path) => path.map(|path| self.artifact_dir.join(path)),
            Err(err) => return RunEnd::Failed(format!("looking up the resume checkpoint failed: {err}")),
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
        let artifact_dir = self.artifact_dir.clone();
        let run_span = tracing::Span::current();
        let trained = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            let _entered = run_span.enter();
            let resume = match resume_path {
                Some(path) => Some(Resume(
                    tch::Tensor::read_safetensors(&path)
                        .map_err(|err| anyhow::anyhow!("reading {}: {err}", path.display()))?,
                )),
                None => None,
            };
            let train_data = TensorData::new(&train_samples, device);
            let val_data = TensorData::new(&val_samples, device);
            match training::train(&params, &train_data, &val_data, device, resume, &mut progress)? {
                Outcome::Finished { model, last } => {
                    let saved = checkpoint::save(&model, &artifact_dir, lease.run_id.0, checkpoint::FINAL_CHECKPOINT)?;
                    Ok(Some((saved, last)))
                }
                Outcome::Stopped => Ok(None),
            }
        })
        .await;
        // The training thread dropped its sender, so the writer ends once the buffer is empty.
        let _ = writer.await;

        match trained {
            Ok(Ok(Some((saved, last)))) => {
                tracing::info!(val.accuracy = last.val_accuracy, checkpoint.bytes = saved.bytes, "training finished");
                match self.store.insert_artifact(lease, "checkpoint", &saved.path, saved.bytes, &saved.sha256).await {
                    Ok(true) => RunEnd::Succeeded,
                    Ok(false) => RunEnd::LeaseLost,
                    Err(err) => RunEnd::Failed(format!("recording the checkpoint failed: {err}")),
                }
            }
            Ok(Ok(None)) if flags.lease_lost.load(Ordering::Relaxed) => RunEnd::LeaseLost,
            Ok(Ok(None)) if flags.cancel.load(Ordering::Relaxed) => RunEnd::Cancelled,
            Ok(Ok(None)) => RunEnd::HandedBack,
            Ok(Err(err)) => RunEnd::Failed(format!("{err:#}")),
            Err(err) => RunEnd::Failed(format!("training panicked: {err}")),
        }
    }
}

impl Executor {
    /// Measures the parent run's final checkpoint: quality, per-class precision and recall,
    /// the confusion matrix (an artifact), latency, size and accuracy under input noise.
    async fn evaluate(&self, lease: Lease, params: serde_json::Value, parent: Option<RunId>) -> RunEnd {
        let params: EvaluateParams = match serde_json::from_value(params) {
            Ok(params) => params,
            Err(err) => return RunEnd::Failed(format!("stored params are invalid: {err}")),
        };
        let device = match device::for_run(params.device, self.device) {
            Ok(device) => device,
            Err(message) => return RunEnd::Failed(message),
        };
        let Some(parent) = parent else { return RunEnd::Failed("an evaluate run needs a parent run".to_owned()) };
        let checkpoint = match self.store.final_checkpoint(parent).await {
            Ok(Some(path)) => self.artifact_dir.join(path),
            Ok(None) => return RunEnd::Failed(format!("run {parent} has no final checkpoint")),
            Err(err) => return RunEnd::Failed(format!("looking up the checkpoint of run {parent} failed: {err}")),
        };
        let (data_dir, artifact_dir) = (self.data_dir.clone(), self.artifact_dir.clone());
        let run_span = tracing::Span::current();
        let measured = tokio::task::spawn_blocking(move || -> anyhow::Result<(Vec<MetricPoint>, checkpoint::SavedFile)> {
            let _entered = run_span.enter();
            let samples = data_dir.load(&params.dataset, params.range)?;
            let data = TensorData::new(&samples, device);
            let (vs, model) = checkpoint::load(&checkpoint, device)?;
            let started = std::time::Instant::now();
            let logits = evaluation::logits(&model, &data.images);
            let quality = evaluation::quality(&logits, &data.labels);
            let samples_per_second = data.len() as f64 / started.elapsed().as_secs_f64();
            let mut points = vec![
                point("accuracy", quality.accuracy),
                point("cross_entropy", quality.cross_entropy),
                point("mse", quality.mse),
                point("samples_per_second", samples_per_second),
                point("model_bytes", std::fs::metadata(&checkpoint)?.len() as f64),
                point("nonzero_parameters", evaluation::nonzero_parameters(&vs) as f64),
            ];
            for (batch, runs) in [(1, 100), (64, 30)] {
                let latency = evaluation::latency(&model, &data, batch, runs);
                points.push(point(format!("latency_ms/batch_{batch}/median"), latency.median_ms));
                points.push(point(format!("latency_ms/batch_{batch}/p95"), latency.p95_ms));
            }
            for std in [0.1, 0.2, 0.3] {
                points.push(point(format!("noise_accuracy/{std}"), evaluation::noisy_accuracy(&model, &data, std, params.seed)));
            }
            for (class, (precision, recall)) in quality.precision.iter().zip(&quality.recall).enumerate() {
                points.push(point(format!("precision/{class}"), *precision));
                points.push(point(format!("recall/{class}"), *recall));
            }
            tracing::info!(accuracy = quality.accuracy, cross_entropy = quality.cross_entropy, "evaluated");
            let confusion = serde_json::to_vec(&serde_json::json!({ "rows": "true class", "columns": "predicted class", "matrix": quality.confusion }))?;
            let saved = checkpoint::save_bytes(&confusion, &artifact_dir, lease.run_id.0, "confusion_matrix.json")?;
            Ok((points, saved))
        })
        .await;
        let (points, saved) = match measured {
            Ok(Ok(measured)) => measured,
            Ok(Err(err)) => return RunEnd::Failed(format!("{err:#}")),
            Err(err) => return RunEnd::Failed(format!("evaluation panicked: {err}")),
        };
        let recorded = async {
            self.store.insert_metrics(lease, &points).await?;
            self.store.insert_artifact(lease, "confusion_matrix", &saved.path, saved.bytes, &saved.sha256).await
        };
        match recorded.await {
            Ok(true) => RunEnd::Succeeded,
            Ok(false) => RunEnd::LeaseLost,
            Err(err) => RunEnd::Failed(format!("recording the evaluation failed: {err}")),
        }
    }
}

/// An evaluation metric; they are all at step 0.
fn point(key: impl Into<std::borrow::Cow<'static, str>>, value: f64) -> MetricPoint {
    MetricPoint { key: key.into(), step: 0, value }
}

impl RunEnd {
    /// The final status and error this outcome records, if it ends the run.
    pub fn final_status(&self) -> Option<(RunStatus, Option<&str>)> {
        match self {
            Self::Succeeded => Some((RunStatus::Succeeded, None)),
            Self::Cancelled => Some((RunStatus::Cancelled, Some("cancelled on request"))),
            Self::Failed(message) => Some((RunStatus::Failed, Some(message))),
            Self::HandedBack | Self::LeaseLost => None,
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
    fn metric(&mut self, key: &'static str, step: u64, value: f64) {
        // Blocks while the buffer is full. An error means the writer is gone, which only
        // happens when the attempt is being torn down.
        let _ = self.to_writer.blocking_send(ToWriter::Point(MetricPoint { key: key.into(), step, value }));
    }

    fn stop(&self) -> Option<Stop> {
        if self.flags.lease_lost.load(Ordering::Relaxed) || self.flags.cancel.load(Ordering::Relaxed) {
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
