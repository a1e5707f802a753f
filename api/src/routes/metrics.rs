use crate::{
    auth::{Principal, Role, access},
    error::ApiError,
    extract::JsonBody,
    openapi::Reply,
    startup::AppState,
    store,
};
use actix_web::web;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

pub const MAX_POINTS: usize = 10_000;
pub const MAX_KEY_CHARS: usize = 128;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SeriesQuery {
    /// Only this key's series.
    key: Option<String>,
}

#[derive(Serialize, JsonSchema)]
pub struct RunSeries {
    run_id: i64,
    series: Vec<store::metrics::Series>,
}

#[derive(Serialize, JsonSchema)]
pub struct Ingested {
    /// Points in the batch.
    accepted: usize,
    /// Points that were new (a point already stored for its run, key and step is kept).
    inserted: u64,
}

/// `GET /api/v1/runs/{id}/metrics?key=`: each series with its number of points.
pub async fn get(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<i64>,
    query: web::Query<SeriesQuery>,
) -> Result<Reply<RunSeries>, ApiError> {
    let run = access::run(&state.pool, who.user_id, *id, Role::Viewer).await?;
    let series = store::metrics::series(&state.pool, run.id, query.key.as_deref()).await?;
    Ok(Reply(RunSeries { run_id: run.id, series }))
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(example = json!({"points": [{"key": "val_accuracy", "step": 1, "value": 0.97}, {"key": "val_loss", "step": 1, "value": 0.09}]}))]
pub struct MetricBatch {
    /// 1 to 10,000 points.
    points: Vec<MetricPoint>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct MetricPoint {
    key: String,
    step: i64,
    value: f64,
}

/// `POST /api/v1/runs/{id}/metrics`: up to 10,000 points in one statement. Writing a point
/// again (same run, key and step) changes nothing, so a client can retry a batch safely.
pub async fn ingest(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<i64>,
    body: JsonBody<MetricBatch>,
) -> Result<Reply<Ingested>, ApiError> {
    let run = access::run(&state.pool, who.user_id, *id, Role::Member).await?;
    let points = body.0.points;
    if points.is_empty() || points.len() > MAX_POINTS {
        return Err(ApiError::invalid("points", format!("must hold 1 to {MAX_POINTS} points")));
    }
    let mut keys = Vec::with_capacity(points.len());
    let mut steps = Vec::with_capacity(points.len());
    let mut values = Vec::with_capacity(points.len());
    for (index, point) in points.into_iter().enumerate() {
        let valid_key = !point.key.is_empty()
            && point.key.chars().count() <= MAX_KEY_CHARS
            && point.key.chars().all(|c| c.is_ascii_alphanumeric() || "_./-".contains(c));
        if !valid_key {
            return Err(ApiError::invalid(
                format!("points[{index}].key"),
                format!("must be 1 to {MAX_KEY_CHARS} characters of A-Z, a-z, 0-9, `_`, `.`, `/` and `-`"),
            ));
        }
        if point.step < 0 {
            return Err(ApiError::invalid(format!("points[{index}].step"), "must not be negative"));
        }
        if !point.value.is_finite() {
            return Err(ApiError::invalid(format!("points[{index}].value"), "must be a finite number"));
        }
        keys.push(point.key);
        steps.push(point.step);
        values.push(point.value);
    }
    let inserted = store::metrics::insert(&state.pool, run.id, &keys, &steps, &values).await?;
    Ok(Reply(Ingested { accepted: keys.len(), inserted }))
}
