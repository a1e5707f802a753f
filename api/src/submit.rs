//! Submitting a run, shared by the REST API and the dashboard form: everything is validated
//! before anything is recorded, so a rejected submission leaves no trace.
use crate::{
    auth::{Role, access, audit},
    error::ApiError,
    startup::AppState,
    store::{self, runs::Run},
};
use actix_web::web;
use cairn_datasets::DatasetError;
use cairn_domain::{RunKind, TrainParams, TrainRequest};
use serde::Deserialize;

pub const MAX_PRIORITY: i64 = 1_000;

/// `POST /api/v1/experiments/{id}/runs`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSubmission {
    pub kind: RunKind,
    pub params: TrainRequest,
    pub queue: Option<String>,
    pub priority: Option<i64>,
}

/// Validates and records a run for `user_id`, who must be a member of the experiment's team.
pub async fn submit_run(
    state: &AppState,
    user_id: i64,
    experiment_id: i64,
    submission: RunSubmission,
) -> Result<Run, ApiError> {
    let experiment = access::experiment(&state.pool, user_id, experiment_id, Role::Member).await?;
    let params = validate_train(state, &submission.params).await?;
    let queue = submission.queue.as_deref().unwrap_or("default");
    if queue.is_empty()
        || queue.len() > 64
        || !queue.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
    {
        return Err(ApiError::invalid("queue", "must be 1 to 64 characters of a-z, 0-9, `_` and `-`"));
    }
    let priority = submission.priority.unwrap_or(0);
    if !(-MAX_PRIORITY..=MAX_PRIORITY).contains(&priority) {
        return Err(ApiError::invalid("priority", format!("must be between -{MAX_PRIORITY} and {MAX_PRIORITY}")));
    }
    let params = serde_json::to_value(&params).map_err(|err| ApiError::Internal(err.to_string()))?;
    let mut tx = state.pool.begin().await?;
    let run = store::runs::create(
        &mut tx,
        store::runs::NewRun { experiment_id, kind: submission.kind, params, queue, priority: priority as i32 },
    )
    .await?;
    audit::record(
        &mut *tx,
        audit::Entry {
            user_id,
            team_id: Some(experiment.team_id),
            action: "run.create",
            target_type: "run",
            target_id: Some(run.id),
            details: serde_json::json!({ "experiment_id": experiment_id, "kind": run.kind }),
        },
    )
    .await?;
    tx.commit().await?;
    tracing::info!(run.id = run.id, experiment.id = experiment_id, "run queued");
    Ok(run)
}

/// Validates train params against the dataset they name (its size bounds the ranges and the
/// batch size). Errors name fields under `params.`.
pub async fn validate_train(state: &AppState, request: &TrainRequest) -> Result<TrainParams, ApiError> {
    let name = request.dataset_name().map_err(|err| err.within("params"))?;
    let data_dir = state.data_dir.clone();
    let lookup = name.clone();
    let len = web::block(move || data_dir.len(&lookup))
        .await
        .map_err(|err| ApiError::Internal(err.to_string()))?
        .map_err(|err: DatasetError| ApiError::invalid("params.dataset", err.to_string()))?;
    Ok(TrainParams::validate(request, len).map_err(|err| err.within("params"))?)
}
