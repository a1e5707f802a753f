//! A hyper-parameter sweep end to end: the README's 20-trial random sweep with ASHA on
//! `synthetic-digits`, submitted in one request and served by one worker, from the POST to the
//! sweep finishing (both instants as Postgres recorded them), with how many trials early
//! stopping ended and how many epochs it saved.
use crate::{Options, Row, stack::Stack};
use anyhow::{Context, bail};
use serde_json::json;
use std::time::{Duration, Instant};

pub async fn run(options: &Options) -> anyhow::Result<Vec<Row>> {
    let mut stack = Stack::new("sweep").await?;
    let result = measure(&mut stack, options).await;
    stack.close().await?;
    result
}

async fn measure(stack: &mut Stack, options: &Options) -> anyhow::Result<Vec<Row>> {
    stack.start_api().await?;
    stack.start_scheduler()?;
    stack.start_trainer(2)?;
    let experiment = stack.create_experiment("sweep").await?;
    // Quick: the same sweep on a quarter of the training data.
    let train_range = if options.quick { json!([0, 2000]) } else { json!([0, 8000]) };
    let (trials, epochs) = (20, 4);
    let request = json!({
        "template": {"kind": "train", "params": {
            "dataset": "synthetic-digits", "train_range": train_range, "validation_range": [8000, 10000], "epochs": epochs
        }},
        "space": {"learning_rate": {"type": "log_uniform", "low": 0.0001, "high": 0.1},
                  "batch_size": {"type": "choice", "values": [32, 64]}},
        "strategy": "random", "seed": 7, "max_runs": trials, "max_parallel": 2,
        "metric": "val_accuracy", "direction": "max", "asha": {"min_epochs": 1, "reduction_factor": 2}
    });
    let url = stack.url(&format!("/api/v1/experiments/{experiment}/sweeps"));
    let created: serde_json::Value = stack.client().post(url).json(&request).send().await?.json().await?;
    let sweep = created["sweep"]["id"].as_i64().with_context(|| format!("submitting the sweep: {created}"))?;

    let deadline = Instant::now() + Duration::from_secs(1800);
    let seconds = loop {
        let finished: Option<f64> = sqlx::query_scalar(
            "SELECT extract(epoch FROM finished_at - created_at)::float8 FROM sweeps WHERE id = $1 AND status = 'finished'",
        )
        .bind(sweep)
        .fetch_optional(&stack.pool)
        .await?;
        if let Some(seconds) = finished {
            break seconds;
        }
        if Instant::now() > deadline {
            bail!("sweep {sweep} did not finish in 30 minutes");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let (stopped, failed, trained_epochs, best): (i64, i64, i64, Option<f64>) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE status = 'stopped_early'), count(*) FILTER (WHERE status = 'failed'),
                (SELECT count(*) FROM metrics m JOIN runs t ON t.id = m.run_id
                 WHERE t.sweep_id = $1 AND m.key = 'val_accuracy'),
                (SELECT max(s.last_value) FROM run_metrics s JOIN runs t ON t.id = s.run_id
                 WHERE t.sweep_id = $1 AND s.key = 'val_accuracy')
         FROM runs WHERE sweep_id = $1",
    )
    .bind(sweep)
    .fetch_one(&stack.pool)
    .await?;
    if failed > 0 {
        bail!("{failed} trials of the sweep failed");
    }
    let planned_epochs = trials * epochs;
    Ok(vec![Row {
        name: format!("Sweep: {trials} random trials with ASHA, synthetic-digits, one worker"),
        value: seconds,
        unit: "s".into(),
        comparison_label: "epochs without early stopping".into(),
        comparison: Some(planned_epochs as f64),
        ratio: Some(planned_epochs as f64 / trained_epochs as f64),
        detail: format!(
            "{stopped} of {trials} trials stopped early; {trained_epochs} of {planned_epochs} epochs trained; best \
             val_accuracy {:.4}; train {train_range} x {epochs} epochs, 2 threads",
            best.unwrap_or(f64::NAN)
        ),
        summary: None,
    }])
}
