use crate::{
    auth::{Principal, Role, access, audit},
    error::ApiError,
    extract::JsonBody,
    openapi::{Download, Reply},
    startup::AppState,
    store::{
        self,
        runs::{self, CancelOutcome, ListFilter},
    },
    submit::{CreatedRun, RunSubmission, submit_run, valid_priority},
};
use actix_web::{Either, HttpResponse, web};
use cairn_domain::RunStatus;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

pub const MAX_PAGE: i64 = 500;

pub async fn submit(
    state: web::Data<AppState>,
    who: Principal,
    experiment_id: web::Path<i64>,
    body: JsonBody<RunSubmission>,
) -> Result<Reply<CreatedRun, 201>, ApiError> {
    Ok(Reply(submit_run(&state, who.user_id, *experiment_id, body.0).await?))
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunsQuery {
    /// Only this experiment's runs.
    experiment: Option<i64>,
    /// Only runs with this status.
    status: Option<String>,
    /// Runs per page, 1 to 500 (default 50).
    limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

#[derive(Serialize, JsonSchema)]
pub struct RunPage {
    runs: Vec<runs::RunRow>,
    /// Fetches the next page; absent on the last.
    next_cursor: Option<String>,
}

/// A run with its files and every attempt (worker, start, end, outcome, error).
#[derive(Serialize, JsonSchema)]
pub struct RunDetail {
    #[serde(flatten)]
    run: runs::Run,
    artifacts: Vec<runs::Artifact>,
    attempts: Vec<runs::Attempt>,
}

/// `GET /api/v1/runs`: newest first, `limit` per page; `next_cursor` fetches the next page.
pub async fn list(
    state: web::Data<AppState>,
    who: Principal,
    query: web::Query<RunsQuery>,
) -> Result<Reply<RunPage>, ApiError> {
    let status = match &query.status {
        Some(raw) => Some(raw.parse::<RunStatus>().map_err(|message| ApiError::invalid("status", message))?),
        None => None,
    };
    let limit = query.limit.unwrap_or(50);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::invalid("limit", format!("must be between 1 and {MAX_PAGE}")));
    }
    let before_id = match &query.cursor {
        Some(raw) => Some(
            raw.parse::<i64>()
                .ok()
                .filter(|id| *id > 0)
                .ok_or_else(|| ApiError::invalid("cursor", "must be a `next_cursor` from a previous page"))?,
        ),
        None => None,
    };
    let filter = ListFilter { user_id: who.user_id, experiment_id: query.experiment, status, before_id, limit };
    let page = runs::list(&state.pool, &filter).await?;
    let next_cursor = (page.len() as i64 == limit).then(|| page.last().map(|row| row.run.id.to_string())).flatten();
    Ok(Reply(RunPage { runs: page, next_cursor }))
}

pub async fn get(state: web::Data<AppState>, who: Principal, id: web::Path<i64>) -> Result<Reply<RunDetail>, ApiError> {
    let run = access::run(&state.pool, who.user_id, *id, Role::Viewer).await?;
    let artifacts = runs::artifacts(&state.pool, run.id).await?;
    let attempts = runs::attempts(&state.pool, run.id).await?;
    Ok(Reply(RunDetail { run, artifacts, attempts }))
}

