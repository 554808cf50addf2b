//! A model on disk: `model.safetensors` plus `config.json` (architecture, vocabulary
//! version and hash, training record, metrics).

use super::copy_guard::{CopyGuard, GUARD_FILE};
use super::{Architecture, Model};
use crate::tokens::{Vocab, V3_VOCAB_SIZE, V4_VOCAB_SIZE};
use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub const WEIGHTS_FILE: &str = "model.safetensors";
pub const CONFIG_FILE: &str = "config.json";

/// The vocabulary a model was trained with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VocabStamp {
    pub version: u32,
    pub hash: String,
    pub size: usize,
}

impl VocabStamp {
    pub fn current() -> Self {
        let v = Vocab;
        Self {
            version: v.version(),
            hash: v.hash(),
            size: v.size(),
        }
    }

    /// Version 3, whose ids this version keeps: its models load and continue (they cannot
    /// infill, [`Vocab::infill_layout`]).
    pub fn v3() -> Self {
        Self {
            version: 3,
            hash: Vocab.v3_hash(),
            size: V3_VOCAB_SIZE,
        }
    }

    /// Version 4, whose ids this version keeps: its models load, continue and fill a gap
    /// in their own prefix-first order.
    pub fn v4() -> Self {
        Self {
            version: 4,
            hash: Vocab.v4_hash(),
            size: V4_VOCAB_SIZE,
        }
    }

    /// Whether a model stamped `self` with an output of `model_vocab_size` rows reads this
    /// version's sequences.
    pub fn is_readable(&self, model_vocab_size: usize) -> bool {
        [Self::current(), Self::v4(), Self::v3()]
            .iter()
            .any(|known| self == known && model_vocab_size == known.size)
    }
}

/// Everything in `config.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelCard {
    pub name: String,
    pub architecture: Architecture,
    pub vocab: VocabStamp,
    /// How it was trained (command, data, steps, time); free-form for the model card.
    #[serde(default)]
    pub training: serde_json::Value,
    /// Held-out metrics at the end of training.
    #[serde(default)]
    pub metrics: serde_json::Value,
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("model folder {0} not found; pass --model with a folder that holds config.json and model.safetensors")]
    MissingDir(PathBuf),
    #[error(
        "config file not found: {0}; a model folder needs config.json beside model.safetensors"
    )]
    MissingConfig(PathBuf),
    #[error("weights file not found: {0}; the model folder is incomplete, train it again or copy model.safetensors there")]
    MissingWeights(PathBuf),
    #[error("{path} is not a valid Continuo model config: {reason}")]
    BadConfig { path: PathBuf, reason: String },
    #[error("{path} was trained with vocabulary v{found_version} ({found_hash}), this Continuo speaks v{expected_version} ({expected_hash}); retrain it with this version, or carry its weights over with `continuo train --from <its folder> --data <midi folder> --out <new folder>`")]
    VocabMismatch {
        path: PathBuf,
        found_version: u32,
        found_hash: String,
        expected_version: u32,
        expected_hash: String,
    },
    #[error("weights in {path} do not match its config.json: {reason}")]
    BadWeights { path: PathBuf, reason: String },
    #[error("copy guard {path} is unreadable: {reason}; delete it, or rebuild it with `continuo copy-guard`")]
    BadCopyGuard { path: PathBuf, reason: String },
    #[error("cannot write model to {path}: {reason}")]
    Write { path: PathBuf, reason: String },
}

/// A model ready to run, with its card.
pub struct LoadedModel {
    pub model: Model,
    pub card: ModelCard,
    pub device: Device,
    pub dir: PathBuf,
    /// Runs of the training data the sampler must not complete; `None` for a model folder
    /// without `copy_guard.safetensors`.
    pub copy_guard: Option<Arc<CopyGuard>>,
}

fn parse_guard(bytes: &[u8], path: PathBuf) -> Result<Arc<CopyGuard>, ModelError> {
    CopyGuard::from_bytes(bytes)
        .map(Arc::new)
        .map_err(|reason| ModelError::BadCopyGuard { path, reason })
}

/// An error message without the backtrace candle appends when `RUST_BACKTRACE` is set: a
/// user reads what went wrong, not where in candle.
pub fn without_backtrace(message: &str) -> String {
    let kept: Vec<&str> = message
        .lines()
        .take_while(|l| {
            let t = l.trim_start();
            !(t.starts_with("0: ") || t == "stack backtrace:" || t.starts_with("Backtrace"))
        })
        .collect();
    kept.join("\n").trim_end().to_string()
}

