//! `/compare?runs=1,2,3`: 2 to 50 runs side by side. Params with differing values marked
//! (and a switch to show only those), summary metrics with the best of each row marked, one
//! chart per metric key with every run's curve, and a parallel-coordinates chart of the
//! params that differ against a chosen metric.
use super::{
    chart::{self, Chart, Dimension, ParallelChart, Series},
    downsample::{MAX_POINTS, downsample},
    pages::html,
    view::{Nav, PageError, number, plain},
};
use crate::{
    auth::SessionUser,
    startup::AppState,
    store::{
        self,
        metrics::{Overview, Summary},
    },
};
use actix_web::{HttpRequest, HttpResponse, http::StatusCode, web};
use askama::Template;
use cairn_domain::metrics::higher_is_better;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};

pub const MAX_RUNS: usize = 50;

#[derive(Template)]
#[template(path = "compare.html")]
pub struct ComparePage {
    pub nav: Nav,
    pub runs: Vec<RunHead>,
    pub params: Vec<Row>,
    pub only_differences: bool,
    pub differences_link: String,
    pub metrics: Vec<Row>,
    pub charts: Vec<Chart>,
    pub parallel: Option<ParallelChart>,
    /// The metric on the parallel chart's last axis, and the others it could be.
    pub chosen_metric: String,
    pub metric_choices: Vec<String>,
    pub run_list: String,
    pub error: Option<String>,
}

pub struct RunHead {
    pub id: i64,
    pub label: String,
    pub status: String,
    pub color: &'static str,
    pub dash: &'static str,
}

/// One row of a side-by-side table: a value per run (empty where a run has none).
pub struct Row {
    pub key: String,
    pub values: Vec<String>,
    pub differs: bool,
    /// The column of the best value, for metrics.
    pub best: Option<usize>,
}

impl Row {
    pub fn is_best(&self, column: usize) -> bool {
        self.best == Some(column)
    }
}

/// The runs named by `runs=1,2` or `runs=1&runs=2` (what a form of checkboxes sends), in
/// order, without repeats.
fn run_ids(query: &str) -> Result<Vec<i64>, String> {
    let mut ids = Vec::new();
    for (name, value) in serde_urlencoded::from_str::<Vec<(String, String)>>(query).map_err(|e| e.to_string())? {
        if name != "runs" {
            continue;
        }
        for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let id =
                part.trim_start_matches('#').parse::<i64>().map_err(|_| format!("runs: `{part}` is not a run id"))?;
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
    }
    if !(2..=MAX_RUNS).contains(&ids.len()) {
        return Err(format!("runs: pick 2 to {MAX_RUNS} runs to compare ({} given)", ids.len()));
    }
    Ok(ids)
}

fn query_value(query: &str, name: &str) -> Option<String> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(query)
        .ok()?
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v)
}

