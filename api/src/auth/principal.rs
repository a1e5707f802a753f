//! Request extractors for the two ways of signing in.
use super::{rate_limit::Admitted, secrets};
use crate::{error::ApiError, startup::AppState};
use actix_web::{FromRequest, HttpRequest, HttpResponse, dev::Payload, http::header, web};
use std::{future::Future, pin::Pin};

pub const SESSION_COOKIE: &str = "cairn_session";

/// A REST client, from its bearer token.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user_id: i64,
    pub user_name: String,
    pub token_id: i64,
}

/// A person on the dashboard, from the session cookie.
#[derive(Debug, Clone)]
pub struct SessionUser {
    pub user_id: i64,
    pub user_name: String,
    /// Every form that changes something carries it back.
    pub csrf_token: String,
}

impl SessionUser {
    pub fn check_csrf(&self, submitted: &str) -> Result<(), ApiError> {
        if secrets::equal(submitted, &self.csrf_token) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(
                "the form's CSRF token is missing or wrong; reload the page and try again".to_owned(),
            ))
        }
    }
}

type Extracted<T> = Pin<Box<dyn Future<Output = Result<T, ApiError>>>>;

fn state(req: &HttpRequest) -> Result<web::Data<AppState>, ApiError> {
    req.app_data::<web::Data<AppState>>().cloned().ok_or_else(|| ApiError::Internal("no app state".to_owned()))
}

impl FromRequest for Principal {
    type Error = ApiError;
    type Future = Extracted<Self>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let token = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(|token| token.trim().to_owned());
        let state = state(req);
        Box::pin(async move {
            let state = state?;
            let token = token.ok_or(ApiError::Unauthorized)?;
            let row: Option<(i64, i64, String)> = sqlx::query_as(
                "SELECT t.id, u.id, u.name FROM api_tokens t JOIN users u ON u.id = t.user_id
                 WHERE t.token_hash = $1 AND t.revoked_at IS NULL",
            )
            .bind(secrets::hash(&token))
            .fetch_optional(&state.pool)
            .await?;
            let (token_id, user_id, user_name) = row.ok_or(ApiError::Unauthorized)?;
            let admitted =
                state.rate_limiter.check(token_id).map_err(|retry_after| ApiError::TooManyRequests { retry_after })?;
            // Last use is kept to the minute: a write per request would cost more than it tells.
            if admitted == Admitted::FirstInWindow {
                sqlx::query("UPDATE api_tokens SET last_used_at = now() WHERE id = $1")
                    .bind(token_id)
                    .execute(&state.pool)
                    .await?;
            }
            Ok(Principal { user_id, user_name, token_id })
        })
    }
}

/// A page asked for without a session sends the browser to the sign-in form.
fn sign_in_first(err: ApiError) -> actix_web::Error {
    match err {
        ApiError::Unauthorized => {
            let to_login = HttpResponse::SeeOther().insert_header((header::LOCATION, "/login")).finish();
            actix_web::error::InternalError::from_response("sign in first", to_login).into()
        }
        other => other.into(),
    }
}

impl FromRequest for SessionUser {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, actix_web::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let cookie = req.cookie(SESSION_COOKIE).map(|cookie| cookie.value().to_owned());
        let state = state(req);
        Box::pin(async move { Self::find(state, cookie).await.map_err(sign_in_first) })
    }
}

impl SessionUser {
    async fn find(state: Result<web::Data<AppState>, ApiError>, cookie: Option<String>) -> Result<Self, ApiError> {
        {
            let state = state?;
            let cookie = cookie.ok_or(ApiError::Unauthorized)?;
            let row: Option<(i64, String, String)> = sqlx::query_as(
                "SELECT u.id, u.name, s.csrf_token FROM sessions s JOIN users u ON u.id = s.user_id
                 WHERE s.id_hash = $1 AND s.expires_at > now()",
            )
            .bind(secrets::hash(&cookie))
            .fetch_optional(&state.pool)
            .await?;
            let (user_id, user_name, csrf_token) = row.ok_or(ApiError::Unauthorized)?;
            Ok(SessionUser { user_id, user_name, csrf_token })
        }
    }
}
