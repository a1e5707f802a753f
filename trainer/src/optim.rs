//! Adam and SGD written over tensors the worker owns, so their state (Adam's moments and
//! step count) can be saved in a checkpoint and restored exactly when a run resumes. The
//! update is the one of `torch.optim.Adam` (no weight decay, no amsgrad).
use cairn_domain::Optimizer as Kind;
use tch::{Tensor, nn::VarStore};

const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const EPS: f64 = 1e-8;

pub struct Optimizer {
    kind: Kind,
    lr: f64,
    /// The model's variables, sorted by name so state tensors line up across processes.
    params: Vec<(String, Tensor)>,
    /// Adam's first and second moments, one per parameter (empty for SGD).
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    /// Adam steps taken so far.
    t: i64,
}

impl Optimizer {
    pub fn new(kind: Kind, vs: &VarStore, lr: f64) -> Self {
        let mut params: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        params.sort_by(|a, b| a.0.cmp(&b.0));
        let zeros = |params: &[(String, Tensor)]| params.iter().map(|(_, p)| p.zeros_like()).collect();
        let (m, v) = match kind {
            Kind::Adam => (zeros(&params), zeros(&params)),
            Kind::Sgd => (Vec::new(), Vec::new()),
        };
        Self { kind, lr, params, m, v, t: 0 }
    }

    /// Back-propagates `loss` and updates every parameter.
    pub fn backward_step(&mut self, loss: &Tensor) {
        for (_, p) in &mut self.params {
            p.zero_grad();
        }
        loss.backward();
        let _no_grad = tch::no_grad_guard();
        self.t += 1;
        let bias1 = 1.0 - BETA1.powi(self.t as i32);
        let bias2_sqrt = (1.0 - BETA2.powi(self.t as i32)).sqrt();
        for (index, (_, p)) in self.params.iter_mut().enumerate() {
            let grad = p.grad();
            if !grad.defined() {
                continue;
            }
            match self.kind {
                Kind::Sgd => {
                    let _ = p.g_sub_(&(&grad * self.lr));
                }
                Kind::Adam => {
                    let _ = self.m[index].lerp_(&grad, 1.0 - BETA1);
                    let _ = self.v[index].lerp_(&grad.square(), 1.0 - BETA2);
                    let denom = self.v[index].sqrt() / bias2_sqrt + EPS;
                    let _ = p.addcdiv_(&(&self.m[index] * (-self.lr / bias1)), &denom);
                }
            }
        }
    }

    /// The state to checkpoint, named so `load_state` can find it again.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut state = vec![("optimizer.t".to_owned(), Tensor::from(self.t))];
        for (index, (name, _)) in self.params.iter().enumerate() {
            if let (Some(m), Some(v)) = (self.m.get(index), self.v.get(index)) {
                state.push((format!("optimizer.m.{name}"), m.shallow_clone()));
                state.push((format!("optimizer.v.{name}"), v.shallow_clone()));
            }
        }
        state
    }

    /// Restores what `state` saved.
    pub fn load_state(&mut self, find: impl Fn(&str) -> Option<Tensor>) -> anyhow::Result<()> {
        let missing = |name: &str| anyhow::anyhow!("the checkpoint has no `{name}`");
        self.t = find("optimizer.t").ok_or_else(|| missing("optimizer.t"))?.int64_value(&[]);
        let _no_grad = tch::no_grad_guard();
        for (index, (name, _)) in self.params.iter().enumerate() {
            for (moments, prefix) in [(&mut self.m, "m"), (&mut self.v, "v")] {
                if let Some(slot) = moments.get_mut(index) {
                    let key = format!("optimizer.{prefix}.{name}");
                    slot.copy_(&find(&key).ok_or_else(|| missing(&key))?);
                }
            }
        }
        Ok(())
    }
}
