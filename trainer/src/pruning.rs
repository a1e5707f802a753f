//! Pruning: unstructured magnitude pruning (zeros in place, kept at zero by masks while
//! fine-tuning) and structured pruning (whole filters and units removed, a smaller model).
use crate::model::{CONV2_POSITIONS, Model, Widths, parameter};
use cairn_domain::Layer;
use tch::{Kind, Tensor, nn};

/// Which weights survive: for each pruned weight tensor, 1 where a weight is kept, 0 where
/// it was removed.
pub struct Masks(Vec<(String, Tensor)>);

impl Masks {
    /// Zeroes the removed weights again (after an optimizer step moved them).
    pub fn apply(&self, vs: &nn::VarStore) {
        let _no_grad = tch::no_grad_guard();
        let variables = vs.variables();
        for (name, mask) in &self.0 {
            if let Some(variable) = variables.get(name) {
                let _ = variable.shallow_clone().g_mul_(mask);
            }
        }
    }
}

fn weight_name(layer: Layer) -> String {
    format!("{}.weight", layer.as_str())
}

/// Zeroes the `sparsity` fraction of `layers`' weights with the smallest magnitude: over the
/// layers together (`global`) or in each layer alone. Exactly `round(sparsity * n)` weights
/// go, ties broken by position, so the sparsity reached is the one asked for.
pub fn magnitude(model: &Model, layers: &[Layer], sparsity: f64, global: bool) -> anyhow::Result<Masks> {
    let _no_grad = tch::no_grad_guard();
    let variables = model.vs.variables();
    let weights: Vec<(String, Tensor)> = layers
        .iter()
        .map(|layer| {
            let name = weight_name(*layer);
            let weight = variables.get(&name).ok_or_else(|| anyhow::anyhow!("the model has no `{name}`"))?;
            Ok((name, weight.shallow_clone()))
        })
        .collect::<anyhow::Result<_>>()?;
    let groups: Vec<Vec<&(String, Tensor)>> =
        if global { vec![weights.iter().collect()] } else { weights.iter().map(|w| vec![w]).collect() };
    let mut masks = Vec::new();
    for group in groups {
        let flat = Tensor::cat(&group.iter().map(|(_, w)| w.abs().flatten(0, -1)).collect::<Vec<_>>(), 0);
        let removed = (sparsity * flat.numel() as f64).round() as i64;
        let keep = flat.ones_like();
        if removed > 0 {
            let smallest = flat.argsort_stable(false, 0, false).narrow(0, 0, removed);
            let _ = keep.shallow_clone().index_fill_(0, &smallest, 0.0);
        }
        let mut offset = 0;
        for (name, weight) in group {
            let numel = weight.numel() as i64;
            masks.push((name.clone(), keep.narrow(0, offset, numel).view(weight.size().as_slice())));
            offset += numel;
        }
    }
    let masks = Masks(masks);
    masks.apply(&model.vs);
    Ok(masks)
}

