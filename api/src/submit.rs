//! Submitting runs, shared by the REST API and the dashboard form. One submission is one run
//! or a pipeline: a tree of runs, each child starting from its parent's model. The whole tree
//! is validated before anything is recorded, so a rejected submission leaves no trace; then it
//! is recorded in one transaction. Children wait until their parent succeeds (the database
//! queues them then, or cancels them when the parent fails).
use crate::{
    auth::{Role, access, audit},
    error::ApiError,
    extract::decode_value,
    startup::AppState,
    store::{self, runs::Run},
};
use actix_web::web;
use cairn_datasets::DatasetError;
use cairn_domain::{DataDefaults, DatasetName, RunKind, RunParams, RunRequest, RunStatus, params::PredictRequest};
use serde::{Deserialize, Serialize};

pub const MAX_PRIORITY: i64 = 1_000;
pub const MAX_TIME_LIMIT_SECONDS: i64 = 7 * 24 * 3600;
/// The most runs one submission may create.
pub const MAX_PIPELINE_RUNS: usize = 100;

/// `POST /api/v1/experiments/{id}/runs`: `params` is read according to `kind`. A child in
/// `children` starts from this run's model; `parent_run_id` names an existing run instead.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(example = serde_json::json!({
    "kind": "train", "name": "baseline",
    "params": {"dataset": "mnist", "train_range": [0, 8000], "validation_range": [8000, 10000], "epochs": 2,
               "batch_size": 64, "learning_rate": 0.001, "seed": 0},
    "children": [{"kind": "prune", "params": {"method": "global_magnitude", "sparsity": 0.9}},
                 {"kind": "quantize", "params": {}}]
}))]
pub struct RunSubmission {
    pub kind: RunKind,
    /// What people call the run in tables and chart legends (1 to 200 characters).
    pub name: Option<String>,
    /// The params of `kind`, defaults filled in on the server (README: "Run kinds and
    /// pipelines"). train: dataset, train_range, validation_range, epochs, batch_size,
    /// learning_rate, optimizer, seed, device, log_every; prune: method, sparsity, layers,
    /// fine_tune; quantize; evaluate; ensemble: members; predict: input.
    pub params: serde_json::Value,
    pub parent_run_id: Option<i64>,
    /// Children inherit their parent's queue and priority unless they name their own.
    pub queue: Option<String>,
    pub priority: Option<i64>,
    /// The most wall time the run may take from its first start; past it, it fails.
    pub time_limit_seconds: Option<i64>,
    #[serde(default)]
    pub children: Vec<RunSubmission>,
}

/// A recorded run and the runs recorded as its children in the same submission.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct CreatedRun {
    #[serde(flatten)]
    pub run: Run,
    pub children: Vec<CreatedRun>,
}

/// A validated run of the tree, ready to record.
struct PlannedRun {
    params: RunParams,
    name: Option<String>,
    time_limit_seconds: Option<i32>,
    /// An existing run, locked and checked again when recording; `None` for the root of a
    /// train run or for a child whose parent is in the tree.
    existing_parent: Option<i64>,
    queue: String,
    priority: i32,
    children: Vec<PlannedRun>,
}

