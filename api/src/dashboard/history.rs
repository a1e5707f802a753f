//! `/history`: every run of the user's teams across experiments, for managers. Filtered by
//! date range, status, kind, experiment and submitter (plus the runs table's own filter),
//! with totals over everything that matches, and `/history.csv`: the same rows and columns.
use super::{
    pages::html,
    table::{TableParams, TableState, TableView},
    view::{Nav, PageError},
};
use crate::{
    auth::SessionUser,
    filter::{self, Clause, Field},
    startup::AppState,
    store::{self, table::TableQuery},
};
use actix_web::{HttpResponse, http::StatusCode, web};
use askama::Template;
use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;

/// The most rows one CSV export holds.
pub const MAX_EXPORT_ROWS: i64 = 100_000;

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct HistoryParams {
    /// Dates as `YYYY-MM-DD`, UTC; `to` is inclusive.
    pub from: String,
    pub to: String,
    pub status: String,
    pub kind: String,
    pub experiment: String,
    pub submitter: String,
    #[serde(flatten)]
    pub table: TableParams,
}

#[derive(Template)]
#[template(path = "history.html")]
pub struct HistoryPage {
    pub nav: Nav,
    pub form: HistoryParams,
    pub errors: Vec<String>,
    pub experiments: Vec<(i64, String)>,
    pub submitters: Vec<(i64, String)>,
    pub statuses: Vec<&'static str>,
    pub kinds: Vec<&'static str>,
    pub table: TableView,
    pub table_hidden: Vec<(String, String)>,
    pub metric_keys: Vec<String>,
    pub totals: TotalsView,
    pub csv_link: String,
}

pub struct TotalsView {
    pub runs: i64,
    pub success_rate: String,
    pub hours_by_device: Vec<(String, String)>,
}

/// The history filters, checked: what the table query needs, or the errors to show.
struct Selection {
    table: TableState,
    clauses: Vec<Clause>,
    experiment_id: Option<i64>,
    submitted_by: Option<i64>,
    created_from: Option<DateTime<Utc>>,
    created_before: Option<DateTime<Utc>>,
    errors: Vec<String>,
}

impl Selection {
    fn read(params: &HistoryParams) -> Self {
        let mut errors = Vec::new();
        let pairs: Vec<(String, String)> = [
            ("from", &params.from),
            ("to", &params.to),
            ("status", &params.status),
            ("kind", &params.kind),
            ("experiment", &params.experiment),
            ("submitter", &params.submitter),
        ]
        .into_iter()
        .filter(|(_, value)| !value.trim().is_empty())
        .map(|(name, value)| (name.to_owned(), value.trim().to_owned()))
        .collect();
        let table = TableState::from_params("/history", pairs, &params.table);
        errors.extend(table.filter_error.clone());
        let mut date = |field: &str, text: &str| -> Option<NaiveDate> {
            let text = text.trim();
            if text.is_empty() {
                return None;
            }
            NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .map_err(|_| errors.push(format!("{field}: `{text}` is not a date (YYYY-MM-DD)")))
                .ok()
        };
        let midnight = |day: NaiveDate| day.and_hms_opt(0, 0, 0).map(|at| at.and_utc());
        let created_from = date("from", &params.from).and_then(midnight);
        let created_before = date("to", &params.to).and_then(|day| day.succ_opt()).and_then(midnight);
        let mut id = |field: &str, text: &str| -> Option<i64> {
            let text = text.trim();
            if text.is_empty() {
                return None;
            }
            text.parse().map_err(|_| errors.push(format!("{field}: `{text}` is not an id"))).ok()
        };
        let experiment_id = id("experiment", &params.experiment);
        let submitted_by = id("submitter", &params.submitter);
        let mut clauses = table.clauses.clone();
        for (field, name, text) in [(Field::Status, "status", &params.status), (Field::Kind, "kind", &params.kind)] {
            let text = text.trim();
            if text.is_empty() {
                continue;
            }
            match filter::field_clause(field, text) {
                Ok(clause) => clauses.push(clause),
                Err(message) => errors.push(format!("{name}: {message}")),
            }
        }
        Self { table, clauses, experiment_id, submitted_by, created_from, created_before, errors }
    }

