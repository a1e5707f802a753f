use crate::{
    auth::{Principal, Role, access, audit},
    error::ApiError,
    extract::JsonBody,
    openapi::Reply,
    startup::AppState,
    store::experiments::{self, Created},
};
use actix_web::web;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

pub const MAX_NAME_CHARS: usize = 200;
pub const MAX_DESCRIPTION_CHARS: usize = 10_000;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(example = json!({"name": "mnist-baselines", "description": "CNN baselines on the MNIST split"}))]
pub struct NewExperiment {
    /// Unique within the team, 1 to 200 characters.
    pub name: String,
    /// At most 10,000 characters.
    #[serde(default)]
    pub description: String,
    /// Needed only when the user is a member of several teams.
    pub team_id: Option<i64>,
}

impl NewExperiment {
    /// Trims the name and checks both fields; shared with the dashboard form.
    pub fn validate(self) -> Result<Self, ApiError> {
        let name = self.name.trim().to_owned();
        if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
            return Err(ApiError::invalid("name", format!("must be 1 to {MAX_NAME_CHARS} characters")));
        }
        if name.chars().any(char::is_control) {
            return Err(ApiError::invalid("name", "must not contain control characters"));
        }
        if self.description.chars().count() > MAX_DESCRIPTION_CHARS {
            return Err(ApiError::invalid(
                "description",
                format!("must be at most {MAX_DESCRIPTION_CHARS} characters"),
            ));
        }
        Ok(Self { name, description: self.description, team_id: self.team_id })
    }
}

/// Creates the experiment in a team where `user_id` is at least a member, or reports that its
/// name is taken there.
pub async fn create_experiment(
    state: &AppState,
    user_id: i64,
    new: NewExperiment,
) -> Result<experiments::Experiment, ApiError> {
    let new = new.validate()?;
    let team_id = match new.team_id {
        Some(team_id) => {
            access::team(&state.pool, user_id, team_id, Role::Member).await?;
            team_id
        }
        None => {
            let teams: Vec<i64> = sqlx::query_scalar(
                "SELECT team_id FROM memberships WHERE user_id = $1 AND role IN ('member', 'admin') ORDER BY team_id",
            )
            .bind(user_id)
            .fetch_all(&state.pool)
            .await?;
            match teams[..] {
                [team_id] => team_id,
                [] => {
                    return Err(ApiError::Forbidden(
                        "creating an experiment needs the member role in a team".to_owned(),
                    ));
                }
                _ => return Err(ApiError::invalid("team_id", "required: you are a member of several teams")),
            }
        }
    };
    let mut tx = state.pool.begin().await?;
    let created = experiments::create(&mut *tx, team_id, &new.name, &new.description).await?;
    if let Created::Experiment(experiment) = &created {
        let entry = audit::Entry {
            user_id,
            team_id: Some(team_id),
            action: "experiment.create",
            target_type: "experiment",
            target_id: Some(experiment.id),
            details: serde_json::json!({ "name": experiment.name }),
        };
        audit::record(&mut *tx, entry).await?;
    }
    tx.commit().await?;
    match created {
        Created::Experiment(experiment) => Ok(experiment),
        Created::NameTaken => Err(ApiError::Conflict {
            code: "name_taken",
            message: format!("an experiment named `{}` already exists", new.name),
            field: Some("name".to_owned()),
        }),
    }
}

pub async fn create(
    state: web::Data<AppState>,
    who: Principal,
    body: JsonBody<NewExperiment>,
) -> Result<Reply<experiments::Experiment, 201>, ApiError> {
    Ok(Reply(create_experiment(&state, who.user_id, body.0).await?))
}

#[derive(Serialize, JsonSchema)]
pub struct Experiments {
    experiments: Vec<experiments::ExperimentSummary>,
}

pub async fn list(state: web::Data<AppState>, who: Principal) -> Result<Reply<Experiments>, ApiError> {
    Ok(Reply(Experiments { experiments: experiments::list(&state.pool, who.user_id).await? }))
}

pub async fn get(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<i64>,
) -> Result<Reply<experiments::Experiment>, ApiError> {
    Ok(Reply(access::experiment(&state.pool, who.user_id, *id, Role::Viewer).await?))
}
