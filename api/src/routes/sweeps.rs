//! Sweeps over REST: `POST /api/v1/experiments/{id}/sweeps` records every trial at once
//! (validated like any submission, nothing recorded if one is refused), and for a random
//! sweep the spare draws that replace failed trials; the database queues trials
//! `max_parallel` at a time and records a spare as a new trial when one fails. `GET /api/v1/sweeps/{id}` reports them and the best;
//! `POST /api/v1/sweeps/{id}/cancel` stops the sweep.
use crate::{
    auth::{Principal, Role, access, audit},
    error::ApiError,
    extract::{JsonBody, decode_value},
    openapi::Reply,
    startup::AppState,
    store::{self, sweeps::Sweep},
    submit::{self, RunSubmission},
};
use actix_web::web;
use cairn_domain::sweep::{self, Dimension, Direction, Space, Strategy};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;

pub const MAX_PARALLEL: u32 = 100;
/// Trials of a random sweep when the request names no `max_runs`.
const DEFAULT_RANDOM_TRIALS: u32 = 10;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(example = json!({
    "template": {"kind": "train", "params": {"dataset": "synthetic-digits", "epochs": 4}},
    "space": {"learning_rate": {"type": "log_uniform", "low": 0.0001, "high": 0.1},
              "batch_size": {"type": "choice", "values": [32, 64]}},
    "strategy": "random", "seed": 7, "max_runs": 20, "max_parallel": 2,
    "metric": "val_accuracy", "direction": "max", "asha": {"min_epochs": 1, "reduction_factor": 2}
}))]
pub struct SweepRequest {
    /// A run submission (a train run, or a pipeline) whose root params each trial varies.
    #[schemars(with = "RunSubmission")]
    template: Value,
    space: BTreeMap<String, Dimension>,
    strategy: Strategy,
    #[serde(default)]
    seed: u64,
    /// Grid: at most every combination (the default); random: the number of draws.
    max_runs: Option<u32>,
    max_parallel: Option<u32>,
    /// Random sweeps: how many failed trials are replaced by further draws (default `max_runs`).
    replacements: Option<u32>,
    /// The metric that ranks trials (the best value among each trial's runs) and its direction.
    metric: String,
    direction: Direction,
    /// Early stopping by asynchronous successive halving on `metric`, logged per epoch.
    asha: Option<Asha>,
}

/// Rungs at `min_epochs * reduction_factor^k` epochs; at each, a trial goes on only if it is
/// in the best `1 / reduction_factor` of the trials that reached it.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Asha {
    min_epochs: u32,
    reduction_factor: u32,
}

