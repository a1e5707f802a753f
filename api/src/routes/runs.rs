use crate::{
    error::ApiError,
    extract::JsonBody,
    startup::AppState,
    store::runs::{self, CancelOutcome, ListFilter},
    submit::{RunSubmission, submit_run},
};
use actix_web::{HttpResponse, get, post, web};
use cairn_domain::RunStatus;
use serde::Deserialize;
use serde_json::json;

pub const MAX_PAGE: i64 = 500;

#[post("/experiments/{id}/runs")]
pub async fn submit(
    state: web::Data<AppState>,
    experiment_id: web::Path<i64>,
    body: JsonBody<RunSubmission>,
) -> Result<HttpResponse, ApiError> {
    let run = submit_run(&state, *experiment_id, body.0).await?;
    Ok(HttpResponse::Created().json(run))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunsQuery {
    experiment: Option<i64>,
    status: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

/// `GET /api/v1/runs`: newest first, `limit` per page; `next_cursor` fetches the next page.
#[get("/runs")]
pub async fn list(state: web::Data<AppState>, query: web::Query<RunsQuery>) -> Result<HttpResponse, ApiError> {
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
    let filter = ListFilter { experiment_id: query.experiment, status, before_id, limit };
    let page = runs::list(&state.pool, &filter).await?;
    let next_cursor = (page.len() as i64 == limit).then(|| page.last().map(|row| row.run.id.to_string())).flatten();
    Ok(HttpResponse::Ok().json(json!({ "runs": page, "next_cursor": next_cursor })))
}

#[get("/runs/{id}")]
pub async fn get(state: web::Data<AppState>, id: web::Path<i64>) -> Result<HttpResponse, ApiError> {
    let run = runs::get(&state.pool, *id).await?.ok_or(ApiError::NotFound("run"))?;
    let artifacts = runs::artifacts(&state.pool, run.id).await?;
    let mut body = serde_json::to_value(&run).map_err(|err| ApiError::Internal(err.to_string()))?;
    body["artifacts"] = serde_json::to_value(artifacts).map_err(|err| ApiError::Internal(err.to_string()))?;
    Ok(HttpResponse::Ok().json(body))
}

/// Cancels a queued run at once (200) or asks a running one to stop at its next step (202).
pub async fn cancel_run(state: &AppState, id: i64) -> Result<(actix_web::http::StatusCode, runs::Run), ApiError> {
    use actix_web::http::StatusCode;
    match runs::cancel(&state.pool, id).await? {
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

#[post("/runs/{id}/cancel")]
pub async fn cancel(state: web::Data<AppState>, id: web::Path<i64>) -> Result<HttpResponse, ApiError> {
    let (status, run) = cancel_run(&state, *id).await?;
    Ok(HttpResponse::build(status).json(run))
}
