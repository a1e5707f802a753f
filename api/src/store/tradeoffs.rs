//! The compression trade-off of an experiment: each measured model (or ensemble) with what
//! its evaluation found.
use sqlx::PgPool;

/// The most evaluations one trade-off shows, newest first.
pub const MAX_MEASURED: i64 = 200;

/// One succeeded evaluate or ensemble run, with the model it measured.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Measured {
    pub evaluation_id: i64,
    pub evaluation_kind: String,
    pub evaluation_params: serde_json::Value,
    pub model_id: i64,
    pub model_kind: String,
    pub model_params: serde_json::Value,
    pub model_parent_id: Option<i64>,
    pub accuracy: Option<f64>,
    pub cross_entropy: Option<f64>,
    pub model_bytes: Option<f64>,
    pub nonzero_parameters: Option<f64>,
    pub latency_1_ms: Option<f64>,
    pub latency_64_ms: Option<f64>,
    pub noise_accuracy: Option<f64>,
}

pub async fn measured(pool: &PgPool, experiment_id: i64) -> sqlx::Result<Vec<Measured>> {
    sqlx::query_as(
        "SELECT e.id AS evaluation_id, e.kind AS evaluation_kind, e.params AS evaluation_params,
                p.id AS model_id, p.kind AS model_kind, p.params AS model_params, p.parent_run_id AS model_parent_id,
                max(x.last_value) FILTER (WHERE x.key = 'accuracy') AS accuracy,
                max(x.last_value) FILTER (WHERE x.key = 'cross_entropy') AS cross_entropy,
                max(x.last_value) FILTER (WHERE x.key = 'model_bytes') AS model_bytes,
                max(x.last_value) FILTER (WHERE x.key = 'nonzero_parameters') AS nonzero_parameters,
                max(x.last_value) FILTER (WHERE x.key = 'latency_ms/batch_1/median') AS latency_1_ms,
                max(x.last_value) FILTER (WHERE x.key = 'latency_ms/batch_64/median') AS latency_64_ms,
                max(x.last_value) FILTER (WHERE x.key = 'noise_accuracy/0.3') AS noise_accuracy
         FROM runs e
         JOIN runs p ON p.id = e.parent_run_id
         -- An evaluation measures once: each key's one value is its summary's last.
         JOIN run_metrics x ON x.run_id = e.id
         WHERE e.experiment_id = $1 AND e.kind IN ('evaluate', 'ensemble') AND e.status = 'succeeded'
         GROUP BY e.id, p.id
         ORDER BY e.id DESC
         LIMIT $2",
    )
    .bind(experiment_id)
    .bind(MAX_MEASURED)
    .fetch_all(pool)
    .await
}
