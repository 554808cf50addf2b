//! Picks the candle device: CPU unless a GPU feature was built in and one is present.

use candle_core::Device;

/// The best device this build can use; always falls back to the CPU.
pub fn best_device() -> Device {
    #[cfg(feature = "cuda")]
    if let Ok(d) = Device::new_cuda(0) {
        return d;
    }
    #[cfg(feature = "metal")]
    if let Ok(d) = Device::new_metal(0) {
        return d;
    }
    Device::Cpu
}

/// "CPU", "CUDA" or "Metal", for status lines.
pub fn device_name(d: &Device) -> &'static str {
    match d {
        Device::Cpu => "CPU",
        Device::Cuda(_) => "CUDA",
        Device::Metal(_) => "Metal",
    }
}