/// The parent a run of the tree starts from, as validation sees it.
enum Parent<'a> {
    None,
    Existing(&'a Run),
    InTree(&'a RunParams),
}

/// Validates and records a submission for `user_id`, who must be a member of the
/// experiment's team.
pub async fn submit_run(
    state: &AppState,
    user_id: i64,
    experiment_id: i64,
    submission: RunSubmission,
) -> Result<CreatedRun, ApiError> {
    let planned = plan(state, user_id, experiment_id, submission).await?;
    let mut tx = state.pool.begin().await?;
    let recording = Recording { experiment_id, submitted_by: user_id };
    let created = record(&mut tx, recording, planned.plan, None).await?;
    audit::record(
        &mut *tx,
        audit::Entry {
            user_id,
            team_id: Some(planned.team_id),
            action: "run.create",
            target_type: "run",
            target_id: Some(created.run.id),
            details: serde_json::json!({
                "experiment_id": experiment_id, "kind": created.run.kind, "runs": planned.size,
            }),
        },
    )
    .await?;
    tx.commit().await?;
    tracing::info!(run.id = created.run.id, experiment.id = experiment_id, runs = planned.size, "runs submitted");
    Ok(created)
}

/// A submission checked whole, ready to record.
pub struct Planned {
    pub team_id: i64,
    /// How many runs it records.
    pub size: usize,
    plan: PlannedRun,
}

/// Validates a submission (a run or a pipeline) of `user_id`, a member of the experiment's
/// team, without recording anything.
pub async fn plan(
    state: &AppState,
    user_id: i64,
    experiment_id: i64,
    submission: RunSubmission,
) -> Result<Planned, ApiError> {
    let experiment = access::experiment(&state.pool, user_id, experiment_id, Role::Member).await?;
    let size = count_runs(&submission);
    if size > MAX_PIPELINE_RUNS {
        return Err(ApiError::invalid(
            "children",
            format!("a submission creates at most {MAX_PIPELINE_RUNS} runs; this one {size}"),
        ));
    }
    let planner = Planner { state, user_id, experiment_id, team_id: experiment.team_id };
    let parent = match submission.parent_run_id {
        Some(id) => Some(planner.existing_parent(id, "parent_run_id").await?),
        None => None,
    };
    let parent = parent.as_ref().map_or(Parent::None, Parent::Existing);
    let plan = planner.plan(submission, parent, "", None).await?;
    Ok(Planned { team_id: experiment.team_id, size, plan })
}

impl Planned {
    /// The runs of a sweep trial as the database's `record_sweep_trial` records them: parents
    /// before children, each naming its parent by its index in the list. A trial's root has
    /// no existing parent (the sweep checks).
    pub fn trial_runs(&self) -> serde_json::Value {
        fn push(run: &PlannedRun, parent: Option<usize>, runs: &mut Vec<serde_json::Value>) {
            let index = runs.len();
            runs.push(serde_json::json!({
                "kind": run.params.kind().as_str(), "name": run.name, "params": run.params.to_stored(),
                "queue": run.queue, "priority": run.priority, "time_limit_seconds": run.time_limit_seconds,
                "parent": parent,
            }));
            for child in &run.children {
                push(child, Some(index), runs);
            }
        }
        let mut runs = Vec::with_capacity(self.size);
        push(&self.plan, None, &mut runs);
        serde_json::Value::Array(runs)
    }
}

fn count_runs(submission: &RunSubmission) -> usize {
    1 + submission.children.iter().map(count_runs).sum::<usize>()
}

struct Planner<'a> {
    state: &'a AppState,
    user_id: i64,
    experiment_id: i64,
    team_id: i64,
}

