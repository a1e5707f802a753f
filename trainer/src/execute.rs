//! Executing one claimed run: load its data, train on a blocking thread, stream metrics to
//! Postgres, save the checkpoint, and record how it ended.
use crate::{
    checkpoint, device,
    model::TensorData,
    store::{ClaimedRun, Lease, MetricPoint, Store},
    training::{self, Outcome, Progress},
};
use cairn_datasets::DataDir;
use cairn_domain::{RunStatus, TrainParams};
use std::{
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};
use tokio::sync::mpsc;

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
}

/// What the executor needs from the worker, built once per process.
pub struct Executor {
    pub store: Store,
    pub data_dir: DataDir,
    pub artifact_dir: PathBuf,
    pub device: tch::Device,
    pub heartbeat_interval: Duration,
}

impl Executor {
    pub async fn execute(&self, run: ClaimedRun) -> RunEnd {
        match run.kind.as_str() {
            "train" => self.train(run.lease, run.params).await,
            other => RunEnd::Failed(format!("this worker cannot run jobs of kind `{other}`")),
        }
    }

    async fn train(&self, lease: Lease, params: serde_json::Value) -> RunEnd {
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

        let stop = Arc::new(AtomicBool::new(false));
        let (points, receiver) = mpsc::channel(METRIC_BUFFER);
        let writer = tokio::spawn(write_metrics(self.store.clone(), lease, receiver));
        let watcher = tokio::spawn(watch_cancel(self.store.clone(), lease, stop.clone(), self.heartbeat_interval));

        let artifact_dir = self.artifact_dir.clone();
        let run_span = tracing::Span::current();
        let trained = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            let _entered = run_span.enter();
            let mut progress = ChannelProgress { points, stop };
            let train_data = TensorData::new(&train_samples, device);
            let val_data = TensorData::new(&val_samples, device);
            match training::train(&params, &train_data, &val_data, device, &mut progress)? {
                Outcome::Finished { model, last } => {
                    let saved = checkpoint::save(&model, &artifact_dir, lease.run_id.0, checkpoint::FINAL_CHECKPOINT)?;
                    Ok(Some((saved, last)))
                }
                Outcome::Stopped => Ok(None),
            }
        })
        .await;
        watcher.abort();
        // The training thread dropped its sender, so the writer ends once the buffer is empty.
        let _ = writer.await;

        match trained {
            Ok(Ok(Some((saved, last)))) => {
                tracing::info!(val.accuracy = last.val_accuracy, checkpoint.bytes = saved.bytes, "training finished");
                match self.store.insert_artifact(lease, "checkpoint", &saved.path, saved.bytes, &saved.sha256).await {
                    Ok(_) => RunEnd::Succeeded,
                    Err(err) => RunEnd::Failed(format!("recording the checkpoint failed: {err}")),
                }
            }
            Ok(Ok(None)) => RunEnd::Cancelled,
            Ok(Err(err)) => RunEnd::Failed(format!("{err:#}")),
            Err(err) => RunEnd::Failed(format!("training panicked: {err}")),
        }
    }
}

impl RunEnd {
    pub fn status_and_error(&self) -> (RunStatus, Option<&str>) {
        match self {
            Self::Succeeded => (RunStatus::Succeeded, None),
            Self::Cancelled => (RunStatus::Cancelled, Some("cancelled on request")),
            Self::Failed(message) => (RunStatus::Failed, Some(message)),
        }
    }
}

struct ChannelProgress {
    points: mpsc::Sender<MetricPoint>,
    stop: Arc<AtomicBool>,
}

impl Progress for ChannelProgress {
    fn metric(&mut self, key: &'static str, step: u64, value: f64) {
        // Blocks while the buffer is full. An error means the writer is gone, which only
        // happens when the attempt is being torn down.
        let _ = self.points.blocking_send(MetricPoint { key, step, value });
    }

    fn should_stop(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// Writes points in batches until the training thread hangs up. A failed write is retried
/// with the same points, so none is lost while Postgres is away.
async fn write_metrics(store: Store, lease: Lease, mut receiver: mpsc::Receiver<MetricPoint>) {
    let mut batch = Vec::with_capacity(METRIC_BATCH);
    while receiver.recv_many(&mut batch, METRIC_BATCH).await > 0 {
        let mut backoff = Duration::from_millis(100);
        while let Err(err) = store.insert_metrics(lease, &batch).await {
            tracing::warn!(run.id = %lease.run_id, error = %err, points = batch.len(), "writing metrics failed; retrying");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
        batch.clear();
    }
}

/// Raises `stop` once the run's cancel is requested (or the attempt is no longer ours).
async fn watch_cancel(store: Store, lease: Lease, stop: Arc<AtomicBool>, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    loop {
        ticks.tick().await;
        match store.cancel_requested(lease).await {
            Ok(true) => {
                stop.store(true, Ordering::Relaxed);
                return;
            }
            Ok(false) => {}
            Err(err) => {
                tracing::warn!(run.id = %lease.run_id, error = %err, "checking for cancel failed")
            }
        }
    }
}
