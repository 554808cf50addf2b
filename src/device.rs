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

/// Fixes the CPU thread count for the rest of the process, for a command-line tool that has
/// not started any thread yet. Without `RAYON_NUM_THREADS`, candle 0.11 works the count out
/// again for every matmul, reading `/proc/cpuinfo` (15 % of a generation's time in `perf`);
/// setting the variable to the count it would have found makes that a lookup. A plugin must
/// not do this: changing the environment races with its host's threads.
pub fn fix_cpu_thread_count_before_threads_start() {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let n = candle_core::utils::get_num_threads();
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    }
}
