//! Which failures are the run's own and which the infrastructure's. The run's own (invalid
//! input, bad data, a model error) would fail the same way again, so they end the run; the
//! infrastructure's (out of memory, Postgres unreachable, files that cannot be written) may
//! pass, so the attempt is retried under the retry policy.
use cairn_datasets::DatasetError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Not retried: the run fails with this message.
    Run(String),
    /// Retried with backoff until the policy's attempts are spent.
    Infrastructure(String),
}

impl Failure {
    pub fn of(err: &anyhow::Error) -> Self {
        let message = format!("{err:#}");
        if err.chain().any(|cause| cause.is::<DatasetError>()) {
            Self::Run(message)
        } else if err.chain().any(is_infrastructure) {
            Self::Infrastructure(message)
        } else {
            Self::Run(message)
        }
    }
}

fn is_infrastructure(cause: &(dyn std::error::Error + 'static)) -> bool {
    if cause.is::<sqlx::Error>() || cause.is::<std::io::Error>() {
        return true;
    }
    // libtorch reports allocation failures as errors whose text names them, on the CPU
    // ("can't allocate memory") as on CUDA ("out of memory").
    cause.downcast_ref::<tch::TchError>().is_some_and(|err| {
        let text = err.to_string();
        text.contains("out of memory") || text.contains("can't allocate memory")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind, Tensor};

    #[test]
    fn running_out_of_memory_is_the_infrastructure() {
        // 2^40 floats: 4 TiB, more than any machine that runs this test has.
        let err = Tensor::f_zeros([1 << 40], (Kind::Float, Device::Cpu)).expect_err("4 TiB cannot be allocated");
        let failure = Failure::of(&anyhow::Error::from(err).context("training epoch 1"));
        assert!(matches!(&failure, Failure::Infrastructure(m) if m.contains("allocate")), "{failure:?}");
    }

    #[test]
    fn a_model_error_is_the_run() {
        let a = Tensor::zeros([2, 3], (Kind::Float, Device::Cpu));
        let err = a.f_matmul(&a).expect_err("a 2x3 matrix cannot multiply a 2x3 matrix");
        assert!(matches!(Failure::of(&err.into()), Failure::Run(_)));
    }

    #[test]
    fn unwritable_files_and_postgres_errors_are_the_infrastructure() {
        let io = std::fs::create_dir_all("/proc/cairn-cannot-create-this").expect_err("/proc is read-only");
        assert!(matches!(Failure::of(&anyhow::Error::from(io).context("saving")), Failure::Infrastructure(_)));
        let postgres = sqlx::Error::PoolTimedOut;
        assert!(matches!(Failure::of(&postgres.into()), Failure::Infrastructure(_)));
    }

    #[test]
    fn bad_data_is_the_run_even_when_it_is_an_io_error() {
        let data = cairn_datasets::DataDir::new(std::env::temp_dir().join("cairn-no-such-data-dir"));
        let name = cairn_domain::DatasetName::parse("mnist").expect("a valid name");
        let err = data.len(&name).expect_err("the folder does not exist");
        assert!(matches!(Failure::of(&err.into()), Failure::Run(_)));
    }
}
