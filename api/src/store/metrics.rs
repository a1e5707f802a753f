use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use std::collections::HashMap;

#[derive(Debug, Clone, Serialize, sqlx::FromRow, schemars::JsonSchema)]
pub struct Point {
    pub step: i64,
    pub value: f64,
    pub recorded_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Series {
    pub key: String,
    pub count: usize,
    pub points: Vec<Point>,
}

/// Every series of a run (or only `key`), ordered by key and step.
pub async fn series(pool: &PgPool, run_id: i64, key: Option<&str>) -> sqlx::Result<Vec<Series>> {
    let rows: Vec<(String, i64, f64, DateTime<Utc>)> = sqlx::query_as(
        "SELECT key, step, value, recorded_at FROM metrics
         WHERE run_id = $1 AND ($2::text IS NULL OR key = $2) ORDER BY key, step",
    )
    .bind(run_id)
    .bind(key)
    .fetch_all(pool)
    .await?;
    let mut series: Vec<Series> = Vec::new();
    for (key, step, value, recorded_at) in rows {
        let point = Point { step, value, recorded_at };
        match series.last_mut() {
            Some(last) if last.key == key => last.points.push(point),
            _ => series.push(Series { key, count: 0, points: vec![point] }),
        }
    }
    for s in &mut series {
        s.count = s.points.len();
    }
    Ok(series)
}

/// Inserts points in one statement; a point already stored for its run, key and step is
/// left as it is. Returns how many were new.
pub async fn insert(pool: &PgPool, run_id: i64, keys: &[String], steps: &[i64], values: &[f64]) -> sqlx::Result<u64> {
    let result = sqlx::query(
        "INSERT INTO metrics (run_id, key, step, value)
         SELECT $1, p.key, p.step, p.value FROM UNNEST($2::text[], $3::int8[], $4::float8[]) AS p (key, step, value)
         ON CONFLICT (run_id, key, step) DO NOTHING",
    )
    .bind(run_id)
    .bind(keys)
    .bind(steps)
    .bind(values)
    .execute(pool)
    .await?;
    Ok(result.rows_affected())
}

/// One run's summary of one key, kept by the database as points arrive.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Summary {
    pub run_id: i64,
    pub key: String,
    pub last_value: f64,
    pub points: i64,
}

/// Every key's summary for each of `run_ids`, ordered by key.
pub async fn summaries(pool: &PgPool, run_ids: &[i64]) -> sqlx::Result<Vec<Summary>> {
    sqlx::query_as(
        "SELECT run_id, key, last_value, points FROM run_metrics WHERE run_id = ANY($1) ORDER BY key, run_id",
    )
    .bind(run_ids)
    .fetch_all(pool)
    .await
}

/// A curve as charts draw it, and how many points the run had when it was made.
pub struct Overview {
    pub points: i64,
    pub curve: Vec<(f64, f64)>,
}

/// The cached overviews of `keys` for `run_ids`, by run and key (see `metric_overviews`).
pub async fn overviews(
    pool: &PgPool,
    run_ids: &[i64],
    keys: &[String],
) -> sqlx::Result<HashMap<(i64, String), Overview>> {
    #[derive(sqlx::FromRow)]
    struct Row {
        run_id: i64,
        key: String,
        points: i64,
        steps: Vec<f64>,
        values: Vec<f64>,
    }
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT run_id, key, points, steps, values FROM metric_overviews WHERE run_id = ANY($1) AND key = ANY($2)",
    )
    .bind(run_ids)
    .bind(keys)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            (
                (row.run_id, row.key),
                Overview { points: row.points, curve: row.steps.into_iter().zip(row.values).collect() },
            )
        })
        .collect())
}

/// Keeps an overview made from `points` points of a run's key.
pub async fn save_overview(pool: &PgPool, run_id: i64, key: &str, overview: &Overview) -> sqlx::Result<()> {
    let (steps, values): (Vec<f64>, Vec<f64>) = overview.curve.iter().copied().unzip();
    sqlx::query(
        "INSERT INTO metric_overviews (run_id, key, points, steps, values) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (run_id, key) DO UPDATE SET points = $3, steps = $4, values = $5",
    )
    .bind(run_id)
    .bind(key)
    .bind(overview.points)
    .bind(&steps)
    .bind(&values)
    .execute(pool)
    .await?;
    Ok(())
}

/// Every `(step, value)` point of the given `(run, key)` pairs, in step order. Each curve
/// arrives as two arrays: far cheaper to decode than one row per point.
pub async fn curves(pool: &PgPool, pairs: &[(i64, String)]) -> sqlx::Result<HashMap<(i64, String), Vec<(f64, f64)>>> {
    let (run_ids, keys): (Vec<i64>, Vec<String>) = pairs.iter().cloned().unzip();
    let rows: Vec<(i64, String, Vec<f64>, Vec<f64>)> = sqlx::query_as(
        // One index scan per curve, in step order: no sort, so nothing spills to disk.
        "SELECT p.run_id, p.key, c.steps, c.values
         FROM unnest($1::int8[], $2::text[]) AS p (run_id, key)
         CROSS JOIN LATERAL (
             SELECT coalesce(array_agg(s.step::float8), '{}') AS steps, coalesce(array_agg(s.value), '{}') AS values
             FROM (SELECT m.step, m.value FROM metrics m WHERE m.run_id = p.run_id AND m.key = p.key ORDER BY m.step) s
         ) c",
    )
    .bind(&run_ids)
    .bind(&keys)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(run_id, key, steps, values)| ((run_id, key), steps.into_iter().zip(values).collect()))
        .collect())
}
