use crate::{auth::Principal, error::ApiError, openapi::Reply, startup::AppState, store::queue};
use actix_web::web;
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Serialize, JsonSchema)]
pub struct Queues {
    queues: Vec<QueueReport>,
}

#[derive(Default, Serialize, JsonSchema)]
pub struct QueueReport {
    name: String,
    /// In the order workers take them.
    queued: Vec<QueuedRun>,
    running: Vec<RunningRun>,
    /// The workers serving this queue.
    workers: Vec<Worker>,
}

#[derive(Serialize, JsonSchema)]
pub struct QueuedRun {
    run_id: i64,
    name: Option<String>,
    kind: String,
    experiment: String,
    priority: i32,
    /// 1 for the next run this queue starts; every team's runs count.
    position: i64,
    waiting_seconds: f64,
    /// After an infrastructure failure: not started again before then.
    retry_at: Option<DateTime<Utc>>,
}

#[derive(Serialize, JsonSchema)]
pub struct RunningRun {
    run_id: i64,
    name: Option<String>,
    kind: String,
    experiment: String,
    worker_id: Option<String>,
    attempt: i32,
    started_at: Option<DateTime<Utc>>,
    epochs_done: Option<i64>,
    epochs_planned: Option<i64>,
}

#[derive(Serialize, JsonSchema)]
pub struct Worker {
    id: String,
    host: String,
    device: String,
    heartbeat_seconds_ago: f64,
    current_run_id: Option<i64>,
}

/// `GET /api/v1/queues`: per queue, the caller's queued runs in the order workers take them
/// (positions count every team's runs), the running runs, and the workers serving it.
pub async fn list(state: web::Data<AppState>, who: Principal) -> Result<Reply<Queues>, ApiError> {
    let now = Utc::now();
    let mut queues: BTreeMap<String, QueueReport> = BTreeMap::new();
    fn report<'a>(queues: &'a mut BTreeMap<String, QueueReport>, name: &str) -> &'a mut QueueReport {
        queues.entry(name.to_owned()).or_insert_with(|| QueueReport { name: name.to_owned(), ..QueueReport::default() })
    }
    for run in queue::queued(&state.pool, who.user_id).await? {
        let waiting_seconds = (now - run.queued_at).num_milliseconds() as f64 / 1e3;
        report(&mut queues, &run.queue).queued.push(QueuedRun {
            run_id: run.id,
            name: run.name,
            kind: run.kind,
            experiment: run.experiment_name,
            priority: run.priority,
            position: run.position,
            waiting_seconds,
            retry_at: run.retry_at,
        });
    }
    for run in queue::running(&state.pool, who.user_id).await? {
        report(&mut queues, &run.queue).running.push(RunningRun {
            run_id: run.id,
            name: run.name,
            kind: run.kind,
            experiment: run.experiment_name,
            worker_id: run.worker_id,
            attempt: run.attempt,
            started_at: run.started_at,
            epochs_done: run.epochs_done,
            epochs_planned: run.epochs_planned,
        });
    }
    for worker in queue::workers(&state.pool).await? {
        for name in &worker.queues {
            report(&mut queues, name).workers.push(Worker {
                id: worker.id.clone(),
                host: worker.host.clone(),
                device: worker.device.clone(),
                heartbeat_seconds_ago: worker.heartbeat_seconds,
                current_run_id: worker.current_run_id,
            });
        }
    }
    Ok(Reply(Queues { queues: queues.into_values().collect() }))
}
