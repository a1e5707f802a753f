//! `Idempotency-Key` on POST requests of REST clients: a retried request (the same key, the
//! same credential, the same method, path and body) within 24 hours gets the first response
//! again and changes nothing; the same key with another request is refused with 422. Keys are
//! scoped by the bearer token, so clients cannot see each other's responses. A request that
//! ended in a server error keeps no record, so its retry runs again. A request with a key
//! still in progress is answered 409, to retry shortly.
use crate::{error::ApiError, startup::AppState};
use actix_web::{
    HttpMessage, HttpResponse, ResponseError,
    body::{BoxBody, MessageBody},
    dev::{Payload, ServiceRequest, ServiceResponse},
    http::{Method, StatusCode, header},
    middleware::Next,
    web,
};
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use sqlx::PgPool;

pub const HEADER: &str = "idempotency-key";
pub const MAX_KEY_CHARS: usize = 255;
/// Marks a response that is the stored answer to an earlier request.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";

/// Whether a POST to `path` honours the header. An upload (up to hundreds of megabytes) is
/// not held in memory to compare: it is stored by its content, so a repeated upload stores no
/// second file (it gets a new id).
pub fn applies_to(path: &str) -> bool {
    !path.ends_with("/uploads")
}

pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let key = match req.headers().get(HEADER) {
        Some(key) if req.method() == Method::POST && applies_to(req.path()) => {
            key.to_str().ok().map(str::to_owned).unwrap_or_default()
        }
        _ => return Ok(next.call(req).await?.map_into_boxed_body()),
    };
    // Without a bearer token the handler refuses the request anyway.
    let Some(scope) = bearer_scope(&req) else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    if key.is_empty() || key.chars().count() > MAX_KEY_CHARS || !key.chars().all(|c| c.is_ascii_graphic()) {
        let err = ApiError::BadRequest {
            code: "invalid_header",
            message: format!("must be 1 to {MAX_KEY_CHARS} visible ASCII characters"),
            field: Some("Idempotency-Key".into()),
        };
        return Ok(req.into_response(err.error_response()));
    }
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    let (http, mut payload) = req.into_parts();
    let body = match read_body(&mut payload, state.settings.max_body_bytes).await {
        Ok(body) => body,
        Err(err) => return Ok(ServiceResponse::new(http, err.error_response())),
    };
    let fingerprint = fingerprint(&http, &body);
    let request = ServiceRequest::from_parts(http, Payload::from(body));
    let outcome = match claim(&state.pool, &scope, &key, &fingerprint).await {
        Ok(outcome) => outcome,
        Err(err) => return Ok(request.into_response(ApiError::from(err).error_response())),
    };
    match outcome {
        Claim::Claimed => {}
        Claim::Replay { status, content_type, body } => {
            let mut response = HttpResponse::build(StatusCode::from_u16(status as u16).unwrap_or(StatusCode::OK));
            response.insert_header((REPLAYED_HEADER, "true"));
            if let Some(content_type) = content_type {
                response.insert_header((header::CONTENT_TYPE, content_type));
            }
            return Ok(request.into_response(response.body(body)));
        }
        Claim::OtherRequest => {
            let err = ApiError::invalid(
                "Idempotency-Key",
                "was used for a different request in the last 24 hours; use a new key",
            );
            return Ok(request.into_response(err.error_response()));
        }
        Claim::InProgress => {
            let err = ApiError::Conflict {
                code: "request_in_progress",
                message: "a request with this Idempotency-Key is still in progress; retry in a moment".into(),
                field: Some("Idempotency-Key".into()),
            };
            return Ok(request.into_response(err.error_response()));
        }
    }

    let response = match next.call(request).await {
        Ok(response) => response,
        Err(err) => {
            // Nothing was answered: free the key so the retry runs.
            if let Err(release_err) = release(&state.pool, &scope, &key).await {
                tracing::error!(error = %release_err, "releasing an idempotency key failed");
            }
            return Err(err);
        }
    };
    let (http, response) = response.into_parts();
    let status = response.status();
    let content_type = response.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let (head, body) = response.into_parts();
    let body = actix_web::body::to_bytes(body)
        .await
        .map_err(|_| actix_web::error::ErrorInternalServerError("reading the response"))?;
    let recorded = if status.is_server_error() {
        release(&state.pool, &scope, &key).await
    } else {
        complete(&state.pool, &scope, &key, status.as_u16(), content_type.as_deref(), &body).await
    };
    if let Err(err) = recorded {
        tracing::error!(error = %err, "recording an idempotent response failed");
    }
    Ok(ServiceResponse::new(http, head.set_body(body).map_into_boxed_body()))
}

