use crate::{auth::Principal, error::ApiError, startup::AppState, store::queue};
use actix_web::{HttpResponse, web};
use chrono::Utc;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// `GET /api/v1/queues`: per queue, the caller's queued runs in the order workers take them
/// (positions count every team's runs), the running runs, and the workers serving it.
pub async fn list(state: web::Data<AppState>, who: Principal) -> Result<HttpResponse, ApiError> {
    let now = Utc::now();
    let mut queues: BTreeMap<String, Value> = BTreeMap::new();
    let mut push = |queue: &str, list: &str, item: Value| {
        let value = queues
            .entry(queue.to_owned())
            .or_insert_with(|| json!({"name": queue, "queued": [], "running": [], "workers": []}));
        if let Some(items) = value[list].as_array_mut() {
            items.push(item);
        }
    };
    for run in queue::queued(&state.pool, who.user_id).await? {
        let waiting = (now - run.queued_at).num_milliseconds() as f64 / 1e3;
        let item = json!({
            "run_id": run.id, "name": run.name, "kind": run.kind, "experiment": run.experiment_name,
            "priority": run.priority, "position": run.position, "waiting_seconds": waiting, "retry_at": run.retry_at,
        });
        push(&run.queue, "queued", item);
    }
    for run in queue::running(&state.pool, who.user_id).await? {
        let item = json!({
            "run_id": run.id, "name": run.name, "kind": run.kind, "experiment": run.experiment_name,
            "worker_id": run.worker_id, "attempt": run.attempt, "started_at": run.started_at,
            "epochs_done": run.epochs_done, "epochs_planned": run.epochs_planned,
        });
        push(&run.queue, "running", item);
    }
    for worker in queue::workers(&state.pool).await? {
        for name in &worker.queues {
            let item = json!({
                "id": worker.id, "host": worker.host, "device": worker.device,
                "heartbeat_seconds_ago": worker.heartbeat_seconds, "current_run_id": worker.current_run_id,
            });
            push(name, "workers", item);
        }
    }
    Ok(HttpResponse::Ok().json(json!({ "queues": queues.into_values().collect::<Vec<_>>() })))
}
