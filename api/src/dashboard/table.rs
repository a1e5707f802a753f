//! The runs table shared by an experiment's page and the history page: its state lives in the
//! URL (filter, sort, order, page, metric columns), so a view is a link to share.
use super::view::{plain, seconds, timestamp};
use crate::{
    filter,
    store::table::{SortKey, TablePage, TableQuery},
};
use serde::Deserialize;
use std::collections::HashMap;

pub const PAGE_SIZE: i64 = 50;
/// The params shown as columns: the ones sweeps vary and people sort by.
const PARAM_COLUMNS: &[&str] = &["dataset", "epochs", "batch_size", "learning_rate", "optimizer", "sparsity"];
/// Metric columns when the URL names none: validation accuracy of training, accuracy of
/// evaluations, and their losses.
const DEFAULT_METRICS: &[&str] = &["val_accuracy", "accuracy", "val_loss", "cross_entropy"];
const MAX_METRIC_COLUMNS: usize = 12;

/// The table's part of the query string. Numbers arrive as text so a hand-edited URL gets a
/// page, not a bare 400.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct TableParams {
    pub filter: String,
    pub sort: String,
    pub order: String,
    pub page: String,
    /// Comma-separated metric keys to show as columns.
    pub metrics: String,
}

/// What the table shows and how to link to other views of it.
pub struct TableState {
    /// The page's path, and query parameters of the page that are not the table's.
    base: String,
    extra: Vec<(String, String)>,
    pub filter: String,
    pub clauses: Vec<filter::Clause>,
    pub filter_error: Option<String>,
    pub sort: SortKey,
    pub descending: bool,
    pub page: i64,
    pub metrics: Vec<String>,
}

impl TableState {
    /// Reads the URL's table state. A bad filter is kept (to show it again, with its error)
    /// and filters nothing.
    pub fn from_params(base: &str, extra: Vec<(String, String)>, params: &TableParams) -> Self {
        let filter_text = params.filter.trim().to_owned();
        let (clauses, filter_error) = match filter::parse(&filter_text) {
            Ok(clauses) => (clauses, None),
            Err(err) => (Vec::new(), Some(format!("filter: {err}"))),
        };
        let metrics: Vec<String> = if params.metrics.trim().is_empty() {
            DEFAULT_METRICS.iter().map(|key| (*key).to_owned()).collect()
        } else {
            params
                .metrics
                .split(',')
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .take(MAX_METRIC_COLUMNS)
                .map(str::to_owned)
                .collect()
        };
        let sort = SortKey::parse(params.sort.trim()).unwrap_or(SortKey::Id);
        // Metrics read best high by default only for accuracy-like keys; ids newest first.
        let descending = match params.order.as_str() {
            "asc" => false,
            "desc" => true,
            _ => match &sort {
                SortKey::Metric(key) => cairn_domain::metrics::higher_is_better(key),
                SortKey::Id | SortKey::Duration => true,
                _ => false,
            },
        };
        Self {
            base: base.to_owned(),
            extra,
            filter: filter_text,
            clauses,
            filter_error,
            sort,
            descending,
            page: params.page.trim().parse::<i64>().unwrap_or(1).max(1),
            metrics,
        }
    }

