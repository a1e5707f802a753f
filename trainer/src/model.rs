//! The classic MNIST CNN: conv32 3x3, relu, maxpool 2, conv64 3x3, relu, maxpool 2,
//! dense 64, relu, dense 10.
use cairn_datasets::{IMAGE_SIDE, Samples};
use tch::{Device, Kind, Tensor, nn, nn::ModuleT};

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
    pub fn new(path: &nn::Path) -> Self {
        Self {
            conv1: nn::conv2d(path / "conv1", 1, 32, 3, Default::default()),
            conv2: nn::conv2d(path / "conv2", 32, 64, 3, Default::default()),
            fc1: nn::linear(path / "fc1", 64 * 5 * 5, 64, Default::default()),
            fc2: nn::linear(path / "fc2", 64, 10, Default::default()),
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

/// Samples as tensors on `device`: images `[n, 1, 28, 28]` scaled to [0, 1], labels `[n]`.
pub struct TensorData {
    pub images: Tensor,
    pub labels: Tensor,
}

impl TensorData {
    pub fn new(samples: &Samples, device: Device) -> Self {
        let side = IMAGE_SIDE as i64;
        let images =
            Tensor::from_slice(&samples.images).view([samples.len() as i64, 1, side, side]).to_kind(Kind::Float)
                / 255.0;
        let labels = Tensor::from_slice(&samples.labels).to_kind(Kind::Int64);
        Self { images: images.to_device(device), labels: labels.to_device(device) }
    }

    pub fn len(&self) -> i64 {
        self.labels.size()[0]
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
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
