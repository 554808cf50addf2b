//! Any bytes as a model folder: the input is split into `config.json`, `model.safetensors` and
//! `copy_guard.safetensors` (two little-endian u16 lengths first), written to a temporary
//! folder and loaded. A folder that loads must also run a forward pass.
#![no_main]

use continuo::model::load_model;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let config_len = u16::from_le_bytes([data[0], data[1]]) as usize;
    let guard_len = u16::from_le_bytes([data[2], data[3]]) as usize;
    let rest = &data[4..];
    let config_len = config_len.min(rest.len());
    let (config, rest) = rest.split_at(config_len);
    let guard_len = guard_len.min(rest.len());
    let (guard, weights) = rest.split_at(guard_len);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), config).unwrap();
    std::fs::write(dir.path().join("model.safetensors"), weights).unwrap();
    if !guard.is_empty() {
        std::fs::write(dir.path().join("copy_guard.safetensors"), guard).unwrap();
    }
    if let Ok(m) = load_model(dir.path(), &candle_core::Device::Cpu) {
        let ids = candle_core::Tensor::new(&[[1u32, 2, 3]], &candle_core::Device::Cpu).unwrap();
        m.model.forward(&ids).expect("a model that loads runs");
    }
});
