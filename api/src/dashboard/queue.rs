//! `/queue`: queued runs in the order workers take them, running runs with their progress,
//! and the workers with their device, heartbeat age and current run.
use super::view::{Nav, PageError, seconds};
use crate::{
    auth::SessionUser,
    startup::AppState,
    store::queue::{self, QueuedRun, RunningRun, WorkerRow},
};
use actix_web::web;
use askama::Template;
use chrono::Utc;

/// A worker silent for longer than this is shown as gone (heartbeats come every second).
const STALE_AFTER_SECONDS: f64 = 30.0;

#[derive(Template, askama_web::WebTemplate)]
#[template(path = "queue.html")]
pub struct QueuePage {
    pub nav: Nav,
    pub queued: Vec<QueuedLine>,
    pub running: Vec<RunningLine>,
    pub workers: Vec<WorkerLine>,
}

pub struct QueuedLine {
    pub run: QueuedRun,
    pub waiting: String,
}

pub struct RunningLine {
    pub run: RunningRun,
    pub progress: String,
    pub elapsed: String,
}

pub struct WorkerLine {
    pub worker: WorkerRow,
    pub heartbeat: String,
    pub alive: bool,
}

pub async fn queue_page(state: web::Data<AppState>, who: SessionUser) -> Result<QueuePage, PageError> {
    let now = Utc::now();
    let since = |at: chrono::DateTime<Utc>| seconds((now - at).num_milliseconds().max(0) as f64 / 1e3);
    let queued = queue::queued(&state.pool, who.user_id)
        .await?
        .into_iter()
        .map(|run| QueuedLine { waiting: since(run.queued_at), run })
        .collect();
    let running = queue::running(&state.pool, who.user_id)
        .await?
        .into_iter()
        .map(|run| RunningLine {
            progress: progress(&run),
            elapsed: run.started_at.map(since).unwrap_or_default(),
            run,
        })
        .collect();
    let workers = queue::workers(&state.pool)
        .await?
        .into_iter()
        .map(|worker| WorkerLine {
            heartbeat: format!("{} ago", seconds(worker.heartbeat_seconds.max(0.0))),
            alive: worker.heartbeat_seconds <= STALE_AFTER_SECONDS,
            worker,
        })
        .collect();
    Ok(QueuePage { nav: Nav::of(&who), queued, running, workers })
}

/// "epoch 2 of 5, step 340" for training; what is known otherwise.
fn progress(run: &RunningRun) -> String {
    let step = run.last_step.map(|step| format!(", step {step}")).unwrap_or_default();
    match (run.epochs_done, run.epochs_planned) {
        (done, Some(planned)) => format!("epoch {} of {planned}{step}", (done.unwrap_or(0) + 1).min(planned.max(1))),
        (_, None) => format!("working{step}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running(done: Option<i64>, planned: Option<i64>, step: Option<i64>) -> RunningRun {
        RunningRun {
            id: 1,
            name: None,
            kind: "train".into(),
            experiment_name: "e".into(),
            queue: "default".into(),
            worker_id: None,
            started_at: None,
            attempt: 1,
            epochs_done: done,
            epochs_planned: planned,
            last_step: step,
            cancel_requested: false,
        }
    }

    #[test]
    fn progress_counts_the_epoch_in_progress() {
        assert_eq!(progress(&running(None, Some(3), None)), "epoch 1 of 3");
        assert_eq!(progress(&running(Some(1), Some(3), Some(250))), "epoch 2 of 3, step 250");
        assert_eq!(
            progress(&running(Some(3), Some(3), Some(750))),
            "epoch 3 of 3, step 750",
            "evaluating after the last"
        );
        assert_eq!(progress(&running(None, None, None)), "working");
    }
}
