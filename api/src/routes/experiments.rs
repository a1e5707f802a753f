use crate::{
    error::ApiError,
    extract::JsonBody,
    startup::AppState,
    store::experiments::{self, Created},
};
use actix_web::{HttpResponse, get, post, web};
use serde::Deserialize;
use serde_json::json;

pub const MAX_NAME_CHARS: usize = 200;
pub const MAX_DESCRIPTION_CHARS: usize = 10_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewExperiment {
    pub name: String,
    #[serde(default)]
    pub description: String,
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
        Ok(Self { name, description: self.description })
    }
}

/// Creates the experiment, or reports that its name is taken.
pub async fn create_experiment(state: &AppState, new: NewExperiment) -> Result<experiments::Experiment, ApiError> {
    let new = new.validate()?;
    match experiments::create(&state.pool, &new.name, &new.description).await? {
        Created::Experiment(experiment) => Ok(experiment),
        Created::NameTaken => Err(ApiError::Conflict {
            code: "name_taken",
            message: format!("an experiment named `{}` already exists", new.name),
            field: Some("name".to_owned()),
        }),
    }
}

#[post("/experiments")]
pub async fn create(state: web::Data<AppState>, body: JsonBody<NewExperiment>) -> Result<HttpResponse, ApiError> {
    let experiment = create_experiment(&state, body.0).await?;
    Ok(HttpResponse::Created().json(experiment))
}

#[get("/experiments")]
pub async fn list(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let experiments = experiments::list(&state.pool).await?;
    Ok(HttpResponse::Ok().json(json!({ "experiments": experiments })))
}

#[get("/experiments/{id}")]
pub async fn get(state: web::Data<AppState>, id: web::Path<i64>) -> Result<HttpResponse, ApiError> {
    let experiment = experiments::get(&state.pool, *id).await?.ok_or(ApiError::NotFound("experiment"))?;
    Ok(HttpResponse::Ok().json(experiment))
}
