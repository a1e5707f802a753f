use super::{
    chart::{self, Series},
    forms::{FieldErrors, TrainForm},
    table::{TableParams, TableState},
    tradeoff,
    view::*,
};
use crate::{
    auth::{Role, SessionUser, access},
    error::ApiError,
    routes::{NewExperiment, artifact_download, cancel_run as cancel, create_experiment as create, read_artifact},
    startup::AppState,
    store::{self, metrics::Series as MetricSeries, table::TableQuery},
    submit::submit_run as submit,
};
use actix_web::{HttpResponse, http::StatusCode, web};
use serde::Deserialize;

async fn teams(state: &AppState, user_id: i64) -> Result<Vec<TeamChoice>, PageError> {
    Ok(sqlx::query_as(
        "SELECT t.id, t.name, m.role FROM teams t JOIN memberships m ON m.team_id = t.id WHERE m.user_id = $1 ORDER BY t.name",
    )
    .bind(user_id)
    .fetch_all(&state.pool)
    .await?)
}

pub async fn experiments_page(state: web::Data<AppState>, who: SessionUser) -> Result<ExperimentsPage, PageError> {
    let experiments = store::experiments::list(&state.pool, who.user_id).await?;
    Ok(ExperimentsPage {
        nav: Nav::of(&who),
        teams: teams(&state, who.user_id).await?,
        experiments,
        name: String::new(),
        description: String::new(),
        error: None,
    })
}

#[derive(Deserialize)]
pub struct ExperimentForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    description: String,
    team_id: Option<i64>,
}

pub async fn create_experiment_form(
    state: web::Data<AppState>,
    who: SessionUser,
    form: web::Form<ExperimentForm>,
) -> Result<HttpResponse, PageError> {
    let form = form.into_inner();
    who.check_csrf(&form.csrf)?;
    let new = NewExperiment { name: form.name.clone(), description: form.description.clone(), team_id: form.team_id };
    match create(&state, who.user_id, new).await {
        Ok(experiment) => Ok(see_other(&format!("/experiments/{}", experiment.id))),
        Err(err @ (ApiError::Invalid(_) | ApiError::Conflict { .. })) => {
            let experiments = store::experiments::list(&state.pool, who.user_id).await?;
            let page = ExperimentsPage {
                nav: Nav::of(&who),
                teams: teams(&state, who.user_id).await?,
                experiments,
                name: form.name,
                description: form.description,
                error: Some(err.message()),
            };
            html(StatusCode::UNPROCESSABLE_ENTITY, &page)
        }
        Err(err) => Err(err.into()),
    }
}

pub async fn experiment_page(
    state: web::Data<AppState>,
    who: SessionUser,
    id: web::Path<i64>,
    params: web::Query<TableParams>,
) -> Result<HttpResponse, PageError> {
    let experiment = access::experiment(&state.pool, who.user_id, *id, Role::Viewer).await?;
    let table = TableState::from_params(&format!("/experiments/{}", experiment.id), Vec::new(), &params);
    let query = TableQuery { experiment_id: Some(experiment.id), ..table.query(who.user_id) };
    let page = store::table::page(&state.pool, &query).await?;
    let ids: Vec<i64> = page.runs.iter().map(|line| line.run.id).collect();
    let values = store::table::metric_values(&state.pool, &ids, &table.metrics).await?;
    let measured = store::tradeoffs::measured(&state.pool, experiment.id).await?;
    let page = ExperimentPage {
        nav: Nav::of(&who),
        metric_keys: store::table::metric_keys(&state.pool, experiment.id).await?,
        sweeps: store::sweeps::of_experiment(&state.pool, experiment.id).await?,
        table: table.view(page, &values, false),
        table_hidden: Vec::new(),
        experiment,
        tradeoff: tradeoff::lines(&measured),
        tradeoff_charts: tradeoff::charts(&measured),
    };
    html(if table.filter_error.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK }, &page)
}

pub async fn new_run_page(
    state: web::Data<AppState>,
    who: SessionUser,
    id: web::Path<i64>,
) -> Result<NewRunPage, PageError> {
    let experiment = access::experiment(&state.pool, who.user_id, *id, Role::Member).await?;
    Ok(NewRunPage {
        nav: Nav::of(&who),
        experiment,
        form: TrainForm::defaults(),
        errors: FieldErrors::default(),
        datasets: state.data_dir.available(),
    })
}