impl Planner<'_> {
    /// Validates one run and, depth first, its children. `at` is the run's place in the body
    /// (`children[1].`), so every error names the field it is about.
    async fn plan(
        &self,
        submission: RunSubmission,
        parent: Parent<'_>,
        at: &str,
        inherited_placement: Option<(&str, i32)>,
    ) -> Result<PlannedRun, ApiError> {
        let field = |name: &str| format!("{at}{name}");
        let within = |err: cairn_domain::ValidationError| ApiError::Invalid(err.within(&field("params")));
        let (parent_kind, inherited) = match &parent {
            Parent::None => (None, None),
            Parent::Existing(run) => {
                let kind: RunKind = run.kind.parse().map_err(ApiError::Internal)?;
                let params = RunParams::from_stored(kind, run.params.clone())
                    .map_err(|err| ApiError::Internal(format!("run {} has unreadable params: {err}", run.id)))?;
                (Some(kind), params.inherited())
            }
            Parent::InTree(params) => (Some(params.kind()), params.inherited()),
        };
        if let Err(message) = submission.kind.parent_rule(parent_kind) {
            let name = if matches!(parent, Parent::InTree(_)) { field("kind") } else { field("parent_run_id") };
            return Err(ApiError::invalid(name, message));
        }
        let name = submission.name.as_deref().map(|name| valid_name(name, &field("name"))).transpose()?;
        let time_limit_seconds = match submission.time_limit_seconds {
            Some(seconds) if (1..=MAX_TIME_LIMIT_SECONDS).contains(&seconds) => Some(seconds as i32),
            Some(_) => {
                return Err(ApiError::invalid(
                    field("time_limit_seconds"),
                    format!("must be between 1 and {MAX_TIME_LIMIT_SECONDS} (a week)"),
                ));
            }
            None => None,
        };
        let request = decode_request(submission.kind, submission.params, &field("params"))?;
        let data = match (request.dataset(), inherited) {
            (Some(name), _) => {
                let name = DatasetName::parse(name).map_err(within)?;
                let len = self.dataset_len(&name, &field("params.dataset")).await?;
                DataDefaults::split(name, len)
            }
            (None, Some(inherited)) => {
                let len = self.dataset_len(&inherited.dataset, &field("params.dataset")).await?;
                DataDefaults::inherit(inherited, len)
            }
            (None, None) => return Err(ApiError::invalid(field("params.dataset"), "required: the data to work on")),
        };
        let upload_images = match &request {
            RunRequest::Predict(PredictRequest { upload_id: Some(id), .. }) => self.upload_images(*id).await?,
            _ => None,
        };
        if let RunRequest::Ensemble(ensemble) = &request {
            let members = ensemble.member_ids().map_err(within)?;
            let parent_id = match &parent {
                Parent::Existing(run) => Some(run.id),
                Parent::None | Parent::InTree(_) => None,
            };
            for (index, member) in members.iter().enumerate() {
                let member_field = field(&format!("params.members[{index}]"));
                if Some(member.0) == parent_id {
                    return Err(ApiError::invalid(member_field, "the parent is averaged already; list the others"));
                }
                let run = self.existing_parent(member.0, &member_field).await?;
                let makes_model = run.kind.parse::<RunKind>().is_ok_and(RunKind::makes_model);
                if !makes_model || run.status != RunStatus::Succeeded.as_str() {
                    return Err(ApiError::invalid(
                        member_field,
                        format!("run {} ({}, {}) has no model to average", run.id, run.kind, run.status),
                    ));
                }
            }
        }
        let params = request.validate(&data, upload_images).map_err(within)?;

        let queue = match &submission.queue {
            Some(queue) => valid_queue(queue, &field("queue"))?,
            None => inherited_placement.map_or("default", |(queue, _)| queue).to_owned(),
        };
        let priority = match submission.priority {
            Some(priority) => valid_priority(priority, &field("priority"))?,
            None => inherited_placement.map_or(0, |(_, priority)| priority),
        };
        if !submission.children.is_empty() && !params.kind().makes_model() {
            return Err(ApiError::invalid(
                field("children"),
                format!("a {} run has no model for children to start from", params.kind()),
            ));
        }
        let mut children = Vec::with_capacity(submission.children.len());
        for (index, child) in submission.children.into_iter().enumerate() {
            let at = format!("{at}children[{index}].");
            if child.parent_run_id.is_some() {
                return Err(ApiError::invalid(
                    format!("{at}parent_run_id"),
                    "a child's parent is the run it is listed under",
                ));
            }
            let planned = Box::pin(self.plan(child, Parent::InTree(&params), &at, Some((&queue, priority)))).await?;
            children.push(planned);
        }
        let existing_parent = match parent {
            Parent::Existing(run) => Some(run.id),
            Parent::None | Parent::InTree(_) => None,
        };
        Ok(PlannedRun { params, name, time_limit_seconds, existing_parent, queue, priority, children })
    }

    /// An existing run this user may read, in the same experiment, that has or will have a
    /// model: it is not failed or cancelled.
    async fn existing_parent(&self, id: i64, field: &str) -> Result<Run, ApiError> {
        let run = access::run(&self.state.pool, self.user_id, id, Role::Viewer).await.map_err(|err| match err {
            // The run is a field of this request: name it rather than answer 404.
            ApiError::NotFound(_) => ApiError::invalid(field, format!("no such run: {id}")),
            other => other,
        })?;
        if run.experiment_id != self.experiment_id {
            return Err(ApiError::invalid(field, "must be a run of the same experiment"));
        }
        if matches!(run.status(), Some(RunStatus::Failed | RunStatus::Cancelled | RunStatus::StoppedEarly)) {
            return Err(ApiError::invalid(field, format!("run {} {} and has no model", run.id, run.status)));
        }
        Ok(run)
    }

    /// How many samples a dataset has, reading only file headers, off the async threads.
    async fn dataset_len(&self, name: &DatasetName, field: &str) -> Result<usize, ApiError> {
        let (data_dir, name) = (self.state.data_dir.clone(), name.clone());
        web::block(move || data_dir.len(&name))
            .await
            .map_err(|err| ApiError::Internal(err.to_string()))?
            .map_err(|err: DatasetError| ApiError::invalid(field, err.to_string()))
    }

    /// The image count of an upload of this experiment's team.
    async fn upload_images(&self, upload_id: i64) -> Result<Option<usize>, ApiError> {
        let images: Option<i32> = sqlx::query_scalar("SELECT images FROM uploads WHERE id = $1 AND team_id = $2")
            .bind(upload_id)
            .bind(self.team_id)
            .fetch_optional(&self.state.pool)
            .await?;
        Ok(images.map(|images| images as usize))
    }
}