pub async fn compare_page(
    state: web::Data<AppState>,
    who: SessionUser,
    request: HttpRequest,
) -> Result<HttpResponse, PageError> {
    let query = request.query_string();
    let ids = match run_ids(query) {
        Ok(ids) => ids,
        Err(message) => return html(StatusCode::BAD_REQUEST, &empty(&who, message)),
    };
    let mut runs = store::runs::visible(&state.pool, who.user_id, &ids).await?;
    if runs.len() < ids.len() {
        let missing: Vec<String> =
            ids.iter().filter(|id| !runs.iter().any(|r| r.id == **id)).map(|id| format!("#{id}")).collect();
        let message = format!("runs: {} not found (or not in your teams)", missing.join(", "));
        return html(StatusCode::NOT_FOUND, &empty(&who, message));
    }
    runs.sort_by_key(|run| ids.iter().position(|id| *id == run.id));
    let heads: Vec<RunHead> = runs
        .iter()
        .enumerate()
        .map(|(index, run)| {
            let (color, dash) = chart::style(index);
            let label = match &run.name {
                Some(name) => format!("#{} {name}", run.id),
                None => format!("#{} {}", run.id, run.kind),
            };
            RunHead { id: run.id, label, status: run.status.clone(), color, dash }
        })
        .collect();

    let only_differences = query_value(query, "diff").is_some_and(|v| v == "1");
    let flat: Vec<BTreeMap<String, Value>> = runs.iter().map(|run| flatten(&run.params)).collect();
    let param_keys: BTreeSet<&String> = flat.iter().flat_map(|params| params.keys()).collect();
    let differing: BTreeSet<&String> = param_keys
        .iter()
        .copied()
        .filter(|key| flat.iter().map(|params| params.get(*key)).collect::<Vec<_>>().windows(2).any(|w| w[0] != w[1]))
        .collect();
    let params: Vec<Row> = param_keys
        .iter()
        .filter(|key| differing.contains(*key) || !only_differences)
        .map(|key| Row {
            key: (*key).clone(),
            differs: differing.contains(*key),
            values: flat.iter().map(|params| params.get(*key).map(plain).unwrap_or_default()).collect(),
            best: None,
        })
        .collect();

    let summaries = store::metrics::summaries(&state.pool, &ids).await?;
    let column = |run_id: i64| ids.iter().position(|id| *id == run_id).unwrap_or(0);
    let mut by_key: BTreeMap<String, Vec<Option<f64>>> = BTreeMap::new();
    let mut curve_keys = BTreeSet::new();
    for summary in &summaries {
        by_key.entry(summary.key.clone()).or_insert_with(|| vec![None; ids.len()])[column(summary.run_id)] =
            Some(summary.last_value);
        if summary.points > 1 {
            curve_keys.insert(summary.key.clone());
        }
    }
    let metrics: Vec<Row> = by_key
        .iter()
        .map(|(key, values)| Row {
            key: key.clone(),
            differs: values.windows(2).any(|w| w[0] != w[1]),
            best: best(key, values),
            values: values.iter().map(|v| v.map(number).unwrap_or_default()).collect(),
        })
        .collect();

    let curve_keys: Vec<String> = curve_keys.into_iter().collect();
    let mut curves = overviews(&state, &summaries, &ids, &curve_keys).await?;
    let charts = curve_keys
        .iter()
        .filter_map(|key| {
            let series = heads
                .iter()
                .enumerate()
                .map(|(index, head)| {
                    let overview = curves.remove(&(head.id, key.clone()));
                    let total = overview.as_ref().map_or(0, |o| o.points as usize);
                    Series {
                        label: head.label.clone(),
                        style: index,
                        points: overview.map(|o| o.curve).unwrap_or_default(),
                        total,
                    }
                })
                .collect();
            chart::line_chart(key, "step", key, series)
        })
        .collect();

    let metric_choices: Vec<String> = by_key.keys().cloned().collect();
    let chosen_metric = query_value(query, "metric")
        .filter(|key| by_key.contains_key(key))
        .or_else(|| ["val_accuracy", "accuracy"].into_iter().find(|k| by_key.contains_key(*k)).map(str::to_owned))
        .or_else(|| metric_choices.first().cloned())
        .unwrap_or_default();
    let mut dimensions: Vec<Dimension> = differing
        .iter()
        .map(|key| Dimension {
            name: (*key).clone(),
            values: flat.iter().map(|params| params.get(*key).cloned()).collect(),
        })
        .collect();
    if let Some(values) = by_key.get(&chosen_metric) {
        dimensions.push(Dimension {
            name: chosen_metric.clone(),
            values: values.iter().map(|v| v.map(Value::from)).collect(),
        });
    }
    let labels: Vec<String> = heads.iter().map(|head| head.label.clone()).collect();
    let parallel = chart::parallel_chart(&format!("Params against {chosen_metric}"), &labels, dimensions);

    let run_list = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
    let differences_link = format!(
        "/compare?{}",
        serde_urlencoded::to_string([
            ("runs", run_list.clone()),
            ("diff", if only_differences { "0" } else { "1" }.to_owned()),
            ("metric", chosen_metric.clone()),
        ])
        .unwrap_or_default()
    );
    let page = ComparePage {
        nav: Nav::of(&who),
        runs: heads,
        params,
        only_differences,
        differences_link,
        metrics,
        charts,
        parallel,
        chosen_metric,
        metric_choices,
        run_list,
        error: None,
    };
    html(StatusCode::OK, &page)
}

