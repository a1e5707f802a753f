//! `cairn`: Cairn from a terminal or a script, over the REST API. It reads the API's address
//! from `CAIRN_URL` (default `http://127.0.0.1:8080`) and a token from `CAIRN_TOKEN`.
//!
//!   cairn submit EXPERIMENT FILE|-        submit a run or pipeline (JSON); prints the run ids
//!   cairn sweep EXPERIMENT FILE|-         submit a sweep (JSON); prints its id and trials
//!   cairn status RUN | --sweep SWEEP      one line per run or trial
//!   cairn wait RUN [--timeout SECONDS]    until the run ends; the exit code says how
//!   cairn cancel RUN | --sweep SWEEP      cancel a run, or a sweep's unfinished trials
//!   cairn compare RUN RUN...              params that differ and last metric values, side by side
//!   cairn export EXPERIMENT [--format csv|json]   every run with its params and last metrics
//!
//! Submissions carry a fresh `Idempotency-Key` and are retried on a network error, so a retry
//! never submits twice. `wait` exits 0 when the run succeeded, 1 when it failed, 2 when it was
//! cancelled or stopped early, 3 on a timeout; every other error exits 4.
use anyhow::{Context, bail};
use serde_json::{Value, json};
use std::{collections::BTreeMap, io::Read, process::ExitCode, time::Duration};

const USAGE: &str = "usage: cairn submit EXPERIMENT FILE|- | sweep EXPERIMENT FILE|- | status RUN | status --sweep SWEEP \
| wait RUN [--timeout SECONDS] | cancel RUN | cancel --sweep SWEEP | compare RUN RUN... \
| export EXPERIMENT [--format csv|json]";

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args).await {
        Ok(code) => code,
        Err(err) => {
            eprintln!("cairn: {err:#}");
            ExitCode::from(4)
        }
    }
}

async fn run(args: &[String]) -> anyhow::Result<ExitCode> {
    let api = Api::from_env()?;
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args[..] {
        ["submit", experiment, file] => {
            let created = api.post(&format!("/api/v1/experiments/{}/runs", id(experiment)?), read_json(file)?).await?;
            let mut ids = Vec::new();
            collect_ids(&created, &mut ids);
            println!("{}", ids.iter().map(i64::to_string).collect::<Vec<_>>().join(" "));
        }
        ["sweep", experiment, file] => {
            let created =
                api.post(&format!("/api/v1/experiments/{}/sweeps", id(experiment)?), read_json(file)?).await?;
            println!("sweep {}", created["sweep"]["id"]);
            for trial in created["trials"].as_array().into_iter().flatten() {
                println!(
                    "trial {} run {} {} {}",
                    trial["trial"],
                    trial["run_id"],
                    text(&trial["status"]),
                    trial["params"]
                );
            }
        }
        ["status", "--sweep", sweep] => {
            let report = api.get(&format!("/api/v1/sweeps/{}", id(sweep)?)).await?;
            println!("sweep {} {} {}", report["sweep"]["id"], text(&report["sweep"]["status"]), report["counts"]);
            for trial in report["trials"].as_array().into_iter().flatten() {
                println!(
                    "trial {} run {} {} {}={} {}",
                    trial["trial"],
                    trial["run_id"],
                    text(&trial["status"]),
                    text(&report["sweep"]["metric"]),
                    trial["value"],
                    trial["params"]
                );
            }
            if !report["best"].is_null() {
                println!(
                    "best trial {} run {} value {}",
                    report["best"]["trial"], report["best"]["run_id"], report["best"]["value"]
                );
            }
        }
        ["status", run] => {
            let run = api.get(&format!("/api/v1/runs/{}", id(run)?)).await?;
            println!("{}", run_line(&run));
        }
        ["wait", run] => return wait(&api, id(run)?, None).await,
        ["wait", run, "--timeout", seconds] => {
            let seconds: u64 = seconds.parse().context("--timeout takes whole seconds")?;
            return wait(&api, id(run)?, Some(Duration::from_secs(seconds))).await;
        }
        ["cancel", "--sweep", sweep] => {
            let cancelled = api.post(&format!("/api/v1/sweeps/{}/cancel", id(sweep)?), json!({})).await?;
            println!(
                "sweep {} cancelled: {} runs cancelled, {} running runs stopping",
                cancelled["sweep_id"], cancelled["cancelled_runs"], cancelled["stopping_runs"]
            );
        }
        ["cancel", run] => {
            let run = api.post(&format!("/api/v1/runs/{}/cancel", id(run)?), json!({})).await?;
            let stopping = if run["status"] == "running" { " (stops at its next step)" } else { "" };
            println!("{}{stopping}", run_line(&run));
        }
        ["compare", ref runs @ ..] if runs.len() >= 2 => compare(&api, runs).await?,
        ["export", experiment] => export(&api, id(experiment)?, "csv").await?,
        ["export", experiment, "--format", format @ ("csv" | "json")] => export(&api, id(experiment)?, format).await?,
        _ => bail!("{USAGE}"),
    }
    Ok(ExitCode::SUCCESS)
}

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    fn from_env() -> anyhow::Result<Self> {
        let base = std::env::var("CAIRN_URL").unwrap_or_else(|_| "http://127.0.0.1:8080".into());
        let token = std::env::var("CAIRN_TOKEN").context("CAIRN_TOKEN: an API token (`./dev token` prints one)")?;
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(reqwest::header::AUTHORIZATION, format!("Bearer {token}").parse().context("CAIRN_TOKEN")?);
        let http = reqwest::Client::builder().default_headers(headers).timeout(Duration::from_secs(60)).build()?;
        Ok(Self { base: base.trim_end_matches('/').to_owned(), http })
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        answer(self.http.get(format!("{}{path}", self.base)).send().await.with_context(|| format!("GET {path}"))?).await
    }

    /// Posts with one idempotency key for every try, so retrying after a lost answer is safe.
    async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let key = ulid::Ulid::generate().to_string();
        let mut pause = Duration::from_millis(200);
        for attempt in 1.. {
            let sent =
                self.http.post(format!("{}{path}", self.base)).header("idempotency-key", &key).json(&body).send().await;
            match sent {
                Ok(response) => return answer(response).await,
                Err(err) if attempt < 5 && (err.is_connect() || err.is_timeout()) => {
                    eprintln!("cairn: POST {path} failed ({err}); retrying");
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
                Err(err) => return Err(err).with_context(|| format!("POST {path}")),
            }
        }
        unreachable!("the loop returns")
    }
}

