//! Starting a training run from another model folder's weights (`continuo train --from`):
//! fine-tuning on a user's folder, and carrying a model across a vocabulary version that
//! only appended tokens (v2 → v3 appended the texture prefix, v3 → v4 the infill markers,
//! v4 → v5 the suffix-first marker `Before`).

use crate::model::files::{CONFIG_FILE, WEIGHTS_FILE};
use crate::model::Architecture;
use crate::tokens::{Vocab, V2_VOCAB_SIZE, V3_VOCAB_SIZE, V4_VOCAB_SIZE};
use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use serde::Deserialize;
use std::path::Path;

/// Peak learning rate of a run `--from` a model (under a third of training from scratch's
/// 1e-3). Measured from the shipped model on a 50-file style folder, 100 steps each
/// (BENCHMARKS.md, "Fine-tuning"): 1e-3 learned the style a little faster and forgot the
/// folk corpus fastest; 1e-4 learned it slowest.
pub const FINE_TUNE_LR: f64 = 3e-4;
/// Share of a fine-tuning run spent warming up: the weights are already trained, so a short
/// warm-up only lets AdamW's moments settle before the peak rate.
pub const FINE_TUNE_WARMUP: f64 = 0.02;
/// Share of each fine-tuning batch drawn from the base model's own training corpus, when it
/// is on disk: rehearsing the base's music is the guard against forgetting it. Measured at
/// the rate above: half the batch rehearsed cost 0.03 nats/token on the style and halved the
/// forgetting of a quarter (BENCHMARKS.md).
pub const BASE_MIX_SHARE: f64 = 0.5;

/// What `--from` needs of a base model's `config.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct BaseModel {
    pub name: String,
    pub architecture: Architecture,
    pub vocab: crate::model::files::VocabStamp,
    #[serde(default)]
    pub training: serde_json::Value,
}

impl BaseModel {
    /// The folder the base was trained on, as its card records it, if it is on this disk
    /// (a relative path is tried as given, then beside the base's own folder's parent).
    pub fn corpus_folder(&self, base_dir: &Path) -> Option<std::path::PathBuf> {
        let recorded = Path::new(self.training.get("data")?.as_str()?);
        let candidates = [
            recorded.to_owned(),
            base_dir
                .parent()
                .and_then(Path::parent)
                .map(|root| root.join(recorded))
                .unwrap_or_default(),
        ];
        candidates.into_iter().find(|p| p.is_dir())
    }
}

/// Reads the base folder's card; a vocabulary this version cannot extend is refused.
pub fn read_base(dir: &Path) -> Result<BaseModel> {
    let path = dir.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "--from {}: no {CONFIG_FILE} there; give a model folder made by `continuo train`",
            dir.display()
        )
    })?;
    let base: BaseModel = serde_json::from_str(&text)
        .with_context(|| format!("--from: {} is not a Continuo model config", path.display()))?;
    let v = Vocab;
    let same = base.vocab.version == v.version() && base.vocab.size == v.size();
    let extendable = (base.vocab.version == 2 && base.vocab.size == V2_VOCAB_SIZE)
        || (base.vocab.version == 3 && base.vocab.size == V3_VOCAB_SIZE)
        || (base.vocab.version == 4 && base.vocab.size == V4_VOCAB_SIZE);
    if !(same || extendable) {
        bail!(
            "--from {}: its vocabulary v{} ({} tokens) is neither this version's (v{}) nor one it extends (v2, v3, v4)",
            dir.display(),
            base.vocab.version,
            base.vocab.size,
            v.version()
        );
    }
    Ok(base)
}

/// The base's architecture with this vocabulary's size: what the new run trains.
pub fn architecture_of(base: &BaseModel) -> Architecture {
    let mut arch = base.architecture.clone();
    match &mut arch {
        Architecture::Transformer(c) => c.vocab_size = Vocab.size(),
        Architecture::Lstm(c) => c.vocab_size = Vocab.size(),
    }
    arch
}

/// Copies the base's weights into `varmap` (built for [`architecture_of`]). A table indexed
/// by token id that is shorter in the base (a vocabulary that gained tokens) keeps its base
/// rows and the fresh initialisation of the new ones; a key smear the base lacks (a run that
/// adds `--smeared-keys`) keeps its initial zeros, so the run starts as the base.
pub fn load_base_weights(dir: &Path, varmap: &VarMap, device: &Device) -> Result<usize> {
    let path = dir.join(WEIGHTS_FILE);
    let base = candle_core::safetensors::load(&path, device)
        .with_context(|| format!("--from: cannot read {}", path.display()))?;
    let vars = varmap.data().lock().expect("varmap lock");
    let mut copied = 0;
    for (name, var) in vars.iter() {
        let Some(t) = base.get(name) else {
            if name.ends_with(".key_smear") {
                continue;
            }
            bail!("--from: {} has no tensor {name}", path.display());
        };
        let (want, have) = (var.dims().to_vec(), t.dims().to_vec());
        let value = if want == have {
            t.clone()
        } else if want.len() == 2 && want[1] == have[1] && have[0] < want[0] {
            let fresh = var.as_tensor().narrow(0, have[0], want[0] - have[0])?;
            Tensor::cat(&[t, &fresh], 0)?
        } else {
            bail!(
                "--from: {name} in {} is {have:?}, this run needs {want:?}",
                path.display()
            );
        };
        var.set(&value)?;
        copied += 1;
    }
    Ok(copied)
}
