//! Personalised adapters: a small model trained per session on the session's own photos, then
//! applied to the session's later jobs of the same base model (the manifest entry's `adapter`,
//! contract in `models/README.md`, "Personalised adapters").
//!
//! The one architecture today is `tone`: a per-pixel residual MLP on the base model's output
//! colours, `out = clamp(y + W2·relu(W1·y + b1) + b2, 0, 1)` (two 1×1 convolutions, `3 → hidden
//! → 3`), with `W2` and `b2` zero at the start so the untrained adapter is the identity. It is
//! trained with libtorch autograd through `tch` (Adam, written out here over the fallible tensor
//! calls), the base model frozen and run once per photo, to minimise
//!
//! `mse(pool(A(y)), pool(x)) + KEEP · mse(A(y), y)`
//!
//! where `x` is a session photo, `y` the base model's rendering of it and `pool` an average
//! over an 8×8 grid of patches: the session's own tones (skin, hair, light) at low frequency come
//! back under the model's style, which the second term keeps (flat colour, ink lines).
//!
//! An adapter is written as a safetensors file (8-byte little-endian header length, a JSON
//! header with `__metadata__`, the raw little-endian `float32` data) whose metadata names its
//! **scope**: the account, session, model and version it was trained for. [`Adapter::from_bytes`]
//! refuses an adapter whose scope is not the caller's (`AdapterMismatch`), so one session's
//! adapter never serves another account, session or model, wherever its bytes were copied.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::{InferError, InferErrorKind};
use clipfleet_models::{AdapterKind, AdapterSpec};

/// Weight of the term that keeps the base model's style.
const KEEP: f64 = 0.1;
/// Patches per side of the pooled tone target.
const TONE_GRID: i64 = 8;
/// The format tag in an adapter file's metadata.
const FORMAT: &str = "clipfleet-adapter-v1";
/// Largest adapter file read (a `tone` adapter of 256 hidden units is ~8 KB).
const MAX_ADAPTER_BYTES: usize = 1 << 20;
/// Largest header read.
const MAX_HEADER_BYTES: u64 = 64 << 10;
/// Photos per gradient step (a session of more is trained on them in turn).
const STEP_PHOTOS: i64 = 4;
/// Adam's moment decay rates and epsilon (PyTorch's defaults).
const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const EPSILON: f64 = 1e-8;

/// Whom an adapter belongs to: it is trained for, stored under and loaded for exactly this.
#[derive(Clone, PartialEq, Eq)]
pub struct AdapterScope {
    /// The account id.
    pub account: String,
    /// The session id.
    pub session: String,
    /// The base model's manifest name.
    pub model: String,
    /// Its version.
    pub version: String,
}