fn decode_request(kind: RunKind, params: serde_json::Value, field: &str) -> Result<RunRequest, ApiError> {
    Ok(match kind {
        RunKind::Train => RunRequest::Train(decode_value(params, field)?),
        RunKind::Evaluate => RunRequest::Evaluate(decode_value(params, field)?),
        RunKind::Prune => RunRequest::Prune(decode_value(params, field)?),
        RunKind::Quantize => RunRequest::Quantize(decode_value(params, field)?),
        RunKind::Ensemble => RunRequest::Ensemble(decode_value(params, field)?),
        RunKind::Predict => RunRequest::Predict(decode_value(params, field)?),
    })
}

fn valid_queue(queue: &str, field: &str) -> Result<String, ApiError> {
    let valid = !queue.is_empty()
        && queue.len() <= 64
        && queue.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if valid {
        Ok(queue.to_owned())
    } else {
        Err(ApiError::invalid(field, "must be 1 to 64 characters of a-z, 0-9, `_` and `-`"))
    }
}

fn valid_name(name: &str, field: &str) -> Result<String, ApiError> {
    let name = name.trim();
    match name.chars().count() {
        1..=200 => Ok(name.to_owned()),
        _ => Err(ApiError::invalid(field, "must be 1 to 200 characters (leave it out for no name)")),
    }
}

pub(crate) fn valid_priority(priority: i64, field: &str) -> Result<i32, ApiError> {
    if (-MAX_PRIORITY..=MAX_PRIORITY).contains(&priority) {
        Ok(priority as i32)
    } else {
        Err(ApiError::invalid(field, format!("must be between -{MAX_PRIORITY} and {MAX_PRIORITY}")))
    }
}

/// Records a planned run and its children. A run whose parent has not succeeded yet waits.
/// An existing parent is locked first, so it cannot finish between this read and the commit
/// (its children would then wait for nothing); one that failed meanwhile is an error.
/// What every run of one submission shares.
#[derive(Clone, Copy)]
struct Recording {
    experiment_id: i64,
    submitted_by: i64,
}

async fn record(
    tx: &mut sqlx::PgConnection,
    recording: Recording,
    plan: PlannedRun,
    parent_in_tree: Option<i64>,
) -> Result<CreatedRun, ApiError> {
    let status = match (plan.existing_parent, parent_in_tree) {
        (_, Some(_)) => RunStatus::Waiting,
        (Some(parent), None) => {
            let status: String = sqlx::query_scalar("SELECT status FROM runs WHERE id = $1 FOR SHARE")
                .bind(parent)
                .fetch_one(&mut *tx)
                .await?;
            match status.parse::<RunStatus>().map_err(ApiError::Internal)? {
                RunStatus::Succeeded => RunStatus::Queued,
                RunStatus::Failed | RunStatus::Cancelled | RunStatus::StoppedEarly => {
                    return Err(ApiError::invalid("parent_run_id", format!("run {parent} {status} and has no model")));
                }
                RunStatus::Waiting | RunStatus::Queued | RunStatus::Running => RunStatus::Waiting,
            }
        }
        (None, None) => RunStatus::Queued,
    };
    let run = store::runs::create(
        tx,
        store::runs::NewRun {
            experiment_id: recording.experiment_id,
            name: plan.name.as_deref(),
            submitted_by: recording.submitted_by,
            time_limit_seconds: plan.time_limit_seconds,
            kind: plan.params.kind(),
            status,
            parent_run_id: parent_in_tree.or(plan.existing_parent),
            params: plan.params.to_stored(),
            queue: &plan.queue,
            priority: plan.priority,
        },
    )
    .await?;
    let mut children = Vec::with_capacity(plan.children.len());
    for child in plan.children {
        children.push(Box::pin(record(tx, recording, child, Some(run.id))).await?);
    }
    Ok(CreatedRun { run, children })
}
