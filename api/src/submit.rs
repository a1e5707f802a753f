//! Submitting a run, shared by the REST API and the dashboard form: everything is validated
//! before anything is recorded, so a rejected submission leaves no trace.
use crate::{
    auth::{Role, access, audit},
    error::ApiError,
    extract::decode_value,
    startup::AppState,
    store::{self, runs::Run},
};
use actix_web::web;
use cairn_datasets::DatasetError;
use cairn_domain::{DatasetName, EvaluateParams, EvaluateRequest, RunKind, TrainParams, TrainRequest};
use serde::Deserialize;

pub const MAX_PRIORITY: i64 = 1_000;

/// `POST /api/v1/experiments/{id}/runs`: `params` is read according to `kind`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSubmission {
    pub kind: RunKind,
    pub params: serde_json::Value,
    pub parent_run_id: Option<i64>,
    pub queue: Option<String>,
    pub priority: Option<i64>,
}

/// Which queue a run waits in, and how urgently.
#[derive(Debug, Default)]
pub struct Placement {
    pub queue: Option<String>,
    pub priority: Option<i64>,
}

/// What to run, decoded for its kind.
pub enum RunSpec {
    Train(TrainRequest),
    Evaluate { parent_run_id: i64, request: EvaluateRequest },
}

impl RunSubmission {
    pub fn into_spec(self) -> Result<(RunSpec, Placement), ApiError> {
        let spec = match (self.kind, self.parent_run_id) {
            (RunKind::Train, None) => RunSpec::Train(decode_value(self.params, "params")?),
            (RunKind::Train, Some(_)) => return Err(ApiError::invalid("parent_run_id", "a train run has no parent")),
            (RunKind::Evaluate, Some(parent_run_id)) => {
                RunSpec::Evaluate { parent_run_id, request: decode_value(self.params, "params")? }
            }
            (RunKind::Evaluate, None) => {
                return Err(ApiError::invalid("parent_run_id", "required: the run whose checkpoint to evaluate"));
            }
        };
        Ok((spec, Placement { queue: self.queue, priority: self.priority }))
    }
}

/// Validates and records a run for `user_id`, who must be a member of the experiment's team.
pub async fn submit_run(
    state: &AppState,
    user_id: i64,
    experiment_id: i64,
    spec: RunSpec,
    placement: Placement,
) -> Result<Run, ApiError> {
    let experiment = access::experiment(&state.pool, user_id, experiment_id, Role::Member).await?;
    let (kind, parent_run_id, params) = match spec {
        RunSpec::Train(request) => (RunKind::Train, None, to_json(&validate_train(state, &request).await?)?),
        RunSpec::Evaluate { parent_run_id, request } => {
            let parent =
                access::run(&state.pool, user_id, parent_run_id, Role::Viewer).await.map_err(|err| match err {
                    // The parent is a field of this request: name it rather than answer 404.
                    ApiError::NotFound(_) => ApiError::invalid("parent_run_id", "no such run"),
                    other => other,
                })?;
            if parent.experiment_id != experiment_id {
                return Err(ApiError::invalid("parent_run_id", "must be a run of the same experiment"));
            }
            let has_checkpoint =
                store::runs::artifacts(&state.pool, parent.id).await?.iter().any(|a| a.kind == "checkpoint");
            if parent.status != "succeeded" || !has_checkpoint {
                return Err(ApiError::invalid(
                    "parent_run_id",
                    format!("run {} has no final checkpoint (it is {})", parent.id, parent.status),
                ));
            }
            let name = request.dataset_name().map_err(|err| err.within("params"))?;
            let len = dataset_len(state, name).await?;
            let params = EvaluateParams::validate(&request, len).map_err(|err| err.within("params"))?;
            (RunKind::Evaluate, Some(parent.id), to_json(&params)?)
        }
    };
    let queue = placement.queue.as_deref().unwrap_or("default");
    if queue.is_empty()
        || queue.len() > 64
        || !queue.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
    {
        return Err(ApiError::invalid("queue", "must be 1 to 64 characters of a-z, 0-9, `_` and `-`"));
    }
    let priority = placement.priority.unwrap_or(0);
    if !(-MAX_PRIORITY..=MAX_PRIORITY).contains(&priority) {
        return Err(ApiError::invalid("priority", format!("must be between -{MAX_PRIORITY} and {MAX_PRIORITY}")));
    }
    let mut tx = state.pool.begin().await?;
    let run = store::runs::create(
        &mut tx,
        store::runs::NewRun { experiment_id, kind, parent_run_id, params, queue, priority: priority as i32 },
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
    let len = dataset_len(state, name).await?;
    Ok(TrainParams::validate(request, len).map_err(|err| err.within("params"))?)
}

/// How many samples a dataset has, reading only file headers, off the async threads.
async fn dataset_len(state: &AppState, name: DatasetName) -> Result<usize, ApiError> {
    let data_dir = state.data_dir.clone();
    web::block(move || data_dir.len(&name))
        .await
        .map_err(|err| ApiError::Internal(err.to_string()))?
        .map_err(|err: DatasetError| ApiError::invalid("params.dataset", err.to_string()))
}

fn to_json(params: &impl serde::Serialize) -> Result<serde_json::Value, ApiError> {
    serde_json::to_value(params).map_err(|err| ApiError::Internal(err.to_string()))
}
