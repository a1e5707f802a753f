//! `cairn-bench` (run it through `./dev bench`): Cairn's speed beside what it compares with,
//! each pair measured in the same run, each benchmark in a database of its own that is removed
//! afterwards. Prints one table (or, with `--json`, one JSON object); a full run also writes
//! it to `BENCHMARKS.md` with the date, machine and versions. These are measurements, not
//! tests: nothing here fails because a figure is slow.
//!
//!   cairn-bench [--quick] [--json] [--only NAME,...]
//!
//! Names: training, ingest, queue, dashboard, load (load also measures memory), sweep.
mod dashboard;
mod ingest;
mod load;
mod queue;
mod stack;
mod stats;
mod sweep;
mod training;

use anyhow::bail;
use serde::Serialize;
use stats::Summary;

const BENCHMARKS: &[&str] = &["training", "ingest", "queue", "dashboard", "load", "sweep"];

pub struct Options {
    /// Fewer repetitions and shorter runs: under 5 minutes, for development.
    pub quick: bool,
    pub json: bool,
    pub only: Vec<String>,
}

impl Options {
    fn parse() -> anyhow::Result<Self> {
        let mut options = Self { quick: false, json: false, only: Vec::new() };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--quick" => options.quick = true,
                "--json" => options.json = true,
                "--only" => {
                    let names = args.next().unwrap_or_default();
                    options.only =
                        names.split(',').map(str::trim).filter(|n| !n.is_empty()).map(str::to_owned).collect();
                    if let Some(unknown) = options.only.iter().find(|n| !BENCHMARKS.contains(&n.as_str())) {
                        bail!("--only: unknown benchmark `{unknown}`; expected some of {}", BENCHMARKS.join(", "));
                    }
                }
                other => bail!("unknown argument `{other}`; expected --quick, --json or --only NAME,..."),
            }
        }
        Ok(options)
    }

    fn wants(&self, name: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|n| n == name)
    }
}

/// One line of the table: Cairn's figure, what it is compared with, and their ratio (see
/// `RATIOS`).
#[derive(Debug, Serialize)]
pub struct Row {
    pub name: String,
    pub value: f64,
    pub unit: String,
    pub comparison_label: String,
    pub comparison: Option<f64>,
    pub ratio: Option<f64>,
    /// Spread and repetitions, in words.
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<Summary>,
}

impl Row {
    /// A latency in milliseconds against a target for its p95.
    pub fn timing(name: &str, summary: Summary, target_ms: f64) -> Self {
        Self {
            name: name.to_owned(),
            value: summary.median,
            unit: "ms (median)".into(),
            comparison_label: format!("target: p95 under {target_ms} ms"),
            comparison: Some(target_ms),
            ratio: Some(target_ms / summary.p95),
            detail: format!(
                "p95 {:.1} ms, min {:.1}, max {:.1}, {} requests",
                summary.p95, summary.min, summary.max, summary.samples
            ),
            summary: Some(summary),
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = Options::parse()?;
    let mut rows = Vec::new();
    if options.wants("training") {
        eprintln!("==> training throughput against PyTorch eager");
        rows.extend(training::run(&options).await?);
    }
    if options.wants("ingest") {
        eprintln!("==> metric ingest against COPY");
        rows.extend(ingest::run(&options).await?);
    }
    if options.wants("queue") {
        eprintln!("==> queue latency and throughput");
        rows.extend(queue::run(&options).await?);
    }
    if options.wants("dashboard") {
        eprintln!("==> dashboard render times");
        rows.extend(dashboard::run(&options).await?);
    }
    if options.wants("load") {
        eprintln!("==> the API under load");
        rows.extend(load::run(&options).await?);
    }
    if options.wants("sweep") {
        eprintln!("==> a 20-trial sweep with ASHA");
        rows.extend(sweep::run(&options).await?);
    }
    let table = markdown_table(&rows);
    if options.json {
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "quick": options.quick, "rows": rows }))?);
    } else {
        println!("{table}\n{RATIOS}");
    }
    if !options.quick && options.only.is_empty() {
        std::fs::write("BENCHMARKS.md", benchmarks_file(&table))?;
        eprintln!("==> wrote BENCHMARKS.md");
    }
    Ok(())
}

/// How to read the ratio column.
const RATIOS: &str = "Ratio: for a speed, Cairn's over the comparison's; for a latency, the target's over Cairn's. \
Above 1, Cairn is faster than what it is compared with; ingest's target is a ratio above 0.5 (within 2x of COPY). \
For the sweep, the epochs its trials would train without early stopping over those they trained.";

fn markdown_table(rows: &[Row]) -> String {
    let mut table = String::from("| Benchmark | Cairn | Compared with | Ratio | Spread |\n|---|---|---|---|---|\n");
    for row in rows {
        let comparison = match row.comparison {
            Some(value) => format!("{} ({})", number(value), row.comparison_label),
            None => row.comparison_label.clone(),
        };
        let ratio = row.ratio.map_or_else(|| "–".to_owned(), |r| format!("{r:.2}"));
        table.push_str(&format!(
            "| {} | {} {} | {} | {} | {} |\n",
            row.name,
            number(row.value),
            row.unit,
            comparison,
            ratio,
            row.detail
        ));
    }
    table
}

fn number(value: f64) -> String {
    if value >= 100.0 { format!("{value:.0}") } else { format!("{value:.2}") }
}

/// `BENCHMARKS.md`: the table with when, where and with what it was measured.
fn benchmarks_file(table: &str) -> String {
    format!(
        "# Benchmarks\n\nThe latest full `./dev bench`, measured {} on {}.\n\n{}\n{table}\n{RATIOS}\n\nEach figure and its comparison were measured in the same run. Re-run with `./dev bench` (about 5 minutes) or `./dev bench --quick`.\n",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
        machine(),
        versions(),
    )
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "an unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let memory_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            info.lines().next().and_then(|l| l.split_whitespace().nth(1)).and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    format!("{cpu}, {cores} cores, {memory_gib:.0} GiB")
}

fn versions() -> String {
    let output = |program: &str, args: &[&str]| {
        std::process::Command::new(program)
            .args(args)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or_default().trim().to_owned())
            .filter(|text| !text.is_empty())
            .unwrap_or_else(|| "unknown".into())
    };
    let torch = std::env::var("CAIRN_TORCH_PYTHON")
        .map(|python| output(&python, &["-c", "import torch; print(torch.__version__)"]))
        .unwrap_or_else(|_| "unknown".into());
    format!(
        "Versions: Cairn {}, torch {torch}, {}, {}, {}.\n",
        env!("CARGO_PKG_VERSION"),
        output("psql", &["--version"]),
        output("redis-server", &["--version"]),
        output("rustc", &["--version"]),
    )
}
