//! The classic MNIST CNN: conv32 3x3, relu, maxpool 2, conv64 3x3, relu, maxpool 2,
//! dense 64, relu, dense 10. Structured pruning makes narrower copies of it.
use cairn_datasets::{IMAGE_SIDE, Samples};
use tch::{Device, Kind, Tensor, nn, nn::ModuleT};

/// Positions per channel after the second pooling: 5x5.
pub const CONV2_POSITIONS: i64 = 5 * 5;
pub const CLASSES: i64 = 10;

/// How many filters or units each hidden layer has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Widths {
    pub conv1: i64,
    pub conv2: i64,
    pub fc1: i64,
}

impl Widths {
    /// The classic model.
    pub const FULL: Self = Self { conv1: 32, conv2: 64, fc1: 64 };

    /// Every parameter of a model of these widths, weights and biases.
    pub fn parameters(&self) -> i64 {
        let Self { conv1, conv2, fc1 } = *self;
        conv1 * 9 + conv1 + conv2 * conv1 * 9 + conv2 + fc1 * conv2 * CONV2_POSITIONS + fc1 + CLASSES * fc1 + CLASSES
    }
}

#[derive(Debug)]
pub struct Cnn {
    conv1: nn::Conv2D,
    conv2: nn::Conv2D,
    fc1: nn::Linear,
    fc2: nn::Linear,
}

impl Cnn {
    /// Creates the layers under `path`; their variable names (`conv1.weight`, ...) are the
    /// names in a checkpoint.
    pub fn new(path: &nn::Path, widths: Widths) -> Self {
        Self {
            conv1: nn::conv2d(path / "conv1", 1, widths.conv1, 3, Default::default()),
            conv2: nn::conv2d(path / "conv2", widths.conv1, widths.conv2, 3, Default::default()),
            fc1: nn::linear(path / "fc1", widths.conv2 * CONV2_POSITIONS, widths.fc1, Default::default()),
            fc2: nn::linear(path / "fc2", widths.fc1, CLASSES, Default::default()),
        }
    }
}

impl ModuleT for Cnn {
    fn forward_t(&self, xs: &Tensor, _train: bool) -> Tensor {
        xs.apply(&self.conv1)
            .relu()
            .max_pool2d_default(2)
            .apply(&self.conv2)
            .relu()
            .max_pool2d_default(2)
            .flatten(1, -1)
            .apply(&self.fc1)
            .relu()
            .apply(&self.fc2)
    }
}

/// A model in memory: its variables (named as in a checkpoint), its layers and their widths.
pub struct Model {
    pub vs: nn::VarStore,
    pub cnn: Cnn,
    pub widths: Widths,
}

impl Model {
    /// The full-width model with fresh weights drawn from `seed`.
    pub fn initial(seed: u64, device: Device) -> Self {
        tch::manual_seed(seed as i64);
        let vs = nn::VarStore::new(device);
        let cnn = Cnn::new(&vs.root(), Widths::FULL);
        Self { vs, cnn, widths: Widths::FULL }
    }

    /// A model holding `parameters` (dense, by name); the widths are read from their shapes.
    pub fn from_parameters(parameters: &[(String, Tensor)], device: Device) -> anyhow::Result<Self> {
        let shape = |name: &str| parameter(parameters, name).map(Tensor::size);
        let widths =
            Widths { conv1: shape("conv1.weight")?[0], conv2: shape("conv2.weight")?[0], fc1: shape("fc1.weight")?[0] };
        let vs = nn::VarStore::new(device);
        let cnn = Cnn::new(&vs.root(), widths);
        let _no_grad = tch::no_grad_guard();
        for (name, mut variable) in vs.variables() {
            let value = parameter(parameters, &name)?;
            anyhow::ensure!(
                variable.size() == value.size(),
                "`{name}` has shape {:?}, expected {:?} for widths {widths:?}",
                value.size(),
                variable.size()
            );
            variable.copy_(value);
        }
        Ok(Self { vs, cnn, widths })
    }

    /// Every parameter by name, sorted, sharing memory with the model.
    pub fn parameters(&self) -> Vec<(String, Tensor)> {
        let mut parameters: Vec<(String, Tensor)> = self.vs.variables().into_iter().collect();
        parameters.sort_by(|a, b| a.0.cmp(&b.0));
        parameters
    }

    /// Parameters that are not zero (pruned weights are).
    pub fn nonzero_parameters(&self) -> i64 {
        self.vs.variables().values().map(|t| t.count_nonzero(None::<i64>).int64_value(&[])).sum()
    }
}

/// The parameter called `name` among named tensors.
pub fn parameter<'a>(parameters: &'a [(String, Tensor)], name: &str) -> anyhow::Result<&'a Tensor> {
    parameters
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, t)| t)
        .ok_or_else(|| anyhow::anyhow!("the model has no `{name}`"))
}

/// Samples as tensors on `device`: images `[n, 1, 28, 28]` scaled to [0, 1], labels `[n]`.
pub struct TensorData {
    pub images: Tensor,
    pub labels: Tensor,
}

impl TensorData {
    pub fn new(samples: &Samples, device: Device) -> Self {
        let labels = Tensor::from_slice(&samples.labels).to_kind(Kind::Int64);
        Self { images: images(&samples.images, device), labels: labels.to_device(device) }
    }

    pub fn len(&self) -> i64 {
        self.labels.size()[0]
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// 28x28 grey images, one after the other, as a `[n, 1, 28, 28]` tensor scaled to [0, 1].
pub fn images(bytes: &[u8], device: Device) -> Tensor {
    let side = IMAGE_SIDE as i64;
    let images = Tensor::from_slice(bytes).view([-1, 1, side, side]).to_kind(Kind::Float) / 255.0;
    images.to_device(device)
}

/// Mean cross-entropy and accuracy of `model` over `data`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Evaluation {
    pub loss: f64,
    pub accuracy: f64,
}

pub fn evaluate(model: &impl ModuleT, data: &TensorData) -> Evaluation {
    const BATCH: i64 = 1_000;
    let _no_grad = tch::no_grad_guard();
    let device = data.images.device();
    let mut loss_sum = Tensor::zeros([], (Kind::Double, device));
    let mut correct = Tensor::zeros([], (Kind::Int64, device));
    let mut start = 0;
    while start < data.len() {
        let size = BATCH.min(data.len() - start);
        let logits = model.forward_t(&data.images.narrow(0, start, size), false);
        let labels = data.labels.narrow(0, start, size);
        loss_sum += logits
            .log_softmax(-1, Kind::Float)
            .nll_loss_nd::<Tensor>(&labels, None, tch::Reduction::Sum, -100)
            .to_kind(Kind::Double);
        correct += logits.argmax(-1, false).eq_tensor(&labels).sum(Kind::Int64);
        start += size;
    }
    let n = data.len() as f64;
    Evaluation { loss: loss_sum.double_value(&[]) / n, accuracy: correct.int64_value(&[]) as f64 / n }
}