/// The JSON body of a success, or the API's error (`field: message`) as an error.
async fn answer(response: reqwest::Response) -> anyhow::Result<Value> {
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        let field = body["field"].as_str().map(|f| format!("{f}: ")).unwrap_or_default();
        bail!("{} {field}{}", status.as_u16(), body["message"].as_str().unwrap_or("(no message)"));
    }
    Ok(body)
}

fn id(text: &str) -> anyhow::Result<i64> {
    text.trim_start_matches('#').parse().with_context(|| format!("`{text}` is not an id"))
}

fn read_json(file: &str) -> anyhow::Result<Value> {
    let mut text = String::new();
    if file == "-" {
        std::io::stdin().read_to_string(&mut text).context("reading standard input")?;
    } else {
        text = std::fs::read_to_string(file).with_context(|| format!("reading {file}"))?;
    }
    serde_json::from_str(&text).with_context(|| format!("{file} is not JSON"))
}

fn collect_ids(created: &Value, ids: &mut Vec<i64>) {
    ids.extend(created["id"].as_i64());
    for child in created["children"].as_array().into_iter().flatten() {
        collect_ids(child, ids);
    }
}

fn text(value: &Value) -> String {
    value.as_str().map_or_else(|| value.to_string(), str::to_owned)
}

fn run_line(run: &Value) -> String {
    let error = run["error"].as_str().map(|e| format!(" ({e})")).unwrap_or_default();
    format!("run {} {} {} attempt {}{error}", run["id"], text(&run["kind"]), text(&run["status"]), run["attempt"])
}

