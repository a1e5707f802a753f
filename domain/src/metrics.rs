//! What metric keys mean for ranking runs.

/// Whether a larger value of `key` is better: accuracies, precision, recall and throughput
/// are; losses, errors, sizes, latencies and durations are not.
pub fn higher_is_better(key: &str) -> bool {
    const LOWER_IS_BETTER: &[&str] = &["loss", "entropy", "mse", "error", "bytes", "latency", "seconds", "parameters"];
    let key = key.to_ascii_lowercase();
    !LOWER_IS_BETTER.iter().any(|word| key.contains(word))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accuracy_is_better_high_and_losses_sizes_and_latencies_low() {
        for key in ["val_accuracy", "accuracy", "recall/3", "samples_per_second", "noise_0.3/accuracy"] {
            assert!(higher_is_better(key), "{key}");
        }
        for key in ["val_loss", "cross_entropy", "mse", "model_bytes", "latency_ms/batch_1/median", "epoch_seconds"] {
            assert!(!higher_is_better(key), "{key}");
        }
    }
}