pub async fn create(
    state: web::Data<AppState>,
    who: Principal,
    experiment_id: web::Path<i64>,
    body: JsonBody<SweepRequest>,
) -> Result<Reply<SweepCreated, 201>, ApiError> {
    let request = body.0;
    let experiment = access::experiment(&state.pool, who.user_id, *experiment_id, Role::Member).await?;
    let space = Space::new(request.space.clone()).map_err(ApiError::Invalid)?;
    let max_runs = request.max_runs.unwrap_or(match request.strategy {
        Strategy::Grid => sweep::MAX_TRIALS,
        Strategy::Random => DEFAULT_RANDOM_TRIALS,
    });
    let trials = space.trials(request.strategy, request.seed, max_runs).map_err(ApiError::Invalid)?;
    let max_parallel = request.max_parallel.unwrap_or(1);
    if !(1..=MAX_PARALLEL).contains(&max_parallel) {
        return Err(ApiError::invalid("max_parallel", format!("must be between 1 and {MAX_PARALLEL}")));
    }
    let metric = request.metric.trim();
    if metric.is_empty() || metric.len() > crate::routes::MAX_KEY_CHARS {
        return Err(ApiError::invalid("metric", "the metric key that ranks trials, such as `val_accuracy`"));
    }
    if let Some(asha) = request.asha {
        if !(1..=1_000).contains(&asha.min_epochs) {
            return Err(ApiError::invalid("asha.min_epochs", "must be between 1 and 1000"));
        }
        if !(2..=10).contains(&asha.reduction_factor) {
            return Err(ApiError::invalid("asha.reduction_factor", "must be between 2 and 10"));
        }
    }
    let template: RunSubmission = decode_value(request.template.clone(), "template")?;
    if template.parent_run_id.is_some() {
        return Err(ApiError::invalid(
            "template.parent_run_id",
            "every trial trains from scratch; to vary what starts from a model, sweep a train run with `children`",
        ));
    }
    let replacements = match (request.strategy, request.replacements) {
        (Strategy::Grid, None | Some(0)) => 0,
        (Strategy::Grid, Some(_)) => {
            return Err(ApiError::invalid("replacements", "a grid tries each point once; only random sweeps replace"));
        }
        (Strategy::Random, replacements) => replacements.unwrap_or(max_runs),
    };
    if replacements > max_runs {
        return Err(ApiError::invalid("replacements", format!("must be between 0 and max_runs ({max_runs})")));
    }
    let first_spare = trials.len() as u32;
    let trials: Vec<_> = trials
        .into_iter()
        .chain((first_spare..first_spare + replacements).map(|n| space.draw(request.seed, n)))
        .collect();

    // Every trial and spare is checked before anything is recorded.
    let mut planned = Vec::with_capacity(trials.len());
    for (index, params) in trials.iter().enumerate() {
        let submission = RunSubmission { params: sweep::apply(&template.params, params), ..template.clone() };
        let plan = submit::plan(&state, who.user_id, experiment.id, submission).await.map_err(|err| match err {
            ApiError::Invalid(err) => {
                let message = format!(
                    "{} (trial {index}: {})",
                    err.message,
                    Value::from(serde_json::Map::from_iter(params.clone()))
                );
                ApiError::invalid(format!("template.{}", err.field), message)
            }
            other => other,
        })?;
        planned.push(plan);
    }
    let direction = match request.direction {
        Direction::Max => "max",
        Direction::Min => "min",
    };
    let spec = json!({
        "template": request.template, "space": request.space, "strategy": request.strategy, "seed": request.seed,
        "max_runs": max_runs, "max_parallel": max_parallel, "replacements": replacements, "metric": metric,
        "direction": request.direction, "asha": request.asha, "trials": trials,
    });
    let mut tx = state.pool.begin().await?;
    let sweep =
        store::sweeps::create(&mut tx, experiment.id, who.user_id, &spec, max_parallel as i32, metric, direction)
            .await?;
    let mut created = Vec::with_capacity(first_spare as usize);
    for (index, plan) in planned.iter().enumerate() {
        let trial = index as i32;
        if index < first_spare as usize {
            let queued = index < max_parallel as usize;
            let run_id = store::sweeps::record_trial(&mut tx, sweep.id, trial, &plan.trial_runs(), queued).await?;
            let status = if queued { "queued" } else { "waiting" };
            created.push(CreatedTrial { trial, run_id, status, params: trials[index].clone() });
        } else {
            store::sweeps::keep_spare(&mut tx, sweep.id, trial, &plan.trial_runs()).await?;
        }
    }
    let entry = audit::Entry {
        user_id: who.user_id,
        team_id: Some(experiment.team_id),
        action: "sweep.create",
        target_type: "sweep",
        target_id: Some(sweep.id),
        details: json!({ "experiment_id": experiment.id, "trials": created.len(), "spares": replacements }),
    };
    audit::record(&mut *tx, entry).await?;
    tx.commit().await?;
    tracing::info!(sweep.id = sweep.id, trials = created.len(), "sweep submitted");
    Ok(Reply(SweepCreated { sweep, trials: created, spares: replacements }))
}

