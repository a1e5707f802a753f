use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Point {
    pub step: i64,
    pub value: f64,
    pub recorded_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize)]
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
    sqlx::query_as("SELECT run_id, key, last_value, points FROM run_metrics WHERE run_id = ANY($1) ORDER BY key, run_id")
        .bind(run_ids)
        .fetch_all(pool)
        .await
}

/// The `(step, value)` points of `keys` for each of `run_ids`, by run and key, in step
/// order: what a comparison draws.
pub async fn curves(
    pool: &PgPool,
    run_ids: &[i64],
    keys: &[String],
) -> sqlx::Result<std::collections::HashMap<(i64, String), Vec<(f64, f64)>>> {
    use futures_util::TryStreamExt;
    let mut curves: std::collections::HashMap<(i64, String), Vec<(f64, f64)>> = std::collections::HashMap::new();
    let mut rows = sqlx::query_as::<_, (i64, String, i64, f64)>(
        "SELECT run_id, key, step, value FROM metrics WHERE run_id = ANY($1) AND key = ANY($2) ORDER BY run_id, key, step",
    )
    .bind(run_ids)
    .bind(keys)
    .fetch(pool);
    while let Some((run_id, key, step, value)) = rows.try_next().await? {
        curves.entry((run_id, key)).or_default().push((step as f64, value));
    }
    Ok(curves)
}
