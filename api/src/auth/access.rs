//! The checks every handler makes before touching a team's resources.
use super::Role;
use crate::{
    error::ApiError,
    store::{self, experiments::Experiment, runs::Run},
};
use sqlx::PgPool;

fn decide(role: Option<String>, needed: Role, what: &'static str) -> Result<Role, ApiError> {
    // Not a member: the resource does not exist, as far as this user can tell.
    let role: Role = role.and_then(|role| role.parse().ok()).ok_or(ApiError::NotFound(what))?;
    if role < needed {
        return Err(ApiError::Forbidden(format!("this needs the {needed} role in the team; you are {role}")));
    }
    Ok(role)
}

/// The user's role in a team, if at least `needed`.
pub async fn team(pool: &PgPool, user_id: i64, team_id: i64, needed: Role) -> Result<Role, ApiError> {
    let role: Option<String> = sqlx::query_scalar("SELECT role FROM memberships WHERE team_id = $1 AND user_id = $2")
        .bind(team_id)
        .bind(user_id)
        .fetch_optional(pool)
        .await?;
    decide(role, needed, "team")
}

pub async fn experiment(pool: &PgPool, user_id: i64, experiment_id: i64, needed: Role) -> Result<Experiment, ApiError> {
    let (experiment, role) = store::experiments::get_with_role(pool, experiment_id, user_id)
        .await?
        .ok_or(ApiError::NotFound("experiment"))?;
    decide(role, needed, "experiment")?;
    Ok(experiment)
}

pub async fn run(pool: &PgPool, user_id: i64, run_id: i64, needed: Role) -> Result<Run, ApiError> {
    let (run, role) = store::runs::get_with_role(pool, run_id, user_id).await?.ok_or(ApiError::NotFound("run"))?;
    decide(role, needed, "run")?;
    Ok(run)
}