/// Cancels a queued run at once (200) or asks a running one to stop at its next step (202).
/// `user_id` must be a member of the run's team.
pub async fn cancel_run(
    state: &AppState,
    user_id: i64,
    id: i64,
) -> Result<(actix_web::http::StatusCode, runs::Run), ApiError> {
    use actix_web::http::StatusCode;
    let run = access::run(&state.pool, user_id, id, Role::Member).await?;
    let outcome = runs::cancel(&state.pool, run.id).await?;
    if matches!(outcome, CancelOutcome::Cancelled(_) | CancelOutcome::Requested(_)) {
        let team_id = store::experiments::team_id(&state.pool, run.experiment_id).await?;
        let entry = audit::Entry {
            user_id,
            team_id: Some(team_id),
            action: "run.cancel",
            target_type: "run",
            target_id: Some(run.id),
            details: serde_json::json!({ "status_before": run.status }),
        };
        audit::record(&state.pool, entry).await?;
    }
    match outcome {
        CancelOutcome::Cancelled(run) => Ok((StatusCode::OK, run)),
        CancelOutcome::Requested(run) => Ok((StatusCode::ACCEPTED, run)),
        CancelOutcome::AlreadyFinished(run) => Err(ApiError::Conflict {
            code: "run_finished",
            message: format!("run {} already finished as {}", run.id, run.status),
            field: None,
        }),
        CancelOutcome::NotFound => Err(ApiError::NotFound("run")),
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(example = json!({"priority": 10}))]
pub struct RunChange {
    /// -1000 to 1000; higher starts first within a queue.
    priority: i64,
}

/// `PATCH /api/v1/runs/{id}`: a new priority for a run that has not started (queued or
/// waiting for its parent). Within a queue, higher priorities start first.
pub async fn change(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<i64>,
    body: JsonBody<RunChange>,
) -> Result<Reply<runs::Run>, ApiError> {
    let run = access::run(&state.pool, who.user_id, *id, Role::Member).await?;
    let priority = valid_priority(body.0.priority, "priority")?;
    let mut tx = state.pool.begin().await?;
    let changed = runs::set_priority(&mut tx, run.id, priority).await?;
    let Some(changed) = changed else {
        return Err(ApiError::Conflict {
            code: "run_started",
            message: format!(
                "run {} is {}: only a run that has not started can change its priority",
                run.id, run.status
            ),
            field: Some("priority".into()),
        });
    };
    let team_id = store::experiments::team_id(&mut *tx, run.experiment_id).await?;
    let entry = audit::Entry {
        user_id: who.user_id,
        team_id: Some(team_id),
        action: "run.reprioritize",
        target_type: "run",
        target_id: Some(run.id),
        details: json!({ "priority_before": run.priority, "priority": priority }),
    };
    audit::record(&mut *tx, entry).await?;
    tx.commit().await?;
    Ok(Reply(changed))
}

/// 200 with the cancelled run, or 202 while a running one stops.
type Cancelled = Either<Reply<runs::Run, 200>, Reply<runs::Run, 202>>;

pub async fn cancel(state: web::Data<AppState>, who: Principal, id: web::Path<i64>) -> Result<Cancelled, ApiError> {
    let (status, run) = cancel_run(&state, who.user_id, *id).await?;
    Ok(if status == actix_web::http::StatusCode::ACCEPTED {
        Either::Right(Reply(run))
    } else {
        Either::Left(Reply(run))
    })
}

/// An artifact's file and its bytes, from inside the artifact directory only: a path (or a
/// link) that leads outside it is not found.
pub async fn read_artifact(
    state: &AppState,
    artifact: &runs::Artifact,
) -> Result<(std::path::PathBuf, Vec<u8>), ApiError> {
    let root = state.settings.artifact_dir.canonicalize().map_err(|_| ApiError::NotFound("artifact"))?;
    let path = root.join(&artifact.path).canonicalize().map_err(|_| ApiError::NotFound("artifact"))?;
    if !path.starts_with(&root) {
        return Err(ApiError::NotFound("artifact"));
    }
    let bytes = tokio::fs::read(&path).await.map_err(|_| ApiError::NotFound("artifact"))?;
    Ok((path, bytes))
}

/// An artifact's file as a download, after the same checks as its run; `user_id` needs the
/// viewer role in the run's team. The REST API and the dashboard both send it this way.
pub async fn artifact_download(
    state: &AppState,
    user_id: i64,
    run_id: i64,
    artifact_id: i64,
) -> Result<HttpResponse, ApiError> {
    let run = access::run(&state.pool, user_id, run_id, Role::Viewer).await?;
    let artifact = runs::artifact(&state.pool, run.id, artifact_id).await?.ok_or(ApiError::NotFound("artifact"))?;
    let (path, bytes) = read_artifact(state, &artifact).await?;
    let file_name = path.file_name().and_then(|name| name.to_str()).unwrap_or("artifact");
    let content_type = match path.extension().and_then(|ext| ext.to_str()) {
        Some("csv") => "text/csv; charset=utf-8",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    };
    Ok(HttpResponse::Ok()
        .content_type(content_type)
        .insert_header(("Content-Disposition", format!("attachment; filename=\"{file_name}\"")))
        .body(bytes))
}

pub async fn download_artifact(
    state: web::Data<AppState>,
    who: Principal,
    ids: web::Path<(i64, i64)>,
) -> Result<Download, ApiError> {
    let (run_id, artifact_id) = ids.into_inner();
    Ok(Download(artifact_download(&state, who.user_id, run_id, artifact_id).await?))
}
