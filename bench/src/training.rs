//! Training throughput: a train run through all of Cairn (API, scheduler, Redis, a worker
//! process writing metrics, heartbeats and checkpoints) against the PyTorch eager reference
//! script, on the same MNIST split, batch size, epochs, thread count and torch, alternating.
//! Both time the training loop only (the reference's own definition); accuracy is measured
//! on the same last 2,000 images.
use crate::{Options, Row, stack::Stack, stats::Summary};
use anyhow::{Context, bail};
use serde_json::{Value, json};
use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

const THREADS: usize = 2;
const BATCH_SIZE: u32 = 64;
const TRAIN: u32 = 8_000;
const TEST: u32 = 2_000;

/// One measured training: samples per second over its epochs and the final accuracy.
struct Trained {
    samples_per_second: f64,
    accuracy: f64,
}

pub async fn run(options: &Options) -> anyhow::Result<Vec<Row>> {
    let (epochs, repetitions) = if options.quick { (1, 1) } else { (2, 5) };
    let data = data_dir().join("mnist");
    let reference = PathBuf::from(
        std::env::var("CAIRN_REFERENCE_SCRIPT").unwrap_or_else(|_| "../shared/bench/pytorch_reference.py".into()),
    );
    if !reference.exists() || !data.exists() {
        bail!("the training benchmark needs {} and {}", reference.display(), data.display());
    }
    let python = std::env::var("CAIRN_TORCH_PYTHON")
        .context("CAIRN_TORCH_PYTHON: the python of the torch environment (./dev sets it)")?;

    let mut stack = Stack::new("training").await?;
    let result = async {
        stack.start_api().await?;
        stack.start_scheduler()?;
        let trainer = stack.start_trainer(THREADS)?;
        let experiment = stack.create_experiment("training").await?;
        let (mut cairn, mut pytorch) = (Vec::new(), Vec::new());
        let mut peak_rss = 0;
        for round in 0..repetitions {
            eprintln!("    round {} of {repetitions}: Cairn, then PyTorch", round + 1);
            cairn.push(train_with_cairn(&stack, experiment, epochs).await?);
            peak_rss = peak_rss.max(crate::stack::peak_rss_bytes(trainer).unwrap_or(0));
            pytorch.push(train_with_pytorch(&python, &reference, &data, epochs)?);
        }
        anyhow::Ok((cairn, pytorch, peak_rss))
    }
    .await;
    stack.close().await?;
    let (cairn, pytorch, peak_rss) = result?;

    let speed = |runs: &[Trained]| Summary::of(&runs.iter().map(|r| r.samples_per_second).collect::<Vec<_>>());
    let (cairn_speed, pytorch_speed) = (speed(&cairn).context("no runs")?, speed(&pytorch).context("no runs")?);
    let accuracy = |runs: &[Trained]| runs.iter().map(|r| r.accuracy).sum::<f64>() / runs.len() as f64;
    let setting = format!("MNIST {TRAIN} train / {TEST} test, batch {BATCH_SIZE}, {epochs} epochs, {THREADS} threads");
    Ok(vec![
        Row {
            name: format!("Training throughput ({setting})"),
            value: cairn_speed.median,
            unit: "samples/s".into(),
            comparison_label: "PyTorch eager reference, samples/s".into(),
            comparison: Some(pytorch_speed.median),
            ratio: Some(cairn_speed.median / pytorch_speed.median),
            detail: format!(
                "Cairn {:.0}..{:.0}, PyTorch {:.0}..{:.0} samples/s, {} alternating runs each; final accuracy Cairn {:.2}%, PyTorch {:.2}%",
                cairn_speed.min,
                cairn_speed.max,
                pytorch_speed.min,
                pytorch_speed.max,
                cairn_speed.samples,
                100.0 * accuracy(&cairn),
                100.0 * accuracy(&pytorch)
            ),
            summary: Some(cairn_speed),
        },
        Row {
            name: "Memory: trainer peak resident during training".into(),
            value: peak_rss as f64 / (1 << 20) as f64,
            unit: "MiB".into(),
            comparison_label: "none (libtorch's own footprint is most of it)".into(),
            comparison: None,
            ratio: None,
            detail: format!("VmHWM of the worker process over {} training runs", cairn.len()),
            summary: None,
        },
    ])
}

fn data_dir() -> PathBuf {
    PathBuf::from(std::env::var("CAIRN_DATA_DIR").unwrap_or_else(|_| "../shared/data".into()))
}

async fn train_with_cairn(stack: &Stack, experiment: i64, epochs: u32) -> anyhow::Result<Trained> {
    let client = stack.client();
    let body = json!({"kind": "train", "params": {
        "dataset": "mnist", "train_range": [0, TRAIN], "validation_range": [TRAIN, TRAIN + TEST],
        "epochs": epochs, "batch_size": BATCH_SIZE, "learning_rate": 0.001, "seed": 0
    }});
    let id = stack.submit(experiment, &body).await?;
    let deadline = Instant::now() + Duration::from_secs(1800);
    loop {
        let run: Value = client.get(stack.url(&format!("/api/v1/runs/{id}"))).send().await?.json().await?;
        match run["status"].as_str() {
            Some("succeeded") => break,
            Some("failed" | "cancelled") => bail!("the training run ended {}: {}", run["status"], run["error"]),
            _ if Instant::now() > deadline => bail!("the training run did not finish"),
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    let metrics: Value = client.get(stack.url(&format!("/api/v1/runs/{id}/metrics"))).send().await?.json().await?;
    let values = |key: &str| -> Vec<f64> {
        metrics["series"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| s["key"] == key)
            .flat_map(|s| s["points"].as_array().into_iter().flatten().filter_map(|p| p["value"].as_f64()))
            .collect()
    };
    let seconds: f64 = values("epoch_seconds").iter().sum();
    let accuracy = values("val_accuracy").last().copied().context("no validation accuracy")?;
    Ok(Trained { samples_per_second: f64::from(TRAIN * epochs) / seconds, accuracy })
}

fn train_with_pytorch(python: &str, script: &Path, data: &Path, epochs: u32) -> anyhow::Result<Trained> {
    let output = std::process::Command::new(python)
        .arg(script)
        .args(["--mnist", &data.to_string_lossy()])
        .args(["--train", &TRAIN.to_string(), "--test", &TEST.to_string()])
        .args(["--epochs", &epochs.to_string(), "--batch-size", &BATCH_SIZE.to_string()])
        .args(["--threads", &THREADS.to_string(), "--seed", "0"])
        .stderr(std::process::Stdio::null())
        .output()
        .context("running the PyTorch reference")?;
    if !output.status.success() {
        bail!("the PyTorch reference failed: {}", String::from_utf8_lossy(&output.stdout));
    }
    let line = String::from_utf8_lossy(&output.stdout);
    let result: Value =
        serde_json::from_str(line.lines().last().unwrap_or_default()).context("reading the reference's JSON line")?;
    Ok(Trained {
        samples_per_second: result["train_samples_per_s"].as_f64().context("train_samples_per_s")?,
        accuracy: result["test_accuracy"].as_f64().context("test_accuracy")?,
    })
}
