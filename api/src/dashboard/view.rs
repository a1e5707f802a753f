//! What the templates show, formatted on the server.
use super::{
    chart::Chart,
    forms::{FieldErrors, TrainForm},
    table::TableView,
    tradeoff::TradeoffLine,
};
use crate::{
    auth::{SessionUser, audit::Logged},
    error::ApiError,
    routes::TokenInfo,
    store::{
        experiments::{Experiment, ExperimentSummary},
        logs::LogLine,
        runs::{Artifact, Attempt, Run, RunRow},
        sweeps::Sweep,
    },
};
use actix_web::{HttpResponse, ResponseError, http::StatusCode};
use askama::Template;
use chrono::{DateTime, Utc};

/// Who is signed in, for the header, and the CSRF token every form carries.
pub struct Nav {
    pub user: String,
    pub csrf: String,
}

impl Nav {
    pub fn of(who: &SessionUser) -> Self {
        Self { user: who.user_name.clone(), csrf: who.csrf_token.clone() }
    }
}

/// A team the signed-in user belongs to.
#[derive(sqlx::FromRow)]
pub struct TeamChoice {
    pub id: i64,
    pub name: String,
    pub role: String,
}

#[derive(Template, askama_web::WebTemplate)]
#[template(path = "login.html")]
pub struct LoginPage {
    pub name: String,
    pub error: Option<String>,
}

#[derive(Template, askama_web::WebTemplate)]
#[template(path = "tokens.html")]
pub struct TokensPage {
    pub nav: Nav,
    pub tokens: Vec<TokenInfo>,
    /// A token just created: shown once.
    pub created: Option<String>,
    pub error: Option<String>,
}

#[derive(Template, askama_web::WebTemplate)]
#[template(path = "audit.html")]
pub struct AuditPage {
    pub nav: Nav,
    pub team_id: i64,
    pub entries: Vec<Logged>,
}

#[derive(Template, askama_web::WebTemplate)]
#[template(path = "experiments.html")]
pub struct ExperimentsPage {
    pub nav: Nav,
    pub teams: Vec<TeamChoice>,
    pub experiments: Vec<ExperimentSummary>,
    pub name: String,
    pub description: String,
    pub error: Option<String>,
}

#[derive(Template, askama_web::WebTemplate)]
#[template(path = "experiment.html")]
pub struct ExperimentPage {
    pub nav: Nav,
    pub experiment: Experiment,
    pub table: TableView,
    /// Query parameters the table's filter form keeps (none here).
    pub table_hidden: Vec<(String, String)>,
    /// The experiment's metric keys, offered as columns.
    pub metric_keys: Vec<String>,
    /// Its sweeps, newest first, with their trial counts (all, finished).
    pub sweeps: Vec<(Sweep, i64, i64)>,
    /// Every measured model of the experiment, most accurate first, and its charts.
    pub tradeoff: Vec<TradeoffLine>,
    pub tradeoff_charts: Vec<Chart>,
}

#[derive(Template, askama_web::WebTemplate)]
#[template(path = "new_run.html")]
pub struct NewRunPage {
    pub nav: Nav,
    pub experiment: Experiment,
    pub form: TrainForm,
    pub errors: FieldErrors,
    pub datasets: Vec<String>,
}

#[derive(Template, askama_web::WebTemplate)]
#[template(path = "run.html")]
pub struct RunPage {
    pub nav: Nav,
    pub run: Run,
    pub experiment: Experiment,
    pub params: Vec<(String, String)>,
    pub epochs: Vec<EpochLine>,
    pub summaries: Vec<SeriesSummary>,
    pub charts: Vec<Chart>,
    pub artifacts: Vec<Artifact>,
    /// The run this one was made from, and the runs made from it.
    pub parent: Option<RunLine>,
    pub children: Vec<RunLine>,
    /// An evaluate run's confusion matrix: rows are the true class, columns the predicted.
    pub confusion: Option<Vec<Vec<i64>>>,
    pub attempts: Vec<Attempt>,
    /// The last lines the worker logged for this run, and how many it logged in all.
    pub log: Vec<LogLine>,
    pub log_total: i64,
    /// Queued or running: the page reloads itself until the run ends.
    pub live: bool,
    pub cancellable: bool,
}

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    pub status: u16,
    pub message: String,
}

/// A run of a lineage table: the run's parent or one of its children.
pub struct RunLine {
    pub id: i64,
    pub kind: String,
    pub status: String,
    pub accuracy: String,
}

impl RunLine {
    pub fn new(row: &RunRow) -> Self {
        Self {
            id: row.run.id,
            kind: row.run.kind.clone(),
            status: row.run.status.clone(),
            accuracy: row.accuracy.map(percent).unwrap_or_default(),
        }
    }
}

pub struct EpochLine {
    pub epoch: i64,
    pub train_loss: String,
    pub val_loss: String,
    pub val_accuracy: String,
    pub seconds: String,
}

pub struct SeriesSummary {
    pub key: String,
    pub count: usize,
    pub last: String,
    pub min: String,
    pub max: String,
}

/// A JSON value as a person reads it: strings without quotes.
pub fn plain(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(text) => text.clone(),
        serde_json::Value::Array(items) => items.iter().map(plain).collect::<Vec<_>>().join(" .. "),
        other => other.to_string(),
    }
}

pub fn percent(value: f64) -> String {
    format!("{:.2}%", value * 100.0)
}

pub fn number(value: f64) -> String {
    if value.abs() >= 1e4 || (value != 0.0 && value.abs() < 1e-3) {
        format!("{value:.3e}")
    } else {
        format!("{value:.4}")
    }
}

pub fn seconds(value: f64) -> String {
    if value < 120.0 { format!("{value:.1} s") } else { format!("{:.1} min", value / 60.0) }
}

pub fn timestamp(at: &DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// The body of a form that only carries the session's CSRF token (cancel, revoke, sign out).
#[derive(serde::Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    pub csrf: String,
}

/// Where a form sends the browser after it changed something.
pub fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther().insert_header((actix_web::http::header::LOCATION, location)).finish()
}

/// A dashboard failure, shown as a page rather than JSON.
#[derive(Debug)]
pub struct PageError(pub ApiError);

impl std::fmt::Display for PageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl<E: Into<ApiError>> From<E> for PageError {
    fn from(err: E) -> Self {
        Self(err.into())
    }
}

impl ResponseError for PageError {
    fn status_code(&self) -> StatusCode {
        match self.0 {
            ApiError::Unauthorized => StatusCode::SEE_OTHER,
            _ => self.0.status_code(),
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let ApiError::Unauthorized = &self.0 {
            return HttpResponse::SeeOther().insert_header((actix_web::http::header::LOCATION, "/login")).finish();
        }
        if let ApiError::Internal(detail) = &self.0 {
            tracing::error!(error = %detail, "page failed");
        }
        let status = self.status_code();
        let page = ErrorPage { status: status.as_u16(), message: self.0.message() };
        match page.render() {
            Ok(html) => HttpResponse::build(status).content_type("text/html; charset=utf-8").body(html),
            Err(_) => HttpResponse::build(status).body(self.0.message()),
        }
    }
}