async fn wait(api: &Api, run: i64, timeout: Option<Duration>) -> anyhow::Result<ExitCode> {
    let started = std::time::Instant::now();
    loop {
        let current = api.get(&format!("/api/v1/runs/{run}")).await?;
        let code = match current["status"].as_str() {
            Some("succeeded") => Some(0),
            Some("failed") => Some(1),
            Some("cancelled" | "stopped_early") => Some(2),
            _ => None,
        };
        if let Some(code) = code {
            println!("{}", run_line(&current));
            return Ok(ExitCode::from(code));
        }
        if timeout.is_some_and(|timeout| started.elapsed() > timeout) {
            println!("{} (still going)", run_line(&current));
            return Ok(ExitCode::from(3));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Last value of every metric of a run.
async fn last_values(api: &Api, run: i64) -> anyhow::Result<BTreeMap<String, f64>> {
    let metrics = api.get(&format!("/api/v1/runs/{run}/metrics")).await?;
    Ok(metrics["series"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| Some((s["key"].as_str()?.to_owned(), s["points"].as_array()?.last()?["value"].as_f64()?)))
        .collect())
}

async fn compare(api: &Api, runs: &[&str]) -> anyhow::Result<()> {
    let mut columns = Vec::new();
    for run in runs {
        let run = id(run)?;
        let details = api.get(&format!("/api/v1/runs/{run}")).await?;
        columns.push((run, details["params"].clone(), last_values(api, run).await?));
    }
    let header: Vec<String> = columns.iter().map(|(run, ..)| format!("run {run}")).collect();
    println!("{:<32}\t{}", "", header.join("\t"));
    let params: std::collections::BTreeSet<String> = columns
        .iter()
        .flat_map(|(_, params, _)| params.as_object().into_iter().flatten().map(|(k, _)| k.clone()))
        .collect();
    for key in params {
        let values: Vec<String> = columns.iter().map(|(_, params, _)| text(&params[&key])).collect();
        if values.windows(2).any(|w| w[0] != w[1]) {
            println!("{:<32}\t{}", format!("params.{key}"), values.join("\t"));
        }
    }
    let keys: std::collections::BTreeSet<&String> = columns.iter().flat_map(|(.., metrics)| metrics.keys()).collect();
    for key in keys {
        let values: Vec<String> = columns
            .iter()
            .map(|(.., metrics)| metrics.get(key).map_or_else(|| "-".into(), |v| format!("{v:.6}")))
            .collect();
        println!("{key:<32}\t{}", values.join("\t"));
    }
    Ok(())
}

async fn export(api: &Api, experiment: i64, format: &str) -> anyhow::Result<()> {
    let mut runs = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page_cursor = cursor.as_deref().map(|c| format!("&cursor={c}")).unwrap_or_default();
        let page = api.get(&format!("/api/v1/runs?experiment={experiment}&limit=500{page_cursor}")).await?;
        runs.extend(page["runs"].as_array().cloned().unwrap_or_default());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    let mut rows = Vec::with_capacity(runs.len());
    for run in &runs {
        let id = run["id"].as_i64().context("a run without an id")?;
        rows.push((run, last_values(api, id).await?));
    }
    if format == "json" {
        let rows: Vec<Value> = rows.iter().map(|(run, metrics)| json!({"run": run, "metrics": metrics})).collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    let params: std::collections::BTreeSet<String> =
        runs.iter().flat_map(|run| run["params"].as_object().into_iter().flatten().map(|(k, _)| k.clone())).collect();
    let metrics: std::collections::BTreeSet<String> = rows.iter().flat_map(|(_, m)| m.keys().cloned()).collect();
    let mut header = vec!["id".to_owned(), "name".into(), "kind".into(), "status".into(), "created_at".into()];
    header.extend(params.iter().map(|p| format!("params.{p}")));
    header.extend(metrics.iter().cloned());
    println!("{}", header.iter().map(|h| csv_cell(h)).collect::<Vec<_>>().join(","));
    for (run, values) in &rows {
        let mut cells: Vec<String> = ["id", "name", "kind", "status", "created_at"]
            .iter()
            .map(|k| if run[*k].is_null() { String::new() } else { text(&run[*k]) })
            .collect();
        cells.extend(
            params.iter().map(|p| if run["params"][p].is_null() { String::new() } else { text(&run["params"][p]) }),
        );
        cells.extend(metrics.iter().map(|m| values.get(m).map(f64::to_string).unwrap_or_default()));
        println!("{}", cells.iter().map(|c| csv_cell(c)).collect::<Vec<_>>().join(","));
    }
    Ok(())
}

fn csv_cell(cell: &str) -> String {
    if cell.contains([',', '"', '\n']) { format!("\"{}\"", cell.replace('"', "\"\"")) } else { cell.to_owned() }
}
