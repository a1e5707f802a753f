use crate::startup::AppState;
use actix_web::{HttpResponse, web};
use serde_json::json;
use std::time::Duration;

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// `GET /healthz`: 200 when Postgres and Redis both answer, else 503 naming which does not.
pub async fn healthz(state: web::Data<AppState>) -> HttpResponse {
    let postgres = tokio::time::timeout(CHECK_TIMEOUT, sqlx::query("SELECT 1").execute(&state.pool)).await;
    let postgres_ok = matches!(postgres, Ok(Ok(_)));
    let mut redis = state.redis.clone();
    let redis_ok = matches!(
        tokio::time::timeout(CHECK_TIMEOUT, redis::cmd("PING").query_async::<String>(&mut redis)).await,
        Ok(Ok(_))
    );
    let word = |ok: bool| if ok { "ok" } else { "unreachable" };
    let body = json!({"postgres": word(postgres_ok), "redis": word(redis_ok)});
    if postgres_ok && redis_ok {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().insert_header(("Retry-After", "2")).json(body)
    }
}
