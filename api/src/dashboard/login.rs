//! Signing in and out, API tokens and the audit log on the dashboard.
use super::view::{AuditPage, CsrfForm, LoginPage, Nav, PageError, TokensPage, see_other};
use crate::{
    auth::{Role, SessionUser, access, audit, principal::SESSION_COOKIE, secrets},
    error::ApiError,
    routes::{issue_token, revoke, user_tokens},
    startup::AppState,
};
use actix_web::{
    HttpRequest, HttpResponse,
    cookie::{Cookie, SameSite, time::Duration as CookieDuration},
    http::header,
    web,
};
use serde::Deserialize;

pub async fn form() -> LoginPage {
    LoginPage { name: String::new(), error: None }
}

#[derive(Deserialize)]
pub struct Credentials {
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
}

/// Checks the password and starts a session: an HttpOnly, SameSite=Lax cookie (Secure when
/// the request came over TLS) holding a random id stored only as its hash.
pub async fn sign_in(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<Credentials>,
) -> Result<HttpResponse, PageError> {
    let user: Option<(i64, String)> = sqlx::query_as("SELECT id, password_hash FROM users WHERE name = $1")
        .bind(&form.name)
        .fetch_optional(&state.pool)
        .await?;
    let Some((user_id, _)) = user.filter(|(_, hash)| secrets::verify_password(&form.password, hash)) else {
        let page = LoginPage { name: form.name.clone(), error: Some("unknown user or wrong password".to_owned()) };
        return Ok(HttpResponse::Unauthorized()
            .content_type("text/html; charset=utf-8")
            .body(super::pages::render(&page)?));
    };
    let session = secrets::generate("");
    let hours = i64::from(state.settings.session_hours);
    sqlx::query(
        "INSERT INTO sessions (id_hash, user_id, csrf_token, expires_at) VALUES ($1, $2, $3, now() + make_interval(hours => $4::int))",
    )
    .bind(secrets::hash(&session))
    .bind(user_id)
    .bind(secrets::generate(""))
    .bind(hours)
    .execute(&state.pool)
    .await?;
    let cookie = Cookie::build(SESSION_COOKIE, session)
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(req.connection_info().scheme() == "https")
        .max_age(CookieDuration::hours(hours))
        .finish();
    Ok(HttpResponse::SeeOther().insert_header((header::LOCATION, "/")).cookie(cookie).finish())
}

pub async fn sign_out(
    req: HttpRequest,
    state: web::Data<AppState>,
    who: SessionUser,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, PageError> {
    who.check_csrf(&form.csrf)?;
    if let Some(cookie) = req.cookie(SESSION_COOKIE) {
        sqlx::query("DELETE FROM sessions WHERE id_hash = $1")
            .bind(secrets::hash(cookie.value()))
            .execute(&state.pool)
            .await?;
    }
    let mut gone = Cookie::build(SESSION_COOKIE, "").path("/").finish();
    gone.make_removal();
    Ok(HttpResponse::SeeOther().insert_header((header::LOCATION, "/login")).cookie(gone).finish())
}

pub async fn tokens_page(state: web::Data<AppState>, who: SessionUser) -> Result<TokensPage, PageError> {
    let tokens = user_tokens(&state.pool, who.user_id).await?;
    Ok(TokensPage { nav: Nav::of(&who), tokens, created: None, error: None })
}

#[derive(Deserialize)]
pub struct TokenForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
}

/// Creates a token and shows it on this one page, never again.
pub async fn create_token_form(
    state: web::Data<AppState>,
    who: SessionUser,
    form: web::Form<TokenForm>,
) -> Result<TokensPage, PageError> {
    who.check_csrf(&form.csrf)?;
    let (created, error) = match issue_token(&state.pool, who.user_id, &form.name).await {
        Ok((_, token)) => (Some(token), None),
        Err(err @ ApiError::Invalid(_)) => (None, Some(err.message())),
        Err(err) => return Err(err.into()),
    };
    let tokens = user_tokens(&state.pool, who.user_id).await?;
    Ok(TokensPage { nav: Nav::of(&who), tokens, created, error })
}

pub async fn revoke_token_form(
    state: web::Data<AppState>,
    who: SessionUser,
    id: web::Path<i64>,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, PageError> {
    who.check_csrf(&form.csrf)?;
    revoke(&state.pool, who.user_id, *id).await?;
    Ok(see_other("/tokens"))
}

pub async fn audit_page(
    state: web::Data<AppState>,
    who: SessionUser,
    team_id: web::Path<i64>,
) -> Result<AuditPage, PageError> {
    access::team(&state.pool, who.user_id, *team_id, Role::Admin).await?;
    let entries = audit::list(&state.pool, *team_id, 500).await?;
    Ok(AuditPage { nav: Nav::of(&who), team_id: *team_id, entries })
}
