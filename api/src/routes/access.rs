//! Teams, members, API tokens and the audit log.
use crate::{
    auth::{Principal, Role, access, audit, secrets},
    error::ApiError,
    extract::JsonBody,
    openapi::Reply,
    startup::AppState,
};
use actix_web::web;
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Serialize, sqlx::FromRow, JsonSchema)]
pub struct TeamRole {
    id: i64,
    name: String,
    role: String,
}

/// `GET /api/v1/teams`: the caller's teams and role in each.
#[derive(Serialize, JsonSchema)]
pub struct Teams {
    teams: Vec<TeamRole>,
}

pub async fn teams(state: web::Data<AppState>, who: Principal) -> Result<Reply<Teams>, ApiError> {
    let teams: Vec<TeamRole> = sqlx::query_as(
        "SELECT t.id, t.name, m.role FROM teams t JOIN memberships m ON m.team_id = t.id WHERE m.user_id = $1 ORDER BY t.name",
    )
    .bind(who.user_id)
    .fetch_all(&state.pool)
    .await?;
    Ok(Reply(Teams { teams }))
}

#[derive(Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(example = json!({"user": "ada", "role": "member"}))]
pub struct Member {
    /// The user's name.
    user: String,
    /// `viewer`, `member` or `admin`.
    role: String,
}

#[derive(Serialize, JsonSchema)]
pub struct Membership {
    team_id: i64,
    #[serde(flatten)]
    member: Member,
}

/// `PUT /api/v1/teams/{id}/members`: an admin gives a user a role in the team.
pub async fn set_member(
    state: web::Data<AppState>,
    who: Principal,
    team_id: web::Path<i64>,
    body: JsonBody<Member>,
) -> Result<Reply<Membership>, ApiError> {
    access::team(&state.pool, who.user_id, *team_id, Role::Admin).await?;
    let role: Role = body.0.role.parse().map_err(|message: String| ApiError::invalid("role", message))?;
    let user_id: i64 = sqlx::query_scalar("SELECT id FROM users WHERE name = $1")
        .bind(&body.0.user)
        .fetch_optional(&state.pool)
        .await?
        .ok_or_else(|| ApiError::invalid("user", "no user by that name"))?;
    let mut tx = state.pool.begin().await?;
    sqlx::query(
        "INSERT INTO memberships (team_id, user_id, role) VALUES ($1, $2, $3)
         ON CONFLICT (team_id, user_id) DO UPDATE SET role = $3",
    )
    .bind(*team_id)
    .bind(user_id)
    .bind(role.as_str())
    .execute(&mut *tx)
    .await?;
    let entry = audit::Entry {
        user_id: who.user_id,
        team_id: Some(*team_id),
        action: "member.set",
        target_type: "user",
        target_id: Some(user_id),
        details: json!({ "role": role }),
    };
    audit::record(&mut *tx, entry).await?;
    tx.commit().await?;
    Ok(Reply(Membership { team_id: *team_id, member: Member { user: body.0.user, role: role.to_string() } }))
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// The newest entries to return, 1 to 1000 (default 100).
    limit: Option<i64>,
}

#[derive(Serialize, JsonSchema)]
pub struct AuditLog {
    entries: Vec<audit::Logged>,
}

/// `GET /api/v1/teams/{id}/audit`: for the team's admins.
pub async fn audit_log(
    state: web::Data<AppState>,
    who: Principal,
    team_id: web::Path<i64>,
    query: web::Query<AuditQuery>,
) -> Result<Reply<AuditLog>, ApiError> {
    access::team(&state.pool, who.user_id, *team_id, Role::Admin).await?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be between 1 and 1000"));
    }
    let entries = audit::list(&state.pool, *team_id, limit).await?;
    Ok(Reply(AuditLog { entries }))
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(example = json!({"name": "sweep automation"}))]
pub struct NewToken {
    /// What the token is for, 1 to 100 characters.
    name: String,
}

/// A new token; `token` is the secret, shown this once.
#[derive(Serialize, JsonSchema)]
pub struct IssuedToken {
    id: i64,
    name: String,
    token: String,
}

#[derive(Serialize, JsonSchema)]
pub struct Tokens {
    tokens: Vec<TokenInfo>,
}

#[derive(Serialize, JsonSchema)]
pub struct Revoked {
    id: i64,
    revoked: bool,
}

#[derive(Serialize, sqlx::FromRow, JsonSchema)]
pub struct TokenInfo {
    pub id: i64,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// Creates a token for `user_id`; the secret is returned here and never again.
pub async fn issue_token(db: &sqlx::PgPool, user_id: i64, name: &str) -> Result<(i64, String), ApiError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ApiError::invalid("name", "must be 1 to 100 characters"));
    }
    let token = secrets::generate(secrets::TOKEN_PREFIX);
    let mut tx = db.begin().await?;
    let id: i64 =
        sqlx::query_scalar("INSERT INTO api_tokens (user_id, name, token_hash) VALUES ($1, $2, $3) RETURNING id")
            .bind(user_id)
            .bind(name)
            .bind(secrets::hash(&token))
            .fetch_one(&mut *tx)
            .await?;
    let entry = audit::Entry {
        user_id,
        team_id: None,
        action: "token.create",
        target_type: "token",
        target_id: Some(id),
        details: json!({ "name": name }),
    };
    audit::record(&mut *tx, entry).await?;
    tx.commit().await?;
    Ok((id, token))
}

/// `POST /api/v1/tokens`: a new token for the caller, shown once.
pub async fn create_token(
    state: web::Data<AppState>,
    who: Principal,
    body: JsonBody<NewToken>,
) -> Result<Reply<IssuedToken, 201>, ApiError> {
    let (id, token) = issue_token(&state.pool, who.user_id, &body.0.name).await?;
    Ok(Reply(IssuedToken { id, name: body.0.name.trim().to_owned(), token }))
}

pub async fn user_tokens(db: &sqlx::PgPool, user_id: i64) -> sqlx::Result<Vec<TokenInfo>> {
    sqlx::query_as(
        "SELECT id, name, created_at, last_used_at, revoked_at FROM api_tokens WHERE user_id = $1 ORDER BY id",
    )
    .bind(user_id)
    .fetch_all(db)
    .await
}

/// `GET /api/v1/tokens`: the caller's tokens, without their secrets.
pub async fn list_tokens(state: web::Data<AppState>, who: Principal) -> Result<Reply<Tokens>, ApiError> {
    Ok(Reply(Tokens { tokens: user_tokens(&state.pool, who.user_id).await? }))
}

/// Revokes one of `user_id`'s tokens; it stops working with the next request.
pub async fn revoke(db: &sqlx::PgPool, user_id: i64, token_id: i64) -> Result<(), ApiError> {
    let mut tx = db.begin().await?;
    let revoked =
        sqlx::query("UPDATE api_tokens SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1 AND user_id = $2")
            .bind(token_id)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
    if revoked.rows_affected() == 0 {
        return Err(ApiError::NotFound("token"));
    }
    let entry = audit::Entry {
        user_id,
        team_id: None,
        action: "token.revoke",
        target_type: "token",
        target_id: Some(token_id),
        details: json!({}),
    };
    audit::record(&mut *tx, entry).await?;
    tx.commit().await?;
    Ok(())
}

/// `POST /api/v1/tokens/{id}/revoke`
pub async fn revoke_token(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<i64>,
) -> Result<Reply<Revoked>, ApiError> {
    revoke(&state.pool, who.user_id, *id).await?;
    Ok(Reply(Revoked { id: *id, revoked: true }))
}