// By hand: account and session ids never reach logs.
impl std::fmt::Debug for AdapterScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AdapterScope(*/*, {}@{})", self.model, self.version)
    }
}

/// A trained (or untrained) adapter: its scope, shape and weights, on no device (the tensors
/// are made where it is applied).
#[derive(Clone, PartialEq)]
pub struct Adapter {
    scope: AdapterScope,
    kind: AdapterKind,
    hidden: usize,
    /// The parameters by name: `w1 [hidden, 3]`, `b1 [hidden]`, `w2 [3, hidden]`, `b2 [3]`.
    weights: BTreeMap<String, Vec<f32>>,
}

impl std::fmt::Debug for Adapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Adapter({:?}, {:?}, hidden {})",
            self.scope, self.kind, self.hidden
        )
    }
}

/// What one training did, for logs and the benches (no pixel, no weight).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrainingReport {
    /// Photos trained on.
    pub photos: usize,
    /// Gradient steps taken.
    pub steps: u32,
    /// The loss before the first step (the untrained adapter: the identity).
    pub loss_first: f64,
    /// The loss after the last step.
    pub loss_last: f64,
}

fn tensor_error(context: &str) -> impl Fn(tch::TchError) -> InferError + '_ {
    move |err| InferError::from_tch(context, err, InferErrorKind::ModelError)
}

/// The names and shapes of a `tone` adapter's parameters.
fn shapes(hidden: usize) -> [(&'static str, Vec<i64>); 4] {
    let h = hidden as i64;
    [
        ("b1", vec![h]),
        ("b2", vec![3]),
        ("w1", vec![h, 3]),
        ("w2", vec![3, h]),
    ]
}

/// A deterministic stream of standard normal numbers (splitmix64 and Box–Muller): the initial
/// weights depend on the seed alone, not on libtorch's global generator.
fn normals(seed: u64, count: usize) -> Vec<f32> {
    let mut state = seed;
    let mut next = || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        // 53 bits into (0, 1].
        ((z >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    };
    (0..count)
        .map(|_| {
            let (u, v) = (next(), next());
            ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
        })
        .collect()
}

impl Adapter {
    /// The untrained adapter of `spec` for `scope` (the identity): `W1` drawn from `seed`, the
    /// rest zero.
    pub fn untrained(spec: &AdapterSpec, scope: AdapterScope, seed: u64) -> Self {
        let hidden = spec.hidden as usize;
        let scale = 1.0 / 3f32.sqrt();
        let mut weights = BTreeMap::new();
        weights.insert(
            "w1".to_owned(),
            normals(seed, hidden * 3)
                .into_iter()
                .map(|v| v * scale)
                .collect(),
        );
        weights.insert("b1".to_owned(), vec![0.0; hidden]);
        weights.insert("w2".to_owned(), vec![0.0; 3 * hidden]);
        weights.insert("b2".to_owned(), vec![0.0; 3]);
        Adapter {
            scope,
            kind: spec.kind,
            hidden,
            weights,
        }
    }

    /// Whom it belongs to.
    pub fn scope(&self) -> &AdapterScope {
        &self.scope
    }

    /// Its parameters as tensors on `device`, by name.
    fn tensors(&self, device: Device) -> Result<BTreeMap<&'static str, Tensor>, InferError> {
        shapes(self.hidden)
            .into_iter()
            .map(|(name, shape)| {
                let data = self.weights.get(name).map(Vec::as_slice).unwrap_or(&[]);
                let tensor = Tensor::from_slice(data)
                    .f_view(shape.as_slice())
                    .and_then(|t| t.f_to_device(device))
                    .map_err(tensor_error("adapter weights"))?;
                Ok((name, tensor))
            })
            .collect()
    }

    /// Runs the adapter on `images` (`float32[N, 3, H, W]` in [0, 1], any device): the same
    /// shape back, in [0, 1].
    pub fn apply(&self, images: &Tensor) -> Result<Tensor, InferError> {
        let size = images.size();
        if size.len() != 4 || size[1] != 3 || images.kind() != Kind::Float {
            return Err(InferError::new(
                InferErrorKind::InvalidInput,
                format!(
                    "an adapter takes float32 [N, 3, H, W], got {:?} {size:?}",
                    images.kind()
                ),
            ));
        }
        let params = self.tensors(images.device())?;
        tch::no_grad(|| forward(&params, self.hidden, images))
    }

    /// The adapter as a safetensors file whose metadata names its scope.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut header = serde_json::Map::new();
        let metadata: BTreeMap<&str, String> = [
            ("format", FORMAT.to_owned()),
            ("kind", kind_name(self.kind).to_owned()),
            ("hidden", self.hidden.to_string()),
            ("account", self.scope.account.clone()),
            ("session", self.scope.session.clone()),
            ("model", self.scope.model.clone()),
            ("version", self.scope.version.clone()),
        ]
        .into_iter()
        .collect();
        header.insert(
            "__metadata__".into(),
            serde_json::to_value(metadata).unwrap_or_default(),
        );
        let mut data = Vec::new();
        for (name, shape) in shapes(self.hidden) {
            let values = self.weights.get(name).map(Vec::as_slice).unwrap_or(&[]);
            let start = data.len();
            for value in values {
                data.extend_from_slice(&value.to_le_bytes());
            }
            let entry = TensorEntry {
                dtype: "F32".into(),
                shape,
                data_offsets: [start, data.len()],
            };
            header.insert(name.into(), serde_json::to_value(entry).unwrap_or_default());
        }
        let header = serde_json::Value::Object(header).to_string().into_bytes();
        let mut bytes = Vec::with_capacity(8 + header.len() + data.len());
        bytes.extend_from_slice(&(header.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&header);
        bytes.extend_from_slice(&data);
        bytes
    }

    /// Reads an adapter file and checks it was made for `expected`: a corrupt file is a
    /// `ModelLoad` error, another scope an `AdapterMismatch` (the message names which part
    /// differs, never the ids).
    pub fn from_bytes(bytes: &[u8], expected: &AdapterScope) -> Result<Self, InferError> {
        let corrupt = |why: &str| {
            InferError::new(
                InferErrorKind::ModelLoad,
                format!("adapter file is not valid: {why}"),
            )
        };
        if bytes.len() > MAX_ADAPTER_BYTES {
            return Err(corrupt("larger than an adapter can be"));
        }
        let (len, rest) = bytes
            .split_first_chunk::<8>()
            .ok_or_else(|| corrupt("shorter than its header length"))?;
        let len = u64::from_le_bytes(*len);
        if len > MAX_HEADER_BYTES || len > rest.len() as u64 {
            return Err(corrupt("header length out of bounds"));
        }
        let (header, data) = rest.split_at(len as usize);
        let mut header: BTreeMap<String, serde_json::Value> =
            serde_json::from_slice(header).map_err(|_| corrupt("header is not a JSON map"))?;
        let metadata: BTreeMap<String, String> = header
            .remove("__metadata__")
            .and_then(|m| serde_json::from_value(m).ok())
            .ok_or_else(|| corrupt("no metadata"))?;
        let field = |name: &str| metadata.get(name).map(String::as_str).unwrap_or("");
        if field("format") != FORMAT {
            return Err(corrupt("not a clipfleet adapter"));
        }
        let kind = match field("kind") {
            "tone" => AdapterKind::Tone,
            _ => return Err(corrupt("unknown adapter kind")),
        };
        let hidden: usize = field("hidden")
            .parse()
            .ok()
            .filter(|h| (1..=256).contains(h))
            .ok_or_else(|| corrupt("hidden width out of range"))?;
        let scope = AdapterScope {
            account: field("account").to_owned(),
            session: field("session").to_owned(),
            model: field("model").to_owned(),
            version: field("version").to_owned(),
        };
        let differs = [
            ("account", scope.account != expected.account),
            ("session", scope.session != expected.session),
            ("model", scope.model != expected.model),
            ("model version", scope.version != expected.version),
        ];
        if let Some((what, _)) = differs.iter().find(|(_, differs)| *differs) {
            return Err(InferError::new(
                InferErrorKind::AdapterMismatch,
                format!("the adapter was trained for another {what}: refused"),
            ));
        }
        let mut weights = BTreeMap::new();
        let mut end = 0;
        for (name, shape) in shapes(hidden) {
            let entry: TensorEntry = header
                .remove(name)
                .and_then(|e| serde_json::from_value(e).ok())
                .ok_or_else(|| corrupt("a parameter is missing"))?;
            let count: i64 = shape.iter().product();
            let [start, stop] = entry.data_offsets;
            if entry.dtype != "F32"
                || entry.shape != shape
                || start != end
                || stop != start + 4 * count as usize
                || stop > data.len()
            {
                return Err(corrupt("a parameter's dtype, shape or offsets"));
            }
            let values: Vec<f32> = data[start..stop]
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            if values.iter().any(|v| !v.is_finite()) {
                return Err(corrupt("a parameter is not finite"));
            }
            weights.insert(name.to_owned(), values);
            end = stop;
        }
        if end != data.len() || !header.is_empty() {
            return Err(corrupt("data or entries beyond the parameters"));
        }
        Ok(Adapter {
            scope,
            kind,
            hidden,
            weights,
        })
    }
}

#[derive(Serialize, Deserialize)]
struct TensorEntry {
    dtype: String,
    shape: Vec<i64>,
    data_offsets: [usize; 2],
}

fn kind_name(kind: AdapterKind) -> &'static str {
    match kind {
        AdapterKind::Tone => "tone",
    }
}

/// `clamp(y + W2·relu(W1·y + b1) + b2, 0, 1)` over the channels of each pixel.
fn forward(
    params: &BTreeMap<&'static str, Tensor>,
    hidden: usize,
    images: &Tensor,
) -> Result<Tensor, InferError> {
    let param = |name: &str| {
        params
            .get(name)
            .ok_or_else(|| InferError::new(InferErrorKind::ModelError, "adapter parameter"))
    };
    let h = hidden as i64;
    let (b1, b2) = (param("b1")?, param("b2")?);
    let w1 = param("w1")?
        .f_view([h, 3, 1, 1])
        .map_err(tensor_error("w1"))?;
    let w2 = param("w2")?
        .f_view([3, h, 1, 1])
        .map_err(tensor_error("w2"))?;
    images
        .f_conv2d(&w1, Some(b1), [1, 1], [0, 0], [1, 1], 1)
        .and_then(|t| t.f_relu())
        .and_then(|t| t.f_conv2d(&w2, Some(b2), [1, 1], [0, 0], [1, 1], 1))
        .and_then(|delta| images.f_add(&delta))
        .and_then(|t| t.f_clamp(0.0, 1.0))
        .map_err(tensor_error("apply the adapter"))
}

/// The loss of the adapter's output `out` for the photos `photos` whose base rendering is
/// `base` (module docs).
fn loss(out: &Tensor, base: &Tensor, photos: &Tensor, kernel: i64) -> Result<Tensor, InferError> {
    let pool = |t: &Tensor| {
        t.f_avg_pool2d(
            [kernel, kernel],
            [kernel, kernel],
            [0, 0],
            false,
            true,
            None,
        )
    };
    let tone = pool(out)
        .and_then(|o| Ok((o, pool(photos)?)))
        .and_then(|(o, p)| o.f_mse_loss(&p, tch::Reduction::Mean))
        .map_err(tensor_error("tone loss"))?;
    let keep = out
        .f_mse_loss(base, tch::Reduction::Mean)
        .map_err(tensor_error("keep loss"))?;
    tone.f_add(&keep.f_mul_scalar(KEEP).map_err(tensor_error("keep loss"))?)
        .map_err(tensor_error("loss"))
}

/// Trains the adapter `spec` describes for `scope` on `photos` (`float32[N, 3, S, S]` in
/// [0, 1], the session's photos fitted to the spec's `train_size`) whose rendering by the frozen
/// base model is `base` (the same shape): `spec.steps` Adam steps from the untrained adapter
/// drawn from `seed`, each on at most four of the photos in turn, on the device the tensors
/// are on. The report's losses are over every photo, before and after.
pub fn train(
    spec: &AdapterSpec,
    scope: AdapterScope,
    photos: &Tensor,
    base: &Tensor,
    seed: u64,
) -> Result<(Adapter, TrainingReport), InferError> {
    let size = photos.size();
    if size.len() != 4 || size[1] != 3 || base.size() != size || size[0] == 0 {
        return Err(InferError::new(
            InferErrorKind::InvalidInput,
            format!(
                "training takes photos and their rendering as [N, 3, S, S], got {size:?} and {:?}",
                base.size()
            ),
        ));
    }
    let kernel = (size[2].min(size[3]) / TONE_GRID).max(1);
    let device = photos.device();
    let mut adapter = Adapter::untrained(spec, scope, seed);
    let leaf = |t: Tensor| t.f_set_requires_grad(true).map_err(tensor_error("train"));
    let mut params: BTreeMap<&'static str, Tensor> = adapter
        .tensors(device)?
        .into_iter()
        .map(|(name, t)| Ok((name, leaf(t)?)))
        .collect::<Result<_, InferError>>()?;
    // Adam's first and second moments, per parameter.
    let mut moments: BTreeMap<&'static str, (Tensor, Tensor)> = params
        .iter()
        .map(|(name, p)| {
            let zeros = || p.f_zeros_like().map_err(tensor_error("train"));
            Ok((*name, (zeros()?, zeros()?)))
        })
        .collect::<Result<_, InferError>>()?;
    let lr = spec.learning_rate.0;
    // The loss over every photo, untrained and trained (what the report compares).
    let full_loss = |params: &BTreeMap<&'static str, Tensor>| {
        tch::no_grad(|| {
            let out = forward(params, adapter.hidden, base)?;
            loss(&out, base, photos, kernel)?
                .f_double_value(&[])
                .map_err(tensor_error("loss value"))
        })
    };
    let loss_first = full_loss(&params)?;
    // Each step sees at most STEP_PHOTOS photos, in turn: the cost of a step stays that of a
    // small batch however many photos the session holds.
    let count = size[0];
    let per_step = count.min(STEP_PHOTOS);
    for step in 1..=spec.steps {
        let (step_photos, step_base) = if per_step == count {
            (photos.shallow_clone(), base.shallow_clone())
        } else {
            let first = (i64::from(step) - 1) * per_step;
            let picked: Vec<i64> = (0..per_step).map(|j| (first + j) % count).collect();
            let index = Tensor::from_slice(&picked)
                .f_to_device(device)
                .map_err(tensor_error("batch"))?;
            (
                photos
                    .f_index_select(0, &index)
                    .map_err(tensor_error("batch"))?,
                base.f_index_select(0, &index)
                    .map_err(tensor_error("batch"))?,
            )
        };
        let out = forward(&params, adapter.hidden, &step_base)?;
        let loss = loss(&out, &step_base, &step_photos, kernel)?;
        let value = loss
            .f_double_value(&[])
            .map_err(tensor_error("loss value"))?;
        if !value.is_finite() {
            return Err(InferError::new(
                InferErrorKind::ModelError,
                format!("training diverged at step {step}"),
            ));
        }
        loss.f_backward().map_err(tensor_error("backward"))?;
        let bias1 = 1.0 - BETA1.powi(step as i32);
        let bias2 = 1.0 - BETA2.powi(step as i32);
        tch::no_grad(|| -> Result<(), InferError> {
            for (name, param) in params.iter_mut() {
                let grad = param.f_grad().map_err(tensor_error("grad"))?;
                if !grad.defined() {
                    continue;
                }
                let (m, v) = moments
                    .get_mut(name)
                    .ok_or_else(|| InferError::new(InferErrorKind::ModelError, "moments"))?;
                let update = m
                    .f_mul_scalar_(BETA1)
                    .and_then(|_| m.f_add_(&grad.f_mul_scalar(1.0 - BETA1)?))
                    .and_then(|_| v.f_mul_scalar_(BETA2))
                    .and_then(|_| v.f_add_(&grad.f_square()?.f_mul_scalar(1.0 - BETA2)?))
                    .and_then(|_| {
                        let denom = v.f_div_scalar(bias2)?.f_sqrt()?.f_add_scalar(EPSILON)?;
                        m.f_div_scalar(bias1)?.f_div(&denom)?.f_mul_scalar(lr)
                    })
                    .map_err(tensor_error("adam step"))?;
                let _ = param.f_sub_(&update).map_err(tensor_error("adam step"))?;
                param.zero_grad();
            }
            Ok(())
        })?;
    }
    let loss_last = full_loss(&params)?;
    for (name, param) in &params {
        let flat = param
            .f_detach()
            .and_then(|t| t.f_to_device(Device::Cpu))
            .and_then(|t| t.f_contiguous())
            .and_then(|t| t.f_view([-1]))
            .map_err(tensor_error("adapter weights"))?;
        let values = Vec::<f32>::try_from(&flat).map_err(tensor_error("adapter weights"))?;
        adapter.weights.insert((*name).to_owned(), values);
    }
    let report = TrainingReport {
        photos: size[0] as usize,
        steps: spec.steps,
        loss_first,
        loss_last,
    };
    Ok((adapter, report))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clipfleet_models::LearningRate;

    fn spec(steps: u32) -> AdapterSpec {
        AdapterSpec {
            kind: AdapterKind::Tone,
            hidden: 8,
            steps,
            learning_rate: LearningRate(0.02),
            train_size: 32,
        }
    }

    fn scope(session: &str) -> AdapterScope {
        AdapterScope {
            account: "acct-a".into(),
            session: session.into(),
            model: "portrait".into(),
            version: "1".into(),
        }
    }

    #[test]
    fn an_untrained_adapter_is_the_identity_and_round_trips() {
        let adapter = Adapter::untrained(&spec(1), scope("s1"), 7);
        let images = Tensor::rand([2, 3, 16, 16], (Kind::Float, Device::Cpu));
        let out = adapter.apply(&images).expect("apply");
        assert_eq!(
            f64::try_from(out.f_sub(&images).unwrap().abs().max()).unwrap(),
            0.0
        );
        let bytes = adapter.to_bytes();
        assert_eq!(
            Adapter::from_bytes(&bytes, &scope("s1")).expect("reads"),
            adapter
        );
        let err = Adapter::from_bytes(&bytes, &scope("s2")).unwrap_err();
        assert_eq!(err.kind, InferErrorKind::AdapterMismatch);
        assert!(
            !err.message.contains("s1") && !err.message.contains("acct"),
            "{err}"
        );
        for cut in [0, 7, 8, 40, bytes.len() - 1] {
            let err = Adapter::from_bytes(&bytes[..cut], &scope("s1")).unwrap_err();
            assert_eq!(err.kind, InferErrorKind::ModelLoad, "cut at {cut}");
        }
    }

    #[test]
    fn training_brings_back_the_photos_tones() {
        // "Photos" of one reddish tone; a "model" that renders them grey: the adapter learns to
        // bring the red back.
        let photos = Tensor::from_slice(&[0.8f32, 0.4, 0.3])
            .view([1, 3, 1, 1])
            .expand([3, 3, 32, 32], false)
            .f_add(
                &Tensor::rand([3, 3, 32, 32], (Kind::Float, Device::Cpu))
                    .f_mul_scalar(0.1)
                    .unwrap(),
            )
            .unwrap();
        let base = photos
            .mean_dim(1, true, Kind::Float)
            .expand([3, 3, 32, 32], false)
            .contiguous();
        let (adapter, report) = train(&spec(150), scope("s1"), &photos, &base, 3).expect("trains");
        assert!(report.loss_last < report.loss_first * 0.5, "{report:?}");
        let out = adapter.apply(&base).expect("apply");
        let red_minus_blue = |t: &Tensor| {
            f64::try_from(t.get(0).get(0).mean(Kind::Float) - t.get(0).get(2).mean(Kind::Float))
                .unwrap()
        };
        assert!(
            red_minus_blue(&out) > red_minus_blue(&base) + 0.2,
            "{report:?}"
        );
    }
}
