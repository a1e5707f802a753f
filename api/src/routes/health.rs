use crate::{
    openapi::{Output, Reply},
    startup::AppState,
};
use actix_web::{Either, HttpResponse, Responder, body::BoxBody, web};
use schemars::JsonSchema;
use serde::Serialize;
use std::time::Duration;

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// `ok` or `unreachable` for each service.
#[derive(Serialize, JsonSchema)]
pub struct Health {
    postgres: &'static str,
    redis: &'static str,
}

/// 503 with `Retry-After` when a service does not answer.
pub struct Unhealthy(Health);

impl Responder for Unhealthy {
    type Body = BoxBody;

    fn respond_to(self, _: &actix_web::HttpRequest) -> HttpResponse {
        HttpResponse::ServiceUnavailable().insert_header(("Retry-After", "2")).json(self.0)
    }
}

impl Output for Unhealthy {
    fn describe(operation: &mut crate::openapi::Operation, schemas: &mut schemars::SchemaGenerator) {
        <Reply<Health, 503> as Output>::describe(operation, schemas);
    }
}

/// `GET /healthz`: 200 when Postgres and Redis both answer, else 503 naming which does not.
pub async fn healthz(state: web::Data<AppState>) -> Either<Reply<Health>, Unhealthy> {
    let postgres = tokio::time::timeout(CHECK_TIMEOUT, sqlx::query("SELECT 1").execute(&state.pool)).await;
    let postgres_ok = matches!(postgres, Ok(Ok(_)));
    let mut redis = state.redis.clone();
    let redis_ok = matches!(
        tokio::time::timeout(CHECK_TIMEOUT, redis::cmd("PING").query_async::<String>(&mut redis)).await,
        Ok(Ok(_))
    );
    let word = |ok: bool| if ok { "ok" } else { "unreachable" };
    let health = Health { postgres: word(postgres_ok), redis: word(redis_ok) };
    if postgres_ok && redis_ok { Either::Left(Reply(health)) } else { Either::Right(Unhealthy(health)) }
}