/// The credential's hash: keys of one token never meet those of another.
fn bearer_scope(req: &ServiceRequest) -> Option<String> {
    let token = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer ")?;
    Some(hex::encode(Sha256::digest(token.trim().as_bytes())))
}

fn fingerprint(http: &actix_web::HttpRequest, body: &[u8]) -> String {
    let mut hash = Sha256::new();
    hash.update(http.method().as_str());
    hash.update([0]);
    hash.update(http.uri().to_string());
    hash.update([0]);
    hash.update(http.content_type());
    hash.update([0]);
    hash.update(body);
    hex::encode(hash.finalize())
}

async fn read_body(payload: &mut Payload, limit: usize) -> Result<web::Bytes, ApiError> {
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|err| ApiError::BadRequest {
            code: "unreadable_body",
            message: err.to_string(),
            field: None,
        })?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

enum Claim {
    /// This request runs; its response will be stored.
    Claimed,
    Replay {
        status: i16,
        content_type: Option<String>,
        body: Vec<u8>,
    },
    OtherRequest,
    InProgress,
}

/// Takes the key for this request, unless a request of the last 24 hours holds it.
async fn claim(pool: &PgPool, scope: &str, key: &str, fingerprint: &str) -> sqlx::Result<Claim> {
    let claimed: Option<bool> = sqlx::query_scalar(
        "INSERT INTO idempotency_keys (scope, key, fingerprint) VALUES ($1, $2, $3)
         ON CONFLICT (scope, key) DO UPDATE
             SET fingerprint = $3, status = NULL, content_type = NULL, body = NULL, created_at = now()
             WHERE idempotency_keys.created_at < now() - interval '24 hours'
         RETURNING true",
    )
    .bind(scope)
    .bind(key)
    .bind(fingerprint)
    .fetch_optional(pool)
    .await?;
    if claimed.is_some() {
        return Ok(Claim::Claimed);
    }
    #[derive(sqlx::FromRow)]
    struct Stored {
        fingerprint: String,
        status: Option<i16>,
        content_type: Option<String>,
        body: Option<Vec<u8>>,
    }
    let stored: Option<Stored> = sqlx::query_as(
        "SELECT fingerprint, status, content_type, body FROM idempotency_keys WHERE scope = $1 AND key = $2",
    )
    .bind(scope)
    .bind(key)
    .fetch_optional(pool)
    .await?;
    Ok(match stored {
        // Released by a failed request between the two statements: ask the client to retry.
        None => Claim::InProgress,
        Some(stored) if stored.fingerprint != fingerprint => Claim::OtherRequest,
        Some(Stored { status: Some(status), content_type, body, .. }) => {
            Claim::Replay { status, content_type, body: body.unwrap_or_default() }
        }
        Some(_) => Claim::InProgress,
    })
}

async fn complete(
    pool: &PgPool,
    scope: &str,
    key: &str,
    status: u16,
    content_type: Option<&str>,
    body: &[u8],
) -> sqlx::Result<()> {
    sqlx::query("UPDATE idempotency_keys SET status = $3, content_type = $4, body = $5 WHERE scope = $1 AND key = $2")
        .bind(scope)
        .bind(key)
        .bind(status as i16)
        .bind(content_type)
        .bind(body)
        .execute(pool)
        .await?;
    Ok(())
}

async fn release(pool: &PgPool, scope: &str, key: &str) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2 AND status IS NULL")
        .bind(scope)
        .bind(key)
        .execute(pool)
        .await?;
    Ok(())
}
