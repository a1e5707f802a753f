//! Runs tables: one experiment's runs, or the history across experiments, filtered, sorted
//! by any column and paged, in one statement. The SQL is assembled from fixed fragments;
//! every value from the request is a bound parameter.
use super::runs::Run;
use crate::filter::{Clause, Field, Target, Value};
use chrono::{DateTime, Utc};
use sqlx::{PgPool, Postgres, QueryBuilder};
use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SortKey {
    Id,
    Status,
    Kind,
    Name,
    Duration,
    Worker,
    Param(String),
    Metric(String),
}

impl SortKey {
    /// `id`, `status`, `kind`, `name`, `duration`, `worker`, `param:<name>`, `metric:<key>`.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "id" | "created" => Self::Id,
            "status" => Self::Status,
            "kind" => Self::Kind,
            "name" => Self::Name,
            "duration" => Self::Duration,
            "worker" => Self::Worker,
            _ => match text.split_once(':') {
                Some(("param", name)) if !name.is_empty() => Self::Param(name.to_owned()),
                Some(("metric", key)) if !key.is_empty() => Self::Metric(key.to_owned()),
                _ => return None,
            },
        })
    }

    pub fn as_param(&self) -> String {
        match self {
            Self::Id => "id".into(),
            Self::Status => "status".into(),
            Self::Kind => "kind".into(),
            Self::Name => "name".into(),
            Self::Duration => "duration".into(),
            Self::Worker => "worker".into(),
            Self::Param(name) => format!("param:{name}"),
            Self::Metric(key) => format!("metric:{key}"),
        }
    }
}

/// Which runs, in which order, which page.
pub struct TableQuery<'a> {
    /// Only runs of teams this user belongs to.
    pub user_id: i64,
    pub experiment_id: Option<i64>,
    pub clauses: &'a [Clause],
    pub submitted_by: Option<i64>,
    pub created_from: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
    pub sort: SortKey,
    pub descending: bool,
    pub offset: i64,
    pub limit: i64,
}

#[derive(Debug, sqlx::FromRow)]
pub struct TableRun {
    #[sqlx(flatten)]
    pub run: Run,
    pub experiment_name: String,
    pub submitter: Option<String>,
}

pub struct TablePage {
    pub runs: Vec<TableRun>,
    /// How many runs match, over all pages.
    pub total: i64,
}

/// Totals of every run a query matches (not only one page), for managers.
pub struct Totals {
    pub runs: i64,
    pub succeeded: i64,
    pub finished: i64,
    /// Hours of attempts by the device of the worker that ran them.
    pub hours_by_device: Vec<(String, f64)>,
}

pub async fn page(pool: &PgPool, query: &TableQuery<'_>) -> sqlx::Result<TablePage> {
    let mut sql = QueryBuilder::<Postgres>::new(concat!(
        "SELECT ",
        run_columns!(),
        ", e.name AS experiment_name, u.name AS submitter"
    ));
    sql.push(", count(*) OVER () AS total FROM runs r JOIN experiments e ON e.id = r.experiment_id LEFT JOIN users u ON u.id = r.submitted_by");
    if let SortKey::Metric(key) = &query.sort {
        sql.push(" LEFT JOIN run_metrics sm ON sm.run_id = r.id AND sm.key = ").push_bind(key.clone());
    }
    push_conditions(&mut sql, query);
    sql.push(" ORDER BY ");
    match &query.sort {
        SortKey::Id => sql.push("r.id"),
        SortKey::Status => sql.push("r.status"),
        SortKey::Kind => sql.push("r.kind"),
        SortKey::Name => sql.push("r.name"),
        SortKey::Duration => sql.push("coalesce(r.finished_at, now()) - r.started_at"),
        SortKey::Worker => sql.push("r.worker_id"),
        // jsonb orders numbers by value and text by its characters.
        SortKey::Param(name) => sql.push("r.params #> ").push_bind(path(name)),
        // A diverged run's NaN sorts with the runs that have no value, last.
        SortKey::Metric(_) => sql.push("NULLIF(sm.last_value, 'NaN')"),
    };
    sql.push(if query.descending { " DESC NULLS LAST, r.id DESC" } else { " ASC NULLS LAST, r.id DESC" });
    sql.push(" LIMIT ").push_bind(query.limit).push(" OFFSET ").push_bind(query.offset);

    #[derive(sqlx::FromRow)]
    struct Row {
        #[sqlx(flatten)]
        line: TableRun,
        total: i64,
    }
    let rows: Vec<Row> = sql.build_query_as().fetch_all(pool).await?;
    let total = match rows.first() {
        Some(row) => row.total,
        // An empty page past the end still says how many runs match.
        None if query.offset > 0 => count(pool, query).await?,
        None => 0,
    };
    Ok(TablePage { runs: rows.into_iter().map(|row| row.line).collect(), total })
}

async fn count(pool: &PgPool, query: &TableQuery<'_>) -> sqlx::Result<i64> {
    let mut sql = QueryBuilder::<Postgres>::new("SELECT count(*) FROM runs r");
    push_conditions(&mut sql, query);
    sql.build_query_scalar().fetch_one(pool).await
}