    fn query(&self, user_id: i64) -> TableQuery<'_> {
        TableQuery {
            clauses: &self.clauses,
            experiment_id: self.experiment_id,
            submitted_by: self.submitted_by,
            created_from: self.created_from,
            created_before: self.created_before,
            ..self.table.query(user_id)
        }
    }
}

pub async fn history_page(
    state: web::Data<AppState>,
    who: SessionUser,
    params: web::Query<HistoryParams>,
) -> Result<HttpResponse, PageError> {
    let form = params.into_inner();
    let selection = Selection::read(&form);
    let query = selection.query(who.user_id);
    let page = store::table::page(&state.pool, &query).await?;
    let totals = store::table::totals(&state.pool, &query).await?;
    let ids: Vec<i64> = page.runs.iter().map(|line| line.run.id).collect();
    let values = store::table::metric_values(&state.pool, &ids, &selection.table.metrics).await?;
    let table = selection.table.view(page, &values, true);
    let csv_link = format!("/history.csv?{}", csv_query(&form));
    let (experiments, submitters) = choices(&state, who.user_id).await?;
    let page = HistoryPage {
        nav: Nav::of(&who),
        errors: selection.errors.clone(),
        table_hidden: selection.table.extra().to_vec(),
        metric_keys: Vec::new(),
        totals: TotalsView {
            runs: totals.runs,
            success_rate: if totals.finished > 0 {
                format!(
                    "{:.1}% of {} finished",
                    100.0 * totals.succeeded as f64 / totals.finished as f64,
                    totals.finished
                )
            } else {
                "no finished runs".to_owned()
            },
            hours_by_device: totals
                .hours_by_device
                .into_iter()
                .map(|(device, hours)| (device, format!("{hours:.2}")))
                .collect(),
        },
        experiments,
        submitters,
        statuses: cairn_domain::RunStatus::ALL.iter().map(|s| s.as_str()).collect(),
        kinds: cairn_domain::RunKind::ALL.iter().map(|k| k.as_str()).collect(),
        form,
        table,
        csv_link,
    };
    html(if selection.errors.is_empty() { StatusCode::OK } else { StatusCode::BAD_REQUEST }, &page)
}

/// Every run the history page's filters match (not only its page), with its columns.
pub async fn history_csv(
    state: web::Data<AppState>,
    who: SessionUser,
    params: web::Query<HistoryParams>,
) -> Result<HttpResponse, PageError> {
    let selection = Selection::read(&params);
    if let Some(error) = selection.errors.first() {
        return Ok(HttpResponse::BadRequest().content_type("text/plain; charset=utf-8").body(error.clone()));
    }
    let query = TableQuery { offset: 0, limit: MAX_EXPORT_ROWS, ..selection.query(who.user_id) };
    let page = store::table::page(&state.pool, &query).await?;
    let ids: Vec<i64> = page.runs.iter().map(|line| line.run.id).collect();
    let values = store::table::metric_values(&state.pool, &ids, &selection.table.metrics).await?;
    let view = selection.table.view(page, &values, true);
    let mut csv = String::new();
    let header: Vec<&str> = ["id", "name", "status", "kind", "created"]
        .into_iter()
        .chain(view.data_columns().iter().map(|column| column.label.as_str()))
        .collect();
    push_record(&mut csv, header.iter().copied());
    for row in &view.rows {
        let id = row.id.to_string();
        let fixed = [id.as_str(), row.name.as_str(), row.status.as_str(), row.kind.as_str(), row.created.as_str()];
        push_record(&mut csv, fixed.into_iter().chain(row.cells.iter().map(String::as_str)));
    }
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header(("content-disposition", "attachment; filename=\"cairn-history.csv\""))
        .body(csv))
}

