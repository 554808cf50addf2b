//! Starting a training run from another model folder's weights (`continuo train --from`):
//! fine-tuning on a user's folder, and carrying a model across a vocabulary version that
//! only appended tokens (v2 → v3 appended the texture prefix).

use crate::model::files::{CONFIG_FILE, WEIGHTS_FILE};
use crate::model::Architecture;
use crate::tokens::{Vocab, V2_VOCAB_SIZE};
use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use serde::Deserialize;
use std::path::Path;

/// What `--from` needs of a base model's `config.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct BaseModel {
    pub name: String,
    pub architecture: Architecture,
    pub vocab: crate::model::files::VocabStamp,
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
    let extendable = base.vocab.version == 2 && base.vocab.size == V2_VOCAB_SIZE;
    if !(same || extendable) {
        bail!(
            "--from {}: its vocabulary v{} ({} tokens) is neither this version's (v{}) nor one it extends (v2)",
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
/// rows and the fresh initialisation of the new ones.
pub fn load_base_weights(dir: &Path, varmap: &VarMap, device: &Device) -> Result<usize> {
    let path = dir.join(WEIGHTS_FILE);
    let base = candle_core::safetensors::load(&path, device)
        .with_context(|| format!("--from: cannot read {}", path.display()))?;
    let vars = varmap.data().lock().expect("varmap lock");
    let mut copied = 0;
    for (name, var) in vars.iter() {
        let Some(t) = base.get(name) else {
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