pub async fn totals(pool: &PgPool, query: &TableQuery<'_>) -> sqlx::Result<Totals> {
    let mut sql = QueryBuilder::<Postgres>::new(
        "SELECT count(*), count(*) FILTER (WHERE r.status = 'succeeded'),
                count(*) FILTER (WHERE r.status IN ('succeeded', 'failed', 'cancelled', 'stopped_early')) FROM runs r",
    );
    push_conditions(&mut sql, query);
    let (runs, succeeded, finished): (i64, i64, i64) = sql.build_query_as().fetch_one(pool).await?;

    let mut sql = QueryBuilder::<Postgres>::new(
        "SELECT coalesce(w.device, 'unknown'),
                sum(extract(epoch FROM coalesce(a.ended_at, now()) - a.started_at))::float8 / 3600
         FROM run_attempts a JOIN runs r ON r.id = a.run_id LEFT JOIN workers w ON w.id = a.worker_id",
    );
    push_conditions(&mut sql, query);
    sql.push(" GROUP BY 1 ORDER BY 2 DESC");
    let hours_by_device = sql.build_query_as().fetch_all(pool).await?;
    Ok(Totals { runs, succeeded, finished, hours_by_device })
}

/// The last value of each of `keys` for each of `run_ids`.
pub async fn metric_values(
    pool: &PgPool,
    run_ids: &[i64],
    keys: &[String],
) -> sqlx::Result<HashMap<(i64, String), f64>> {
    let rows: Vec<(i64, String, f64)> =
        sqlx::query_as("SELECT run_id, key, last_value FROM run_metrics WHERE run_id = ANY($1) AND key = ANY($2)")
            .bind(run_ids)
            .bind(keys)
            .fetch_all(pool)
            .await?;
    Ok(rows.into_iter().map(|(run, key, value)| ((run, key), value)).collect())
}

/// Metric keys of an experiment's runs, the most common first, for column choices.
pub async fn metric_keys(pool: &PgPool, experiment_id: i64) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(
        "SELECT s.key FROM run_metrics s JOIN runs r ON r.id = s.run_id WHERE r.experiment_id = $1
         GROUP BY s.key ORDER BY count(*) DESC, s.key LIMIT 200",
    )
    .bind(experiment_id)
    .fetch_all(pool)
    .await
}

fn path(name: &str) -> Vec<String> {
    name.split('.').map(str::to_owned).collect()
}

fn push_conditions(sql: &mut QueryBuilder<Postgres>, query: &TableQuery<'_>) {
    sql.push(" WHERE r.experiment_id IN (SELECT e2.id FROM experiments e2 JOIN memberships m ON m.team_id = e2.team_id WHERE m.user_id = ")
        .push_bind(query.user_id)
        .push(")");
    if let Some(experiment) = query.experiment_id {
        sql.push(" AND r.experiment_id = ").push_bind(experiment);
    }
    if let Some(user) = query.submitted_by {
        sql.push(" AND r.submitted_by = ").push_bind(user);
    }
    if let Some(from) = query.created_from {
        sql.push(" AND r.created_at >= ").push_bind(from);
    }
    if let Some(before) = query.created_before {
        sql.push(" AND r.created_at < ").push_bind(before);
    }
    for clause in query.clauses {
        sql.push(" AND ");
        push_clause(sql, clause);
    }
}

fn push_clause(sql: &mut QueryBuilder<Postgres>, clause: &Clause) {
    use crate::filter::Op;
    let equality = |sql: &mut QueryBuilder<Postgres>| {
        // `!=` keeps runs without the value: "optimizer != sgd" includes runs without one.
        sql.push(if clause.op == Op::Equal { " = " } else { " IS DISTINCT FROM " });
    };
    match (&clause.target, &clause.value) {
        (Target::Field(field), value) => {
            sql.push(match field {
                Field::Status => "r.status",
                Field::Kind => "r.kind",
                Field::Name => "r.name",
                Field::Queue => "r.queue",
                Field::Worker => "r.worker_id",
            });
            equality(sql);
            sql.push_bind(text(value));
        }
        (Target::Param(path), Value::Number(number)) => {
            sql.push("(CASE WHEN jsonb_typeof(r.params #> ")
                .push_bind(path.clone())
                .push(") = 'number' THEN (r.params #> ")
                .push_bind(path.clone())
                .push(")::float8 ")
                .push(clause.op.sql())
                .push(" ")
                .push_bind(*number)
                .push(" ELSE false END)");
        }
        (Target::Param(path), Value::Text(value)) => {
            sql.push("(r.params #>> ").push_bind(path.clone()).push(")");
            equality(sql);
            sql.push_bind(value.clone());
        }
        (Target::Metric(key), value) => {
            sql.push("EXISTS (SELECT 1 FROM run_metrics s WHERE s.run_id = r.id AND s.key = ")
                .push_bind(key.clone())
                .push(" AND s.last_value ")
                .push(clause.op.sql())
                .push(" ")
                .push_bind(match value {
                    Value::Number(number) => *number,
                    Value::Text(_) => f64::NAN,
                })
                .push(")");
        }
    }
}

fn text(value: &Value) -> String {
    match value {
        Value::Number(number) => number.to_string(),
        Value::Text(text) => text.clone(),
    }
}
