//! How a model's parameters are stored in a checkpoint file. Three encodings, told apart by
//! the tensor names, so one loader reads every checkpoint:
//! - dense: `conv1.weight` as float32;
//! - sparse (pruned models): `conv1.weight.mask`, one bit per weight packed in bytes, and
//!   `conv1.weight.values`, the non-zero weights in order, with `conv1.weight.shape`;
//! - int8 (quantized models): `conv1.weight.int8` and `conv1.weight.scale`, one float32 scale
//!   per output channel, symmetric (`weight = int8 * scale`).
//!
//! Biases stay dense float32 in every encoding: they are a few hundred numbers.
use tch::{Kind, Tensor};

const MASK: &str = ".mask";
const VALUES: &str = ".values";
const SHAPE: &str = ".shape";
const INT8: &str = ".int8";
const SCALE: &str = ".scale";

fn is_weight(name: &str) -> bool {
    name.ends_with(".weight")
}

/// Weights with at least one zero stored as a bit mask and their non-zero values.
pub fn sparse(parameters: &[(String, Tensor)]) -> Vec<(String, Tensor)> {
    let mut encoded = Vec::new();
    for (name, tensor) in parameters {
        if !is_weight(name) {
            encoded.push((name.clone(), tensor.shallow_clone()));
            continue;
        }
        let flat = tensor.flatten(0, -1);
        let mask = flat.ne(0.0);
        encoded.push((format!("{name}{MASK}"), pack_bits(&mask)));
        encoded.push((format!("{name}{VALUES}"), flat.masked_select(&mask)));
        encoded.push((format!("{name}{SHAPE}"), Tensor::from_slice(&tensor.size())));
    }
    encoded
}

/// Weights quantized to int8, symmetric, with one scale per output channel (the first
/// dimension): `scale = max |w| / 127` over the channel. An all-zero channel gets scale 1.
pub fn int8(parameters: &[(String, Tensor)]) -> Vec<(String, Tensor)> {
    let _no_grad = tch::no_grad_guard();
    let mut encoded = Vec::new();
    for (name, tensor) in parameters {
        if !is_weight(name) {
            encoded.push((name.clone(), tensor.shallow_clone()));
            continue;
        }
        let channels = tensor.size()[0];
        let max = tensor.abs().view([channels, -1]).amax([1].as_slice(), false);
        let scale = max.where_scalarother(&max.gt(0.0), 127.0) / 127.0;
        let mut view = vec![channels];
        view.extend(std::iter::repeat_n(1, tensor.dim() - 1));
        let quantized = (tensor / scale.view(view.as_slice())).round().clamp(-127.0, 127.0).to_kind(Kind::Int8);
        encoded.push((format!("{name}{INT8}"), quantized));
        encoded.push((format!("{name}{SCALE}"), scale.to_kind(Kind::Float)));
    }
    encoded
}

/// The dense float32 parameters of a checkpoint in any encoding, sorted by name.
pub fn decode(stored: &[(String, Tensor)]) -> anyhow::Result<Vec<(String, Tensor)>> {
    let find = |name: &str| stored.iter().find(|(n, _)| n == name).map(|(_, t)| t);
    let mut dense = Vec::new();
    for (name, tensor) in stored {
        if let Some(base) = name.strip_suffix(MASK) {
            let values = find(&format!("{base}{VALUES}")).ok_or_else(|| missing(base, VALUES))?;
            let shape = find(&format!("{base}{SHAPE}")).ok_or_else(|| missing(base, SHAPE))?;
            let shape: Vec<i64> = Vec::try_from(&shape.to_kind(Kind::Int64))?;
            let numel: i64 = shape.iter().product();
            let mask = unpack_bits(tensor, numel);
            let flat = Tensor::zeros([numel], (Kind::Float, values.device())).masked_scatter(&mask, values);
            dense.push((base.to_owned(), flat.view(shape.as_slice())));
        } else if let Some(base) = name.strip_suffix(INT8) {
            let scale = find(&format!("{base}{SCALE}")).ok_or_else(|| missing(base, SCALE))?;
            let mut view = vec![tensor.size()[0]];
            view.extend(std::iter::repeat_n(1, tensor.dim() - 1));
            dense.push((base.to_owned(), tensor.to_kind(Kind::Float) * scale.view(view.as_slice())));
        } else if [VALUES, SHAPE, SCALE].iter().all(|suffix| !name.ends_with(suffix)) {
            dense.push((name.clone(), tensor.to_kind(Kind::Float)));
        }
    }
    dense.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(dense)
}