/// Reads and checks `config.json` alone.
pub fn read_card(dir: &Path) -> Result<ModelCard, ModelError> {
    if !dir.is_dir() {
        return Err(ModelError::MissingDir(dir.to_owned()));
    }
    let config_path = dir.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&config_path)
        .map_err(|_| ModelError::MissingConfig(config_path.clone()))?;
    parse_card(&text, &config_path)
}

/// Parses and checks the text of a `config.json`; `config_path` names it in errors.
pub fn parse_card(text: &str, config_path: &Path) -> Result<ModelCard, ModelError> {
    let config_path = config_path.to_owned();
    let card: ModelCard = serde_json::from_str(text).map_err(|e| ModelError::BadConfig {
        path: config_path.clone(),
        reason: e.to_string(),
    })?;
    if let Err(reason) = card.architecture.check() {
        return Err(ModelError::BadConfig {
            path: config_path,
            reason,
        });
    }
    let expected = VocabStamp::current();
    if !card.vocab.is_readable(card.architecture.vocab_size()) {
        return Err(ModelError::VocabMismatch {
            path: config_path,
            found_version: card.vocab.version,
            found_hash: card.vocab.hash.clone(),
            expected_version: expected.version,
            expected_hash: expected.hash,
        });
    }
    Ok(card)
}

/// Loads a model folder onto `device`, refusing a mismatched vocabulary or weights.
pub fn load_model(dir: &Path, device: &Device) -> Result<LoadedModel, ModelError> {
    let card = read_card(dir)?;
    let weights = dir.join(WEIGHTS_FILE);
    if !weights.is_file() {
        return Err(ModelError::MissingWeights(weights));
    }
    let bad = |e: candle_core::Error| ModelError::BadWeights {
        path: weights.clone(),
        reason: without_backtrace(&e.to_string()),
    };
    // Safety: the file is mapped read-only; Continuo never writes a weights file in place.
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&weights], DType::F32, device) }
        .map_err(bad)?;
    let model = Model::new(&card.architecture, vb).map_err(bad)?;
    let guard_path = dir.join(GUARD_FILE);
    let copy_guard = match std::fs::read(&guard_path) {
        Ok(bytes) => Some(parse_guard(&bytes, guard_path)?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            return Err(ModelError::BadCopyGuard {
                path: guard_path,
                reason: e.to_string(),
            })
        }
    };
    Ok(LoadedModel {
        model,
        card,
        device: device.clone(),
        dir: dir.to_owned(),
        copy_guard,
    })
}

/// Loads a model from the bytes of its files (the plugin embeds the default model).
pub fn load_model_from_bytes(
    config: &str,
    weights: &'static [u8],
    guard: Option<&[u8]>,
    name: &Path,
    device: &Device,
) -> Result<LoadedModel, ModelError> {
    let card = parse_card(config, &name.join(CONFIG_FILE))?;
    let bad = |e: candle_core::Error| ModelError::BadWeights {
        path: name.join(WEIGHTS_FILE),
        reason: without_backtrace(&e.to_string()),
    };
    let vb = VarBuilder::from_slice_safetensors(weights, DType::F32, device).map_err(bad)?;
    let model = Model::new(&card.architecture, vb).map_err(bad)?;
    let copy_guard = guard
        .map(|g| parse_guard(g, name.join(GUARD_FILE)))
        .transpose()?;
    Ok(LoadedModel {
        model,
        card,
        device: device.clone(),
        dir: name.to_owned(),
        copy_guard,
    })
}

/// Writes weights and card into `dir` (created if needed).
pub fn save_model(dir: &Path, varmap: &VarMap, card: &ModelCard) -> Result<(), ModelError> {
    let err = |reason: String| ModelError::Write {
        path: dir.to_owned(),
        reason,
    };
    std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
    // Write then rename, so a reader (the plugin) never maps a half-written file.
    let tmp = dir.join("model.safetensors.tmp");
    varmap.save(&tmp).map_err(|e| err(e.to_string()))?;
    std::fs::rename(&tmp, dir.join(WEIGHTS_FILE)).map_err(|e| err(e.to_string()))?;
    let json = serde_json::to_string_pretty(card).map_err(|e| err(e.to_string()))?;
    std::fs::write(dir.join(CONFIG_FILE), json + "\n").map_err(|e| err(e.to_string()))
}
