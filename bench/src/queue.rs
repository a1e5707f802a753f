//! Queue latency: from the `POST` of a run to its worker marking it running (both instants as
//! Postgres recorded them: `created_at` and `started_at`), over tiny runs submitted one at a
//! time to an idle worker; and how many tiny runs one worker completes per second when they
//! are all submitted at once.
use crate::{Options, Row, stack::Stack, stats::Summary};
use anyhow::{Context, bail};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// The target for the median latency.
const TARGET_MS: f64 = 20.0;

pub async fn run(options: &Options) -> anyhow::Result<Vec<Row>> {
    let mut stack = Stack::new("queue").await?;
    let result = measure(&mut stack, options).await;
    stack.close().await?;
    result
}

fn tiny_run() -> Value {
    json!({"kind": "train", "params": {
        "dataset": "synthetic-digits", "train_range": [0, 32], "validation_range": [32, 64], "epochs": 1, "batch_size": 32
    }})
}

async fn measure(stack: &mut Stack, options: &Options) -> anyhow::Result<Vec<Row>> {
    stack.start_api().await?;
    stack.start_scheduler()?;
    stack.start_trainer(1)?;
    let experiment = stack.create_experiment("queue").await?;
    let runs = if options.quick { 50 } else { 200 };

    // One at a time: each run waits for an idle worker, as the first run of a quiet queue does.
    let mut ids = Vec::with_capacity(runs);
    for _ in 0..runs + 5 {
        let id = stack.submit(experiment, &tiny_run()).await?;
        wait_finished(stack, &[id], Duration::from_secs(60)).await?;
        ids.push(id);
    }
    // The first few warm the worker up (loading the dataset, first tch calls).
    let latencies: Vec<f64> = sqlx::query_scalar(
        "SELECT extract(epoch FROM started_at - created_at)::float8 * 1000 FROM runs WHERE id = ANY($1) ORDER BY id OFFSET 5",
    )
    .bind(&ids)
    .fetch_all(&stack.pool)
    .await?;
    let latency = Summary::of(&latencies).context("no latencies")?;

    // All at once: throughput of one worker.
    let started = Instant::now();
    let mut batch = Vec::with_capacity(runs);
    for _ in 0..runs {
        batch.push(stack.submit(experiment, &tiny_run()).await?);
    }
    wait_finished(stack, &batch, Duration::from_secs(600)).await?;
    let per_second = runs as f64 / started.elapsed().as_secs_f64();
    Ok(vec![
        Row {
            name: "Queue latency: POST to running, idle worker".into(),
            value: latency.median,
            unit: "ms (median)".into(),
            comparison_label: format!("target: median under {TARGET_MS} ms"),
            comparison: Some(TARGET_MS),
            ratio: Some(TARGET_MS / latency.median),
            detail: format!(
                "p95 {:.1} ms, min {:.1}, max {:.1}, {} tiny runs",
                latency.p95, latency.min, latency.max, latency.samples
            ),
            summary: Some(latency),
        },
        Row {
            name: "Queue throughput: tiny runs, one worker".into(),
            value: per_second,
            unit: "runs/s".into(),
            comparison_label: "none".into(),
            comparison: None,
            ratio: None,
            detail: format!("{runs} runs submitted at once (train 32 images, 1 epoch, evaluate 32, checkpoint)"),
            summary: None,
        },
    ])
}

async fn wait_finished(stack: &Stack, ids: &[i64], timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let unfinished: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM runs WHERE id = ANY($1) AND status NOT IN ('succeeded', 'failed', 'cancelled')",
        )
        .bind(ids)
        .fetch_one(&stack.pool)
        .await?;
        if unfinished == 0 {
            let failed: i64 =
                sqlx::query_scalar("SELECT count(*) FROM runs WHERE id = ANY($1) AND status <> 'succeeded'")
                    .bind(ids)
                    .fetch_one(&stack.pool)
                    .await?;
            if failed > 0 {
                bail!("{failed} tiny runs did not succeed");
            }
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{unfinished} runs still unfinished after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