/// One CSV line (RFC 4180 quoting). A cell starting with `=`, `+`, `-` or `@` gets a leading
/// quote mark so a spreadsheet shows it rather than runs it as a formula.
fn push_record<'a>(csv: &mut String, cells: impl Iterator<Item = &'a str>) {
    for (index, cell) in cells.enumerate() {
        if index > 0 {
            csv.push(',');
        }
        let guarded = if cell.starts_with(['=', '+', '@']) || (cell.starts_with('-') && cell.parse::<f64>().is_err()) {
            format!("'{cell}")
        } else {
            cell.to_owned()
        };
        if guarded.contains([',', '"', '\n', '\r']) {
            csv.push('"');
            csv.push_str(&guarded.replace('"', "\"\""));
            csv.push('"');
        } else {
            csv.push_str(&guarded);
        }
    }
    csv.push_str("\r\n");
}

fn csv_query(form: &HistoryParams) -> String {
    let table = &form.table;
    let pairs = [
        ("from", &form.from),
        ("to", &form.to),
        ("status", &form.status),
        ("kind", &form.kind),
        ("experiment", &form.experiment),
        ("submitter", &form.submitter),
        ("filter", &table.filter),
        ("sort", &table.sort),
        ("order", &table.order),
        ("metrics", &table.metrics),
    ];
    let kept: Vec<(&str, &String)> = pairs.into_iter().filter(|(_, value)| !value.is_empty()).collect();
    serde_urlencoded::to_string(kept).unwrap_or_default()
}

/// The experiments and submitters of the user's teams, for the filter's choices.
async fn choices(state: &AppState, user_id: i64) -> Result<(Vec<(i64, String)>, Vec<(i64, String)>), PageError> {
    let experiments = sqlx::query_as(
        "SELECT e.id, e.name FROM experiments e JOIN memberships m ON m.team_id = e.team_id WHERE m.user_id = $1 ORDER BY e.name",
    )
    .bind(user_id)
    .fetch_all(&state.pool)
    .await?;
    let submitters = sqlx::query_as(
        "SELECT DISTINCT u.id, u.name FROM users u JOIN memberships m ON m.user_id = u.id
         WHERE m.team_id IN (SELECT team_id FROM memberships WHERE user_id = $1) ORDER BY u.name",
    )
    .bind(user_id)
    .fetch_all(&state.pool)
    .await?;
    Ok((experiments, submitters))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_separators_and_defuses_formulas() {
        let mut csv = String::new();
        push_record(&mut csv, ["1", "a, b", "say \"hi\"", "=cmd()", "-0.5", "-x"].into_iter());
        assert_eq!(csv, "1,\"a, b\",\"say \"\"hi\"\"\",'=cmd(),-0.5,'-x\r\n");
    }

    #[test]
    fn dates_statuses_and_ids_are_checked_and_named() {
        let params = HistoryParams {
            from: "2026-13-01".into(),
            status: "done".into(),
            experiment: "x".into(),
            ..HistoryParams::default()
        };
        let selection = Selection::read(&params);
        assert_eq!(selection.errors.len(), 3, "{:?}", selection.errors);
        assert!(selection.errors[0].starts_with("from: `2026-13-01` is not a date"));
        assert!(selection.errors.iter().any(|e| e.starts_with("experiment:")));
        assert!(selection.errors.iter().any(|e| e.starts_with("status:") && e.contains("not a status")));
        let good = HistoryParams {
            from: "2026-12-01".into(),
            to: "2026-12-04".into(),
            kind: "train".into(),
            ..HistoryParams::default()
        };
        let selection = Selection::read(&good);
        assert!(selection.errors.is_empty());
        assert_eq!(
            selection.created_before.expect("to").to_rfc3339(),
            "2026-12-05T00:00:00+00:00",
            "`to` includes its day"
        );
        assert_eq!(selection.clauses.len(), 1);
    }
}