    pub fn query<'a>(&'a self, user_id: i64) -> TableQuery<'a> {
        TableQuery {
            user_id,
            experiment_id: None,
            clauses: &self.clauses,
            submitted_by: None,
            created_from: None,
            created_before: None,
            sort: self.sort.clone(),
            descending: self.descending,
            offset: (self.page - 1) * PAGE_SIZE,
            limit: PAGE_SIZE,
        }
    }

    /// The page's own query parameters, which the table's links and filter form keep.
    pub fn extra(&self) -> &[(String, String)] {
        &self.extra
    }

    /// The URL of this view with some parameters changed.
    fn link(&self, sort: &SortKey, descending: bool, page: i64) -> String {
        let mut pairs: Vec<(&str, String)> = self.extra.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        if !self.filter.is_empty() {
            pairs.push(("filter", self.filter.clone()));
        }
        if *sort != SortKey::Id {
            pairs.push(("sort", sort.as_param()));
        }
        pairs.push(("order", if descending { "desc" } else { "asc" }.to_owned()));
        if page > 1 {
            pairs.push(("page", page.to_string()));
        }
        if self.metrics.iter().map(String::as_str).ne(DEFAULT_METRICS.iter().copied()) {
            pairs.push(("metrics", self.metrics.join(",")));
        }
        format!("{}?{}", self.base, serde_urlencoded::to_string(&pairs).unwrap_or_default())
    }

    /// A column header: sorts by it, and a second click reverses the order.
    fn column(&self, label: &str, key: SortKey, numeric: bool) -> Column {
        let active = self.sort == key;
        let descending = if active {
            !self.descending
        } else {
            match &key {
                SortKey::Metric(metric) => cairn_domain::metrics::higher_is_better(metric),
                _ => numeric,
            }
        };
        let mark = match (active, self.descending) {
            (false, _) => "",
            (true, true) => " ▼",
            (true, false) => " ▲",
        };
        Column { label: label.to_owned(), link: self.link(&key, descending, 1), mark, numeric }
    }

    /// The table for one page of runs, with `metric_values` by run and key.
    pub fn view(
        &self,
        page: TablePage,
        metric_values: &HashMap<(i64, String), f64>,
        show_experiment: bool,
    ) -> TableView {
        let mut columns = vec![
            self.column("Run", SortKey::Id, true),
            self.column("Status", SortKey::Status, false),
            self.column("Kind", SortKey::Kind, false),
        ];
        if show_experiment {
            columns.push(Column { label: "Experiment".into(), link: String::new(), mark: "", numeric: false });
            columns.push(Column { label: "Submitter".into(), link: String::new(), mark: "", numeric: false });
        }
        columns.extend(PARAM_COLUMNS.iter().map(|name| {
            self.column(name, SortKey::Param((*name).to_owned()), name != &"dataset" && name != &"optimizer")
        }));
        columns.extend(self.metrics.iter().map(|key| self.column(key, SortKey::Metric(key.clone()), true)));
        columns.push(self.column("Duration", SortKey::Duration, true));
        columns.push(self.column("Worker", SortKey::Worker, false));
        let rows = page
            .runs
            .iter()
            .map(|line| {
                let run = &line.run;
                let mut cells = Vec::with_capacity(columns.len());
                if show_experiment {
                    cells.push(line.experiment_name.clone());
                    cells.push(line.submitter.clone().unwrap_or_default());
                }
                cells.extend(PARAM_COLUMNS.iter().map(|name| run.params.get(*name).map(plain).unwrap_or_default()));
                cells.extend(self.metrics.iter().map(|key| {
                    metric_values.get(&(run.id, key.clone())).map(|v| super::view::number(*v)).unwrap_or_default()
                }));
                cells.push(run.duration_seconds().map(seconds).unwrap_or_default());
                cells.push(run.worker_id.clone().unwrap_or_default());
                TableLine {
                    id: run.id,
                    name: run.name.clone().unwrap_or_default(),
                    kind: run.kind.clone(),
                    parent: run.parent_run_id,
                    status: run.status.clone(),
                    live: run.status().is_some_and(|s| !s.is_finished()),
                    created: timestamp(&run.created_at),
                    cells,
                }
            })
            .collect();
        let pages = ((page.total + PAGE_SIZE - 1) / PAGE_SIZE).max(1);
        TableView {
            filter: self.filter.clone(),
            filter_error: self.filter_error.clone(),
            metrics: self.metrics.join(","),
            sort: if self.sort == SortKey::Id { String::new() } else { self.sort.as_param() },
            order: if self.descending { "desc" } else { "asc" },
            columns,
            rows,
            total: page.total,
            page: self.page,
            pages,
            previous: (self.page > 1).then(|| self.link(&self.sort, self.descending, self.page - 1)),
            next: (self.page < pages).then(|| self.link(&self.sort, self.descending, self.page + 1)),
        }
    }
}

pub struct Column {
    pub label: String,
    /// Empty for a column that does not sort.
    pub link: String,
    pub mark: &'static str,
    pub numeric: bool,
}

pub struct TableLine {
    pub id: i64,
    pub name: String,
    pub kind: String,
    pub parent: Option<i64>,
    pub status: String,
    /// Waiting, queued or running: the page refreshes this row.
    pub live: bool,
    pub created: String,
    /// The values of the columns after Run, Status and Kind.
    pub cells: Vec<String>,
}

pub struct TableView {
    pub filter: String,
    pub filter_error: Option<String>,
    pub metrics: String,
    pub sort: String,
    pub order: &'static str,
    pub columns: Vec<Column>,
    pub rows: Vec<TableLine>,
    pub total: i64,
    pub page: i64,
    pub pages: i64,
    pub previous: Option<String>,
    pub next: Option<String>,
}

impl TableView {
    /// The header cells after Run, Status and Kind, which the template draws itself.
    pub fn data_columns(&self) -> &[Column] {
        &self.columns[3..]
    }
}