pub async fn submit_run_form(
    state: web::Data<AppState>,
    who: SessionUser,
    id: web::Path<i64>,
    form: web::Form<TrainForm>,
) -> Result<HttpResponse, PageError> {
    let form = form.into_inner();
    who.check_csrf(&form.csrf)?;
    let experiment = access::experiment(&state.pool, who.user_id, *id, Role::Member).await?;
    let errors = match form.to_submission() {
        Ok(submission) => match submit(&state, who.user_id, experiment.id, submission).await {
            Ok(created) => return Ok(see_other(&format!("/runs/{}", created.run.id))),
            Err(err @ ApiError::Invalid(_)) => {
                let mut errors = FieldErrors::default();
                errors.add(TrainForm::field_of(err.field().unwrap_or_default()), err.message());
                errors
            }
            Err(err) => return Err(err.into()),
        },
        Err(errors) => errors,
    };
    let page = NewRunPage { nav: Nav::of(&who), experiment, form, errors, datasets: state.data_dir.available() };
    html(StatusCode::UNPROCESSABLE_ENTITY, &page)
}

pub async fn download_artifact(
    state: web::Data<AppState>,
    who: SessionUser,
    ids: web::Path<(i64, i64)>,
) -> Result<HttpResponse, PageError> {
    let (run_id, artifact_id) = ids.into_inner();
    Ok(artifact_download(&state, who.user_id, run_id, artifact_id).await?)
}

pub async fn run_page(state: web::Data<AppState>, who: SessionUser, id: web::Path<i64>) -> Result<RunPage, PageError> {
    let run = access::run(&state.pool, who.user_id, *id, Role::Viewer).await?;
    let experiment =
        store::experiments::get(&state.pool, run.experiment_id).await?.ok_or(ApiError::NotFound("experiment"))?;
    let series = store::metrics::series(&state.pool, run.id, None).await?;
    let artifacts = store::runs::artifacts(&state.pool, run.id).await?;
    let params = match &run.params {
        serde_json::Value::Object(map) => map.iter().map(|(key, value)| (key.clone(), plain(value))).collect(),
        other => vec![("params".to_owned(), plain(other))],
    };
    let status = run.status();
    let steps_per_epoch = steps_per_epoch(&run.params);
    let (parent, children) = store::runs::lineage(&state.pool, &run).await?;
    let (parent, children) = (parent.as_ref().map(RunLine::new), children.iter().map(RunLine::new).collect());
    let attempts = store::runs::attempts(&state.pool, run.id).await?;
    let (log, log_total) = store::logs::tail(&state.pool, run.id).await?;
    let confusion = match artifacts.iter().find(|a| a.kind == "confusion_matrix") {
        Some(artifact) => {
            let (_, bytes) = read_artifact(&state, artifact).await?;
            serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|file| serde_json::from_value::<Vec<Vec<i64>>>(file["matrix"].clone()).ok())
        }
        None => None,
    };
    Ok(RunPage {
        parent,
        children,
        confusion,
        attempts,
        log,
        log_total,
        nav: Nav::of(&who),
        live: status.is_some_and(|s| !s.is_finished()),
        cancellable: status.is_some_and(|s| !s.is_finished()) && run.cancel_requested_at.is_none(),
        epochs: epoch_lines(&series),
        summaries: series.iter().map(summary).collect(),
        charts: charts(&series, steps_per_epoch),
        params,
        artifacts,
        experiment,
        run,
    })
}

#[derive(Deserialize)]
pub struct SeriesQuery {
    key: Option<String>,
}

/// `/runs/{id}/metrics.csv`: the raw points of a run (or of one key), never downsampled.
pub async fn metrics_csv(
    state: web::Data<AppState>,
    who: SessionUser,
    id: web::Path<i64>,
    query: web::Query<SeriesQuery>,
) -> Result<HttpResponse, PageError> {
    let run = access::run(&state.pool, who.user_id, *id, Role::Viewer).await?;
    let series = store::metrics::series(&state.pool, run.id, query.key.as_deref()).await?;
    let mut csv = String::from("key,step,value,recorded_at\r\n");
    for s in &series {
        // Keys are checked on ingest (no commas, quotes or line breaks), so they need no quoting.
        for point in &s.points {
            csv.push_str(&format!("{},{},{},{}\r\n", s.key, point.step, point.value, point.recorded_at.to_rfc3339()));
        }
    }
    let file = format!("attachment; filename=\"run-{}-metrics.csv\"", run.id);
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header(("content-disposition", file))
        .body(csv))
}