/// Removes the `sparsity` fraction of the filters or units of each of `layers` (at least
/// one stays), those whose weights have the smallest L1 norm, and the inputs of the next
/// layer that read them. The result is a smaller dense model.
pub fn structured(model: &Model, layers: &[Layer], sparsity: f64) -> anyhow::Result<Model> {
    let _no_grad = tch::no_grad_guard();
    let parameters = model.parameters();
    let get = |name: &str| parameter(&parameters, name).map(Tensor::shallow_clone);
    let kept = |layer: Layer| -> anyhow::Result<Tensor> {
        let weight = get(&weight_name(layer))?;
        let units = weight.size()[0];
        if !layers.contains(&layer) {
            return Ok(Tensor::arange(units, (Kind::Int64, weight.device())));
        }
        let keep = (units - (sparsity * units as f64).round() as i64).max(1);
        let norms = weight.abs().flatten(1, -1).sum_dim_intlist([1].as_slice(), false, Kind::Float);
        let strongest = norms.argsort_stable(false, 0, true).narrow(0, 0, keep);
        Ok(strongest.sort(0, false).0)
    };
    let (keep1, keep2, keep3) = (kept(Layer::Conv1)?, kept(Layer::Conv2)?, kept(Layer::Fc1)?);
    // fc1 reads the 5x5 positions of each conv2 channel, channel by channel.
    let positions = Tensor::arange(CONV2_POSITIONS, (Kind::Int64, keep2.device()));
    let fc1_inputs = (keep2.unsqueeze(1) * CONV2_POSITIONS + positions.unsqueeze(0)).flatten(0, -1);
    let smaller = vec![
        ("conv1.weight".to_owned(), get("conv1.weight")?.index_select(0, &keep1)),
        ("conv1.bias".to_owned(), get("conv1.bias")?.index_select(0, &keep1)),
        ("conv2.weight".to_owned(), get("conv2.weight")?.index_select(0, &keep2).index_select(1, &keep1)),
        ("conv2.bias".to_owned(), get("conv2.bias")?.index_select(0, &keep2)),
        ("fc1.weight".to_owned(), get("fc1.weight")?.index_select(0, &keep3).index_select(1, &fc1_inputs)),
        ("fc1.bias".to_owned(), get("fc1.bias")?.index_select(0, &keep3)),
        ("fc2.weight".to_owned(), get("fc2.weight")?.index_select(1, &keep3)),
        ("fc2.bias".to_owned(), get("fc2.bias")?),
    ];
    Model::from_parameters(&smaller, model.vs.device())
}

/// The fraction of each layer's weights that are zero, and of the `layers` together.
pub fn weight_sparsity(model: &Model, layers: &[Layer]) -> (Vec<(Layer, f64)>, f64) {
    let variables = model.vs.variables();
    let counts: Vec<(Layer, i64, i64)> = Layer::ALL
        .iter()
        .filter_map(|layer| {
            let weight = variables.get(&weight_name(*layer))?;
            let zeros = weight.numel() as i64 - weight.count_nonzero(None::<i64>).int64_value(&[]);
            Some((*layer, zeros, weight.numel() as i64))
        })
        .collect();
    let per_layer = counts.iter().map(|&(layer, zeros, total)| (layer, zeros as f64 / total as f64)).collect();
    let (zeros, total) = counts
        .iter()
        .filter(|(layer, _, _)| layers.contains(layer))
        .fold((0, 0), |(z, t), &(_, zeros, total)| (z + zeros, t + total));
    (per_layer, zeros as f64 / total.max(1) as f64)
}