/// The curves of `keys` for runs `ids` as charts draw them: from the overview cache where it
/// holds as many points as the run has, rebuilt (and cached) from every point otherwise.
async fn overviews(
    state: &AppState,
    summaries: &[Summary],
    ids: &[i64],
    keys: &[String],
) -> Result<HashMap<(i64, String), Overview>, PageError> {
    let mut cached = store::metrics::overviews(&state.pool, ids, keys).await?;
    let stale: Vec<(i64, String)> = summaries
        .iter()
        .filter(|s| keys.contains(&s.key))
        .filter(|s| cached.get(&(s.run_id, s.key.clone())).is_none_or(|o| o.points != s.points))
        .map(|s| (s.run_id, s.key.clone()))
        .collect();
    if stale.is_empty() {
        return Ok(cached);
    }
    let rebuilt: Vec<((i64, String), Overview)> = store::metrics::curves(&state.pool, &stale)
        .await?
        .into_iter()
        .map(|(series, points)| {
            let finite: Vec<(f64, f64)> =
                points.iter().copied().filter(|(x, y)| x.is_finite() && y.is_finite()).collect();
            (series, Overview { points: points.len() as i64, curve: downsample(&finite, MAX_POINTS) })
        })
        .collect();
    let saves = rebuilt
        .iter()
        .map(|((run_id, key), overview)| store::metrics::save_overview(&state.pool, *run_id, key, overview));
    futures_util::future::try_join_all(saves).await?;
    cached.extend(rebuilt);
    Ok(cached)
}

fn empty(who: &SessionUser, message: String) -> ComparePage {
    ComparePage {
        nav: Nav::of(who),
        runs: Vec::new(),
        params: Vec::new(),
        only_differences: false,
        differences_link: String::new(),
        metrics: Vec::new(),
        charts: Vec::new(),
        parallel: None,
        chosen_metric: String::new(),
        metric_choices: Vec::new(),
        run_list: String::new(),
        error: Some(message),
    }
}

/// Nested params as dotted keys (`fine_tune.epochs`), so each is one row.
fn flatten(params: &Value) -> BTreeMap<String, Value> {
    fn walk(prefix: &str, value: &Value, out: &mut BTreeMap<String, Value>) {
        match value {
            Value::Object(map) => {
                for (key, inner) in map {
                    let name = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                    walk(&name, inner, out);
                }
            }
            other => {
                out.insert(prefix.to_owned(), other.clone());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk("", params, &mut out);
    out
}

/// The column of the best value of a metric row, when at least two runs have differing values.
fn best(key: &str, values: &[Option<f64>]) -> Option<usize> {
    let present: Vec<(usize, f64)> =
        values.iter().enumerate().filter_map(|(i, v)| v.filter(|v| !v.is_nan()).map(|v| (i, v))).collect();
    if present.len() < 2 || present.windows(2).all(|w| w[0].1 == w[1].1) {
        return None;
    }
    let higher = higher_is_better(key);
    present.into_iter().reduce(|a, b| if (b.1 > a.1) == higher && b.1 != a.1 { b } else { a }).map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_come_from_commas_or_repeats_in_order_without_repeats() {
        assert_eq!(run_ids("runs=3,1&runs=2&runs=3").expect("ids"), [3, 1, 2]);
        assert_eq!(run_ids("runs=%233%2C%234").expect("ids"), [3, 4]);
        assert!(run_ids("runs=1").expect_err("one").contains("pick 2 to 50"));
        assert!(run_ids("runs=1,x").expect_err("bad").contains("`x` is not a run id"));
        let many = (1..=51).map(|i| i.to_string()).collect::<Vec<_>>().join(",");
        assert!(run_ids(&format!("runs={many}")).is_err());
    }

    #[test]
    fn the_best_value_depends_on_the_metric() {
        assert_eq!(best("val_accuracy", &[Some(0.9), None, Some(0.95)]), Some(2));
        assert_eq!(best("val_loss", &[Some(0.3), Some(0.1), Some(0.2)]), Some(1));
        assert_eq!(best("val_loss", &[Some(0.3), Some(0.3)]), None, "no best among equals");
        assert_eq!(best("val_loss", &[Some(0.3), None]), None);
        assert_eq!(best("val_loss", &[Some(f64::NAN), Some(0.3), Some(0.4)]), Some(1), "NaN never wins");
    }

    #[test]
    fn nested_params_become_dotted_rows() {
        let flat = flatten(&serde_json::json!({"epochs": 2, "fine_tune": {"epochs": 1, "learning_rate": 0.001}}));
        assert_eq!(flat.keys().collect::<Vec<_>>(), ["epochs", "fine_tune.epochs", "fine_tune.learning_rate"]);
    }
}