pub async fn cancel_run_form(
    state: web::Data<AppState>,
    who: SessionUser,
    id: web::Path<i64>,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, PageError> {
    who.check_csrf(&form.csrf)?;
    match cancel(&state, who.user_id, *id).await {
        Ok(_) | Err(ApiError::Conflict { .. }) => Ok(see_other(&format!("/runs/{}", *id))),
        Err(err) => Err(err.into()),
    }
}

pub fn render(page: &impl askama::Template) -> Result<String, PageError> {
    page.render().map_err(|err| PageError(ApiError::Internal(err.to_string())))
}

/// A rendered page with a status of the handler's choosing (422 for a form with errors, 400
/// for a bad filter).
pub fn html(status: StatusCode, page: &impl askama::Template) -> Result<HttpResponse, PageError> {
    Ok(HttpResponse::build(status).content_type("text/html; charset=utf-8").body(render(page)?))
}

fn steps_per_epoch(params: &serde_json::Value) -> Option<f64> {
    let range = params.get("train_range")?.as_array()?;
    let len = range.get(1)?.as_f64()? - range.first()?.as_f64()?;
    let batch = params.get("batch_size")?.as_f64()?;
    Some((len / batch).ceil())
}

fn find<'a>(series: &'a [MetricSeries], key: &str) -> Option<&'a MetricSeries> {
    series.iter().find(|s| s.key == key)
}

fn epoch_lines(series: &[MetricSeries]) -> Vec<EpochLine> {
    let value_at = |key: &str, epoch: i64| find(series, key)?.points.iter().find(|p| p.step == epoch).map(|p| p.value);
    let Some(accuracy) = find(series, "val_accuracy") else {
        return Vec::new();
    };
    accuracy
        .points
        .iter()
        .map(|point| EpochLine {
            epoch: point.step,
            train_loss: value_at("epoch_train_loss", point.step).map(number).unwrap_or_default(),
            val_loss: value_at("val_loss", point.step).map(number).unwrap_or_default(),
            val_accuracy: percent(point.value),
            seconds: value_at("epoch_seconds", point.step).map(seconds).unwrap_or_default(),
        })
        .collect()
}

fn summary(series: &MetricSeries) -> SeriesSummary {
    let values = series.points.iter().map(|p| p.value);
    SeriesSummary {
        key: series.key.clone(),
        count: series.count,
        last: series.points.last().map(|p| number(p.value)).unwrap_or_default(),
        min: number(values.clone().fold(f64::INFINITY, f64::min)),
        max: number(values.fold(f64::NEG_INFINITY, f64::max)),
    }
}

/// The keys drawn together on the first two charts.
const TRAINING_KEYS: [&str; 4] = ["train_loss", "epoch_train_loss", "val_loss", "val_accuracy"];

/// Loss against training step (per-epoch losses placed at the end of their epoch), validation
/// accuracy against epoch, then one chart for every other key with more than one point (keys
/// with one value are in the metrics table).
fn charts(series: &[MetricSeries], steps_per_epoch: Option<f64>) -> Vec<chart::Chart> {
    let points = |key: &str, style: usize, scale: f64| -> Option<Series> {
        let s = find(series, key)?;
        Some(Series::whole(
            key.replace('_', " "),
            style,
            s.points.iter().map(|p| (p.step as f64 * scale, p.value)).collect(),
        ))
    };
    let epoch_scale = steps_per_epoch.unwrap_or(1.0);
    let losses: Vec<Series> =
        [points("train_loss", 0, 1.0), points("epoch_train_loss", 1, epoch_scale), points("val_loss", 2, epoch_scale)]
            .into_iter()
            .flatten()
            .collect();
    let accuracy: Vec<Series> = points("val_accuracy", 0, 1.0).into_iter().collect();
    let others = series.iter().filter(|s| s.points.len() > 1 && !TRAINING_KEYS.contains(&s.key.as_str())).map(|s| {
        let points = s.points.iter().map(|p| (p.step as f64, p.value)).collect();
        chart::line_chart(&s.key, "step", &s.key, vec![Series::whole(s.key.clone(), 0, points)])
    });
    [
        chart::line_chart("Loss", "step", "cross-entropy", losses),
        chart::line_chart("Validation accuracy", "epoch", "accuracy (fraction)", accuracy),
    ]
    .into_iter()
    .chain(others)
    .flatten()
    .collect()
}