/// The fraction of each layer's units removed from `before` to `after`, and of the `layers`
/// together.
pub fn unit_sparsity(before: Widths, after: Widths, layers: &[Layer]) -> (Vec<(Layer, f64)>, f64) {
    let pairs = [
        (Layer::Conv1, before.conv1, after.conv1),
        (Layer::Conv2, before.conv2, after.conv2),
        (Layer::Fc1, before.fc1, after.fc1),
    ];
    let per_layer = pairs.iter().map(|&(layer, b, a)| (layer, (b - a) as f64 / b as f64)).collect();
    let (removed, total) = pairs
        .iter()
        .filter(|(layer, _, _)| layers.contains(layer))
        .fold((0, 0), |(r, t), &(_, b, a)| (r + b - a, t + b));
    (per_layer, removed as f64 / total.max(1) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        model::{TensorData, evaluate},
        training::{
            Start,
            tests::{Recorded, finished, fit, small_params, tensors},
            train,
        },
    };
    use cairn_domain::params::{PruneParams, STRUCTURED_LAYERS};

    fn trained() -> (Model, (TensorData, TensorData)) {
        let params = small_params(1);
        let data = tensors(&params);
        let (model, _) = finished(fit(&params, &data, None, &mut Recorded::default()));
        (model, data)
    }

    fn fine_tune(model: Model, masks: Option<Masks>, data: &(TensorData, TensorData)) -> Model {
        let mut params = small_params(1);
        params.learning_rate = 1e-2; // large steps: every weight would move if it could
        finished(
            train(&params, Start { model, masks }, &data.0, &data.1, None, &mut Recorded::default()).expect("trains"),
        )
        .0
    }

    #[test]
    fn magnitude_pruning_reaches_its_target_and_fine_tuning_keeps_pruned_weights_at_zero() {
        let (original, data) = trained();
        for (global, sparsity) in [(true, 0.9), (false, 0.75), (true, 0.333)] {
            let model = Model::from_parameters(&original.parameters(), tch::Device::Cpu).expect("copies");
            let masks = magnitude(&model, &Layer::ALL, sparsity, global).expect("prunes");
            let (per_layer, overall) = weight_sparsity(&model, &Layer::ALL);
            assert!((overall - sparsity).abs() < 0.005, "global={global}: {overall} for {sparsity}");
            if !global {
                for (layer, reached) in &per_layer {
                    assert!((reached - sparsity).abs() < 0.005, "{layer:?}: {reached}");
                }
            }
            let zero_before: Vec<Tensor> = model.parameters().iter().map(|(_, w)| w.eq(0.0)).collect();
            let tuned = fine_tune(model, Some(masks), &data);
            for ((name, weight), was_zero) in tuned.parameters().iter().zip(&zero_before) {
                let moved = weight.masked_select(was_zero).abs().sum(Kind::Float).double_value(&[]);
                assert_eq!(moved, 0.0, "{name}: pruned weights moved while fine-tuning");
            }
            assert!((weight_sparsity(&tuned, &Layer::ALL).1 - sparsity).abs() < 0.005);
        }
    }

    #[test]
    fn global_pruning_cuts_the_big_layers_hardest() {
        let (model, _) = trained();
        magnitude(&model, &Layer::ALL, 0.8, true).expect("prunes");
        let (per_layer, _) = weight_sparsity(&model, &Layer::ALL);
        // fc1 holds 102,400 of the 121,600 weights and is the most redundant.
        assert!(per_layer[2].1 > per_layer[0].1, "{per_layer:?}");
    }

    #[test]
    fn structured_pruning_makes_a_smaller_model_that_loads_and_runs() {
        let (model, data) = trained();
        for sparsity in [0.5, 0.75] {
            let smaller = structured(&model, &STRUCTURED_LAYERS, sparsity).expect("prunes");
            let (per_layer, overall) = unit_sparsity(model.widths, smaller.widths, &STRUCTURED_LAYERS);
            assert!((overall - sparsity).abs() < 0.005, "{overall} for {sparsity}");
            assert!(per_layer.iter().all(|(_, reached)| (reached - sparsity).abs() < 0.005), "{per_layer:?}");
            assert!(smaller.widths.parameters() < model.widths.parameters() / 2);

            let dir = std::env::temp_dir().join(format!("cairn-structured-{}-{sparsity}", std::process::id()));
            let saved = crate::checkpoint::save(&smaller, &dir, 1, "model.safetensors").expect("saves");
            let reloaded = crate::checkpoint::load(&dir.join(&saved.path), tch::Device::Cpu).expect("loads");
            assert_eq!(reloaded.widths, smaller.widths);
            assert_eq!(reloaded.nonzero_parameters(), smaller.nonzero_parameters());
            let accuracy = evaluate(&reloaded.cnn, &data.1).accuracy;
            assert_eq!(accuracy, evaluate(&smaller.cnn, &data.1).accuracy);
            let tuned = fine_tune(reloaded, None, &data);
            assert!(evaluate(&tuned.cnn, &data.1).accuracy > 0.5, "a half-width model still learns");
            std::fs::remove_dir_all(dir).expect("cleanup");
        }
    }

    #[test]
    fn layer_choice_leaves_other_layers_untouched() {
        let (model, _) = trained();
        let request = serde_json::from_value(serde_json::json!({"sparsity": 0.5, "layers": ["fc1"]})).expect("decodes");
        let defaults = cairn_domain::DataDefaults::split(
            cairn_domain::DatasetName::parse("synthetic-digits").expect("name"),
            10_000,
        );
        let params = PruneParams::validate(&request, &defaults).expect("valid");
        magnitude(&model, &params.layers, params.sparsity, true).expect("prunes");
        let (per_layer, overall) = weight_sparsity(&model, &params.layers);
        assert!((overall - 0.5).abs() < 0.005);
        assert_eq!(per_layer[0].1, 0.0, "conv1 untouched");
        assert_eq!(per_layer[3].1, 0.0, "fc2 untouched");
    }
}
