//! Metric ingest through `POST /api/v1/runs/{id}/metrics` against the machine's limit: the
//! same rows written by `COPY` straight into Postgres (through the same summary trigger), with
//! the same batch size and number of concurrent writers, in the same run.
use crate::{Options, Row, stack::Stack, stats::Summary};
use anyhow::{Context, bail};
use serde_json::{Value, json};
use std::time::Instant;

const KEYS: [&str; 4] = ["train_loss", "val_loss", "grad_norm", "learning_rate_now"];

pub async fn run(options: &Options) -> anyhow::Result<Vec<Row>> {
    let mut stack = Stack::new("ingest").await?;
    let result = measure(&mut stack, options).await;
    stack.close().await?;
    result
}

async fn measure(stack: &mut Stack, options: &Options) -> anyhow::Result<Vec<Row>> {
    stack.start_api().await?;
    let experiment = stack.create_experiment("ingest").await?;
    let (points_per_writer, repetitions) = if options.quick { (40_000, 1) } else { (100_000, 3) };
    let mut rows = Vec::new();
    for batch in [1_000, 10_000] {
        for writers in [1, 4] {
            // Alternating, each round into fresh runs, so neither way writes into a bigger index.
            let (mut api, mut copy) = (Vec::new(), Vec::new());
            for _ in 0..repetitions {
                let runs = new_runs(stack, experiment, 2 * writers).await?;
                let (api_runs, copy_runs) = runs.split_at(writers);
                api.push(through_api(stack, api_runs, batch, points_per_writer).await?);
                copy.push(through_copy(stack, copy_runs, batch, points_per_writer).await?);
            }
            let (api, copy) = (Summary::of(&api).context("no rounds")?, Summary::of(&copy).context("no rounds")?);
            rows.push(Row {
                name: format!("Metric ingest, batches of {batch}, {writers} concurrent client{}", if writers > 1 { "s" } else { "" }),
                value: api.median,
                unit: "points/s".into(),
                comparison_label: "COPY into Postgres, points/s (target: within 2x)".into(),
                comparison: Some(copy.median),
                ratio: Some(api.median / copy.median),
                detail: format!(
                    "API {:.0}..{:.0}, COPY {:.0}..{:.0} points/s; {} rounds of {points_per_writer} points per client, each way",
                    api.min, api.max, copy.min, copy.max, api.samples
                ),
                summary: Some(api),
            });
        }
    }
    Ok(rows)
}

async fn new_runs(stack: &Stack, experiment: i64, count: usize) -> anyhow::Result<Vec<i64>> {
    let body = json!({"kind": "train", "params": {"dataset": "synthetic-digits", "train_range": [0, 64], "validation_range": [64, 96]}});
    let mut ids = Vec::with_capacity(count);
    for _ in 0..count {
        ids.push(stack.submit(experiment, &body).await?);
    }
    Ok(ids)
}

/// The points one writer sends: distinct steps, keys in turn.
fn point(index: usize) -> (&'static str, i64, f64) {
    (KEYS[index % KEYS.len()], (index / KEYS.len()) as i64, 1.0 / (1.0 + index as f64))
}

/// Points per second with one client per run, each posting its points in `batch`es.
async fn through_api(stack: &Stack, runs: &[i64], batch: usize, points: usize) -> anyhow::Result<f64> {
    let client = stack.client();
    // Bodies are built before the clock starts: the client's JSON work is not the server's.
    let bodies: Vec<Vec<String>> = runs
        .iter()
        .map(|_| {
            (0..points)
                .step_by(batch)
                .map(|start| {
                    let points: Vec<Value> = (start..(start + batch).min(points))
                        .map(|i| {
                            let (key, step, value) = point(i);
                            json!({"key": key, "step": step, "value": value})
                        })
                        .collect();
                    json!({ "points": points }).to_string()
                })
                .collect()
        })
        .collect();
    let started = Instant::now();
    let writers = runs.iter().zip(bodies).map(|(run, bodies)| {
        let (client, url) = (client.clone(), stack.url(&format!("/api/v1/runs/{run}/metrics")));
        async move {
            for body in bodies {
                let response = client.post(&url).header("content-type", "application/json").body(body).send().await?;
                if !response.status().is_success() {
                    bail!("ingest answered {}: {}", response.status(), response.text().await.unwrap_or_default());
                }
            }
            anyhow::Ok(())
        }
    });
    futures_util::future::try_join_all(writers).await?;
    Ok((runs.len() * points) as f64 / started.elapsed().as_secs_f64())
}

/// Points per second with one connection per run, each copying its points in `batch`es.
async fn through_copy(stack: &Stack, runs: &[i64], batch: usize, points: usize) -> anyhow::Result<f64> {
    let chunks: Vec<Vec<String>> = runs
        .iter()
        .map(|run| {
            (0..points)
                .step_by(batch)
                .map(|start| {
                    (start..(start + batch).min(points))
                        .map(|i| {
                            let (key, step, value) = point(i);
                            format!("{run},{key},{step},{value}\n")
                        })
                        .collect()
                })
                .collect()
        })
        .collect();
    let started = Instant::now();
    let writers = chunks.into_iter().map(|chunks| {
        let pool = stack.pool.clone();
        async move {
            let mut connection = pool.acquire().await?;
            for chunk in chunks {
                let mut copy = connection
                    .copy_in_raw("COPY metrics (run_id, key, step, value) FROM STDIN WITH (FORMAT csv)")
                    .await?;
                copy.send(chunk.into_bytes()).await?;
                copy.finish().await?;
            }
            anyhow::Ok(())
        }
    });
    futures_util::future::try_join_all(writers).await?;
    Ok((runs.len() * points) as f64 / started.elapsed().as_secs_f64())
}
