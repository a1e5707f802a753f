//! The API under load: 50 concurrent clients on loopback for a bounded time, reading run
//! pages (the REST run and the dashboard's run page) and submitting runs; requests per
//! second, latency percentiles, errors, and the API's peak resident memory.
use crate::{Options, Row, stack::Stack, stats::Summary};
use anyhow::Context;
use serde_json::json;
use std::time::{Duration, Instant};

const CLIENTS: usize = 50;
const SEEDED_RUNS: i64 = 200;

pub async fn run(options: &Options) -> anyhow::Result<Vec<Row>> {
    let mut stack = Stack::new("load").await?;
    let result = measure(&mut stack, options).await;
    stack.close().await?;
    result
}

/// What one client saw: latencies in milliseconds and how many requests failed.
#[derive(Default)]
struct Seen {
    latencies: Vec<f64>,
    errors: usize,
}

async fn measure(stack: &mut Stack, options: &Options) -> anyhow::Result<Vec<Row>> {
    let api = stack.start_api().await?;
    let client = stack.client();
    let session = stack.session().await?;
    let experiment = stack.create_experiment("load").await?;
    let runs = seed(stack, experiment).await?;
    let duration = Duration::from_secs(if options.quick { 10 } else { 30 });
    let submit_url = stack.url(&format!("/api/v1/experiments/{experiment}/runs"));
    let body = json!({"kind": "train", "params": {"dataset": "synthetic-digits", "train_range": [0, 64], "validation_range": [64, 96]}});

    let started = Instant::now();
    let clients = (0..CLIENTS).map(|index| {
        let (client, session, runs, submit_url, body) =
            (client.clone(), session.clone(), runs.clone(), submit_url.clone(), body.clone());
        let base = stack.url("");
        async move {
            let mut seen = Seen::default();
            let mut request = index;
            while started.elapsed() < duration {
                request += CLIENTS;
                let run = runs[request % runs.len()];
                let sent = Instant::now();
                // One request in ten submits; the others read, half through REST, half the page.
                let response = match request % 10 {
                    0 => client.post(&submit_url).json(&body).send().await,
                    n if n % 2 == 0 => client.get(format!("{base}/api/v1/runs/{run}")).send().await,
                    _ => session.get(format!("{base}/runs/{run}")).send().await,
                };
                let ok = match response {
                    Ok(response) => response.status().is_success() && response.bytes().await.is_ok(),
                    Err(_) => false,
                };
                seen.latencies.push(sent.elapsed().as_secs_f64() * 1e3);
                if !ok {
                    seen.errors += 1;
                }
            }
            seen
        }
    });
    let seen = futures_util::future::join_all(clients).await;
    let elapsed = started.elapsed().as_secs_f64();
    let latencies: Vec<f64> = seen.iter().flat_map(|s| s.latencies.iter().copied()).collect();
    let errors: usize = seen.iter().map(|s| s.errors).sum();
    let summary = Summary::of(&latencies).context("no requests")?;
    let p99 = {
        let mut sorted = latencies.clone();
        sorted.sort_by(f64::total_cmp);
        sorted[((sorted.len() - 1) as f64 * 0.99).round() as usize]
    };
    let peak = crate::stack::peak_rss_bytes(api).unwrap_or(0) as f64 / (1 << 20) as f64;
    Ok(vec![
        Row {
            name: format!(
                "API under load: {CLIENTS} clients, {} s, 45% REST reads, 45% run pages, 10% submits",
                duration.as_secs()
            ),
            value: latencies.len() as f64 / elapsed,
            unit: "requests/s".into(),
            comparison_label: "errors (must be 0)".into(),
            comparison: Some(errors as f64),
            ratio: None,
            detail: format!(
                "p50 {:.1} ms, p99 {p99:.1} ms, max {:.1} ms, {} requests",
                summary.median, summary.max, summary.samples
            ),
            summary: Some(summary),
        },
        Row {
            name: "Memory: API peak resident under that load".into(),
            value: peak,
            unit: "MiB".into(),
            comparison_label: "none".into(),
            comparison: None,
            ratio: None,
            detail: "VmHWM of the cairn-api process".into(),
            summary: None,
        },
    ])
}

/// Finished runs with a few epochs of metrics, to read.
async fn seed(stack: &Stack, experiment: i64) -> anyhow::Result<Vec<i64>> {
    let ids: Vec<i64> = sqlx::query_scalar(
        "INSERT INTO runs (experiment_id, kind, status, params, attempt, worker_id, started_at, finished_at)
         SELECT $1, 'train', 'succeeded',
                jsonb_build_object('dataset', 'synthetic-digits', 'epochs', 3, 'batch_size', 32, 'learning_rate', 0.001),
                1, 'bench-worker', now() - interval '10 minutes', now() - interval '5 minutes'
         FROM generate_series(1, $2) RETURNING id",
    )
    .bind(experiment)
    .bind(SEEDED_RUNS)
    .fetch_all(&stack.pool)
    .await?;
    sqlx::query(
        "INSERT INTO metrics (run_id, key, step, value)
         SELECT r, k, s, random() FROM unnest($1::int8[]) r, unnest(ARRAY['train_loss', 'val_loss', 'val_accuracy']) k,
                generate_series(1, 50) s",
    )
    .bind(&ids)
    .execute(&stack.pool)
    .await?;
    Ok(ids)
}
