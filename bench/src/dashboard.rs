//! Dashboard render times, measured as a signed-in browser sees them (request to last byte on
//! loopback): the compare page of 20 runs with 3 metric keys of 10,000 points each, and the
//! first page of an experiment's 10,000 runs sorted by a metric.
use crate::{Options, Row, stack::Stack, stats::Summary};
use anyhow::{Context, bail};
use std::time::Instant;

const COMPARED_RUNS: i64 = 20;
const POINTS_PER_KEY: i64 = 10_000;
const TABLE_RUNS: i64 = 10_000;
/// The target for both pages, at p95.
const TARGET_MS: f64 = 100.0;

pub async fn run(options: &Options) -> anyhow::Result<Vec<Row>> {
    let mut stack = Stack::new("dashboard").await?;
    let result = measure(&mut stack, options).await;
    stack.close().await?;
    result
}

async fn measure(stack: &mut Stack, options: &Options) -> anyhow::Result<Vec<Row>> {
    let (compare_ids, table_experiment) = seed(stack).await?;
    stack.start_api().await?;
    let browser = stack.session().await?;
    let repetitions = if options.quick { 20 } else { 100 };

    let runs = compare_ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
    let compare_url = stack.url(&format!("/compare?runs={runs}"));
    let compare = time_page(&browser, &compare_url, 3, repetitions, |html| {
        html.matches("path class=\"series\"").count() == 3 * COMPARED_RUNS as usize
    })
    .await
    .context("compare page")?;
    // The first view after a run's curves changed rebuilds them from every point.
    let mut cold = Vec::new();
    for _ in 0..if options.quick { 3 } else { 10 } {
        sqlx::query("DELETE FROM metric_overviews").execute(&stack.pool).await?;
        cold.push(time_page(&browser, &compare_url, 0, 1, |html| html.contains("path class=\"series\"")).await?.median);
    }
    let cold = Summary::of(&cold).context("no samples")?;
    let table_url = stack.url(&format!("/experiments/{table_experiment}?sort=metric%3Aval_accuracy&order=desc"));
    let table = time_page(&browser, &table_url, 3, repetitions, |html| html.matches("<tr id=\"run-").count() == 50)
        .await
        .context("runs table")?;
    let filtered_url = format!("{table_url}&filter=val_accuracy+%3E+0.5+and+lr+%3C+0.01");
    let filtered = time_page(&browser, &filtered_url, 3, repetitions, |html| html.contains("<tr id=\"run-"))
        .await
        .context("filtered table")?;
    Ok(vec![
        Row::timing("Dashboard: compare 20 runs x 3 keys x 10,000 points", compare, TARGET_MS),
        Row::timing("Dashboard: the same, first view (curves rebuilt from 600,000 points)", cold, TARGET_MS),
        Row::timing("Dashboard: runs table, 10,000 runs, sorted by a metric", table, TARGET_MS),
        Row::timing("Dashboard: the same, filtered (metric and param)", filtered, TARGET_MS),
    ])
}

/// Milliseconds per request over `repetitions`, after `warmups` unmeasured requests (which
/// also fill the curve cache); every page must pass `check`.
async fn time_page(
    browser: &reqwest::Client,
    url: &str,
    warmups: usize,
    repetitions: usize,
    check: impl Fn(&str) -> bool,
) -> anyhow::Result<Summary> {
    let mut samples = Vec::with_capacity(repetitions);
    for round in 0..warmups + repetitions {
        let started = Instant::now();
        let response = browser.get(url).send().await?;
        let status = response.status();
        let html = response.text().await?;
        let elapsed = started.elapsed().as_secs_f64() * 1e3;
        if !status.is_success() || !check(&html) {
            bail!("{url} answered {status} without the expected content");
        }
        if round >= warmups {
            samples.push(elapsed);
        }
    }
    Summary::of(&samples).context("no samples")
}

/// Two experiments, written straight into Postgres: 20 finished runs with three 10,000-point
/// curves, and 10,000 finished runs with a few epochs of metrics and varied params.
async fn seed(stack: &Stack) -> anyhow::Result<(Vec<i64>, i64)> {
    let team: i64 = sqlx::query_scalar("SELECT id FROM teams WHERE name = 'bench'").fetch_one(&stack.pool).await?;
    let user: i64 = sqlx::query_scalar("SELECT id FROM users WHERE name = 'bench'").fetch_one(&stack.pool).await?;
    let experiment = |name: &'static str| {
        sqlx::query_scalar::<_, i64>("INSERT INTO experiments (team_id, name) VALUES ($1, $2) RETURNING id")
            .bind(team)
            .bind(name)
            .fetch_one(&stack.pool)
    };
    let compare_experiment = experiment("compare").await?;
    let table_experiment = experiment("table").await?;
    let insert_runs = "INSERT INTO runs (experiment_id, kind, status, params, submitted_by, name, attempt, worker_id,
                                         created_at, started_at, finished_at)
         SELECT $1, 'train', 'succeeded',
                jsonb_build_object('dataset', 'synthetic-digits', 'epochs', 3, 'batch_size', 32 * (1 + i % 4),
                                   'learning_rate', power(10, -1 - (i % 4)), 'optimizer', CASE WHEN i % 2 = 0 THEN 'adam' ELSE 'sgd' END,
                                   'seed', i, 'train_range', jsonb_build_array(0, 8000), 'validation_range', jsonb_build_array(8000, 10000)),
                $3, 'trial ' || i, 1, 'bench-worker', now() - interval '1 day' + i * interval '1 second',
                now() - interval '1 day' + i * interval '1 second', now() - interval '1 day' + i * interval '1 second' + interval '5 minutes'
         FROM generate_series(1, $2) i
         RETURNING id";
    let compare_ids: Vec<i64> = sqlx::query_scalar(insert_runs)
        .bind(compare_experiment)
        .bind(COMPARED_RUNS)
        .bind(user)
        .fetch_all(&stack.pool)
        .await?;
    let table_ids: Vec<i64> = sqlx::query_scalar(insert_runs)
        .bind(table_experiment)
        .bind(TABLE_RUNS)
        .bind(user)
        .fetch_all(&stack.pool)
        .await?;
    // Curves that fall like losses, with noise, so downsampling has real work to do.
    sqlx::query(
        "INSERT INTO metrics (run_id, key, step, value)
         SELECT r, k, s, (1 + r % 7) * exp(-s / 3000.0) + 0.05 * random()
         FROM unnest($1::int8[]) r, unnest(ARRAY['train_loss', 'grad_norm', 'learning_rate_now']) k, generate_series(0, $2 - 1) s",
    )
    .bind(&compare_ids)
    .bind(POINTS_PER_KEY)
    .execute(&stack.pool)
    .await?;
    sqlx::query(
        "INSERT INTO metrics (run_id, key, step, value)
         SELECT r, k, e, CASE k WHEN 'val_accuracy' THEN 0.8 + 0.19 * random() ELSE random() END
         FROM unnest($1::int8[]) r, unnest(ARRAY['val_accuracy', 'val_loss']) k, generate_series(1, 3) e",
    )
    .bind(&table_ids)
    .execute(&stack.pool)
    .await?;
    // What autovacuum does soon after a burst of inserts: it also lets curves be read from the
    // index alone.
    sqlx::query("VACUUM ANALYZE").execute(&stack.pool).await?;
    Ok((compare_ids, table_experiment))
}