fn missing(base: &str, suffix: &str) -> anyhow::Error {
    anyhow::anyhow!("the checkpoint has no `{base}{suffix}`")
}

/// Eight booleans per byte, the first in the highest bit.
fn pack_bits(mask: &Tensor) -> Tensor {
    let numel = mask.numel() as i64;
    let padded = Tensor::cat(
        &[mask.to_kind(Kind::Int64), Tensor::zeros([(8 - numel % 8) % 8], (Kind::Int64, mask.device()))],
        0,
    );
    let weights = Tensor::from_slice(&[128i64, 64, 32, 16, 8, 4, 2, 1]).to_device(mask.device());
    (padded.view([-1, 8]) * weights).sum_dim_intlist([1].as_slice(), false, Kind::Int64).to_kind(Kind::Uint8)
}

fn unpack_bits(packed: &Tensor, numel: i64) -> Tensor {
    let weights = Tensor::from_slice(&[128i64, 64, 32, 16, 8, 4, 2, 1]).to_device(packed.device());
    let bits = packed.to_kind(Kind::Int64).unsqueeze(1).floor_divide(&weights).remainder(2);
    bits.flatten(0, -1).narrow(0, 0, numel).to_kind(Kind::Bool)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parameters() -> Vec<(String, Tensor)> {
        let weight = Tensor::from_slice(&[0.0f32, 1.5, 0.0, -0.25, 0.0, 0.0, 3.0, 0.0, 0.0, -1.0]).view([2, 5]);
        vec![("fc.bias".to_owned(), Tensor::from_slice(&[0.5f32, -0.5])), ("fc.weight".to_owned(), weight)]
    }

    #[test]
    fn sparse_encoding_round_trips_exactly_and_keeps_only_non_zeros() {
        let encoded = sparse(&parameters());
        let values = &encoded.iter().find(|(n, _)| n == "fc.weight.values").expect("values").1;
        assert_eq!(values.size(), [4]);
        let mask = &encoded.iter().find(|(n, _)| n == "fc.weight.mask").expect("mask").1;
        assert_eq!(Vec::<u8>::try_from(mask).expect("bytes"), [0b0101_0010, 0b0100_0000]);
        let decoded = decode(&encoded).expect("decodes");
        for ((name, original), (decoded_name, decoded)) in parameters().iter().zip(&decoded) {
            assert_eq!(name, decoded_name);
            assert!(original.equal(decoded), "{name}");
        }
    }

    #[test]
    fn int8_scales_each_output_channel_by_its_largest_weight() {
        let encoded = int8(&parameters());
        let scale = &encoded.iter().find(|(n, _)| n == "fc.weight.scale").expect("scale").1;
        assert_eq!(Vec::<f32>::try_from(scale).expect("floats"), [1.5 / 127.0, 3.0 / 127.0]);
        let quantized = &encoded.iter().find(|(n, _)| n == "fc.weight.int8").expect("int8").1;
        assert_eq!(quantized.kind(), Kind::Int8);
        assert_eq!(
            Vec::<i8>::try_from(&quantized.flatten(0, -1)).expect("ints"),
            [0, 127, 0, -21, 0, 0, 127, 0, 0, -42]
        );
        let decoded = decode(&encoded).expect("decodes");
        let error = (&decoded[1].1 - &parameters()[1].1).abs().max().double_value(&[]);
        assert!(error <= 3.0 / 127.0 / 2.0 + 1e-6, "at most half a step off: {error}");
        assert!(decoded[0].1.equal(&parameters()[0].1), "biases are kept as they are");
    }
}
