//! `/sweeps/{id}`: a sweep's trials with their params and score, the best trial, the score
//! of each trial by the time it finished (with the best so far), and the params against the
//! score as parallel coordinates.
use super::{
    chart::{self, Chart, Dimension, NamedPoint, ParallelChart, Series},
    view::{Nav, PageError, number, plain, timestamp},
};
use crate::{
    auth::{Role, SessionUser, access},
    error::ApiError,
    startup::AppState,
    store::{self, sweeps::Sweep},
};
use actix_web::web;
use askama::Template;
use serde_json::Value;

#[derive(Template, askama_web::WebTemplate)]
#[template(path = "sweep.html")]
pub struct SweepPage {
    pub nav: Nav,
    pub sweep: Sweep,
    pub experiment_name: String,
    pub strategy: String,
    pub live: bool,
    pub param_names: Vec<String>,
    pub trials: Vec<TrialLine>,
    /// How many more failed trials it can replace.
    pub spares_left: i64,
    pub charts: Vec<Chart>,
    pub parallel: Option<ParallelChart>,
    pub compare_link: String,
}

pub struct TrialLine {
    pub trial: i32,
    pub run_id: i64,
    pub status: String,
    pub params: Vec<String>,
    pub value: String,
    pub finished: String,
    pub error: String,
    /// The best trial so far.
    pub best: bool,
    /// A spare draw recorded because a trial failed.
    pub replacement: bool,
}

pub async fn sweep_page(
    state: web::Data<AppState>,
    who: SessionUser,
    id: web::Path<i64>,
) -> Result<SweepPage, PageError> {
    let sweep = store::sweeps::get(&state.pool, *id).await?.ok_or(ApiError::NotFound("sweep"))?;
    let experiment = access::experiment(&state.pool, who.user_id, sweep.experiment_id, Role::Viewer).await.map_err(
        |err| match err {
            ApiError::NotFound(_) => ApiError::NotFound("sweep"),
            other => other,
        },
    )?;
    let trials = store::sweeps::trials(&state.pool, &sweep).await?;
    let spares_left = store::sweeps::spares_left(&state.pool, sweep.id).await?;
    let params: Vec<serde_json::Map<String, Value>> = sweep.spec["trials"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|trial| trial.as_object().cloned().unwrap_or_default())
        .collect();
    let param_names: Vec<String> = params.first().map(|p| p.keys().cloned().collect()).unwrap_or_default();
    let params_of = |trial: i32| params.get(trial as usize).cloned().unwrap_or_default();
    let maximize = sweep.direction == "max";
    let best = trials
        .iter()
        .enumerate()
        .filter_map(|(index, t)| t.value.filter(|v| v.is_finite()).map(|v| (index, v)))
        .reduce(|a, b| if (b.1 > a.1) == maximize && b.1 != a.1 { b } else { a })
        .map(|(index, _)| index);

    // Each finished trial's score by when it finished, in minutes since the sweep began.
    let minutes = |at: chrono::DateTime<chrono::Utc>| (at - sweep.created_at).num_milliseconds() as f64 / 60_000.0;
    let mut finished: Vec<(f64, f64, i32, &str)> = trials
        .iter()
        .filter_map(|t| Some((minutes(t.finished_at?), t.value.filter(|v| v.is_finite())?, t.trial, t.status.as_str())))
        .collect();
    finished.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut groups: Vec<(String, Vec<NamedPoint>)> = Vec::new();
    for &(x, y, trial, status) in &finished {
        match groups.iter_mut().find(|(name, _)| name == status) {
            Some((_, points)) => points.push((x, y, format!("{trial}"))),
            None => groups.push((status.to_owned(), vec![(x, y, format!("{trial}"))])),
        }
    }
    let mut best_so_far = Vec::with_capacity(finished.len());
    for &(x, y, ..) in &finished {
        let best = best_so_far.last().map_or(y, |&(_, b): &(f64, f64)| if (y > b) == maximize { y } else { b });
        best_so_far.push((x, best));
    }
    let title = format!("{} of each trial (by status)", sweep.metric);
    let charts = [
        chart::scatter_chart(&title, "minutes since the sweep began", &sweep.metric, groups),
        chart::line_chart(
            &format!("Best {} so far", sweep.metric),
            "minutes since the sweep began",
            &sweep.metric,
            vec![Series::whole("best so far".into(), 0, best_so_far)],
        ),
    ]
    .into_iter()
    .flatten()
    .collect();

    let labels: Vec<String> = trials.iter().map(|t| format!("trial {} (#{})", t.trial, t.run_id)).collect();
    let mut dimensions: Vec<Dimension> = param_names
        .iter()
        .map(|name| Dimension {
            name: name.clone(),
            values: trials.iter().map(|t| params_of(t.trial).get(name).cloned()).collect(),
        })
        .collect();
    dimensions.push(Dimension {
        name: sweep.metric.clone(),
        values: trials.iter().map(|t| t.value.map(Value::from)).collect(),
    });
    let parallel = chart::parallel_chart(&format!("Params against {}", sweep.metric), &labels, dimensions);
    let compare: Vec<String> = trials.iter().take(super::compare::MAX_RUNS).map(|t| t.run_id.to_string()).collect();

    Ok(SweepPage {
        nav: Nav::of(&who),
        live: sweep.status == "running",
        strategy: sweep.spec["strategy"].as_str().unwrap_or_default().to_owned(),
        param_names: param_names.clone(),
        spares_left,
        trials: trials
            .iter()
            .enumerate()
            .map(|(index, t)| TrialLine {
                best: best == Some(index),
                replacement: sweep.spec["max_runs"].as_i64().is_some_and(|max_runs| i64::from(t.trial) >= max_runs),
                trial: t.trial,
                run_id: t.run_id,
                status: t.status.clone(),
                params: param_names
                    .iter()
                    .map(|name| params_of(t.trial).get(name).map(plain).unwrap_or_default())
                    .collect(),
                value: t.value.map(number).unwrap_or_default(),
                finished: t.finished_at.as_ref().map(timestamp).unwrap_or_default(),
                error: t.error.clone().unwrap_or_default(),
            })
            .collect(),
        charts,
        parallel,
        compare_link: if compare.len() >= 2 { format!("/compare?runs={}", compare.join(",")) } else { String::new() },
        experiment_name: experiment.name,
        sweep,
    })
}