/// The sweep, if `user_id` has at least `needed` in its experiment's team.
async fn visible(state: &AppState, user_id: i64, id: i64, needed: Role) -> Result<(Sweep, i64), ApiError> {
    let sweep = store::sweeps::get(&state.pool, id).await?.ok_or(ApiError::NotFound("sweep"))?;
    let experiment =
        access::experiment(&state.pool, user_id, sweep.experiment_id, needed).await.map_err(|err| match err {
            ApiError::NotFound(_) => ApiError::NotFound("sweep"),
            other => other,
        })?;
    Ok((sweep, experiment.team_id))
}

#[derive(Serialize, JsonSchema)]
pub struct SweepCreated {
    sweep: Sweep,
    trials: Vec<CreatedTrial>,
    /// Spare draws kept to replace failed trials.
    spares: u32,
}

#[derive(Serialize, JsonSchema)]
pub struct CreatedTrial {
    trial: i32,
    /// The trial's root run.
    run_id: i64,
    /// `queued`, or `waiting` until fewer than `max_parallel` trials run.
    status: &'static str,
    params: BTreeMap<String, Value>,
}

#[derive(Serialize, JsonSchema)]
pub struct SweepReport {
    sweep: Sweep,
    /// Trials by status.
    counts: BTreeMap<String, usize>,
    /// The trial with the best finite value of the sweep's metric so far.
    best: Option<TrialReport>,
    trials: Vec<TrialReport>,
    /// How many more failed trials can be replaced.
    spares_left: i64,
}

#[derive(Clone, Serialize, JsonSchema)]
pub struct TrialReport {
    #[serde(flatten)]
    trial: store::sweeps::Trial,
    params: Value,
}

#[derive(Serialize, JsonSchema)]
pub struct SweepCancelled {
    sweep_id: i64,
    status: &'static str,
    /// Queued and waiting runs cancelled at once.
    cancelled_runs: u64,
    /// Running runs asked to stop.
    stopping_runs: u64,
}

pub async fn get(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<i64>,
) -> Result<Reply<SweepReport>, ApiError> {
    let (sweep, _) = visible(&state, who.user_id, *id, Role::Viewer).await?;
    let trials = store::sweeps::trials(&state.pool, &sweep).await?;
    let spares_left = store::sweeps::spares_left(&state.pool, sweep.id).await?;
    let params = sweep.spec["trials"].as_array().cloned().unwrap_or_default();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for trial in &trials {
        *counts.entry(trial.status.clone()).or_default() += 1;
    }
    let trials: Vec<TrialReport> = trials
        .into_iter()
        .map(|trial| TrialReport { params: params.get(trial.trial as usize).cloned().unwrap_or_default(), trial })
        .collect();
    let better = |a: f64, b: f64| if sweep.direction == "max" { a > b } else { a < b };
    let best = trials
        .iter()
        .filter_map(|t| t.trial.value.filter(|v| v.is_finite()).map(|v| (t, v)))
        .reduce(|a, b| if better(b.1, a.1) { b } else { a })
        .map(|(t, _)| t.clone());
    Ok(Reply(SweepReport { sweep, counts, best, trials, spares_left }))
}

pub async fn cancel(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<i64>,
) -> Result<Reply<SweepCancelled>, ApiError> {
    let (sweep, team_id) = visible(&state, who.user_id, *id, Role::Member).await?;
    let mut tx = state.pool.begin().await?;
    let Some((cancelled, stopping)) = store::sweeps::cancel(&mut tx, sweep.id).await? else {
        return Err(ApiError::Conflict {
            code: "sweep_finished",
            message: format!("sweep {} is already {}", sweep.id, sweep.status),
            field: None,
        });
    };
    let entry = audit::Entry {
        user_id: who.user_id,
        team_id: Some(team_id),
        action: "sweep.cancel",
        target_type: "sweep",
        target_id: Some(sweep.id),
        details: json!({ "cancelled_runs": cancelled, "stopping_runs": stopping }),
    };
    audit::record(&mut *tx, entry).await?;
    tx.commit().await?;
    Ok(Reply(SweepCancelled {
        sweep_id: sweep.id,
        status: "cancelled",
        cancelled_runs: cancelled,
        stopping_runs: stopping,
    }))
}
