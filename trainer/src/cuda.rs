//! Loads libtorch's CUDA backend so that `Device::cuda_if_available()` can find a GPU.
//!
//! Why: PyTorch splits libtorch into `libtorch_cpu.so` and `libtorch_cuda.so`, and nothing of ours
//! calls into the CUDA one, so the linker (`--as-needed`) drops it from the trainer's NEEDED list
//! (`readelf -d target/debug/trainer`: libtorch_cpu and libc10 only). Unloaded, the CUDA backend
//! never registers and libtorch reports no GPU: on a GPU workstation the trainer silently trained on
//! the CPU (tch-rs issue #980, PyTorch issue #36437). Loading the library registers the backend
//! through its static initialisers, as `LD_PRELOAD=<torch/lib>/libtorch_cuda.so` did on the H200 of
//! the `device` tool (RESULTS.md, "Session 17").

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The CUDA backend library next to the loaded `libtorch_cpu.so`, once loaded; `None` where the
/// libtorch in use has none (a CPU-only build), on systems other than Linux, or where loading it
/// failed (the reason is logged at `warn`). Loads at most once per process.
///
/// The library is taken from the folder the process already loaded `libtorch_cpu.so` from, never
/// from a search path, so the CUDA backend always matches the CPU library's version.
pub fn load_cuda_backend() -> Option<&'static Path> {
    static LOADED: OnceLock<Option<PathBuf>> = OnceLock::new();
    LOADED.get_or_init(load_once).as_deref()
}

/// Whether an NVIDIA driver is present (`/dev/nvidiactl` or `/proc/driver/nvidia`): without one no
/// GPU can be used, so the CUDA backend (~350 MB of mapped libraries, ~0.1-0.3 s) is not loaded.
pub fn nvidia_driver_present() -> bool {
    Path::new("/dev/nvidiactl").exists() || Path::new("/proc/driver/nvidia").exists()
}

/// Where this process loaded `libtorch_cpu.so` from, read from `/proc/self/maps`.
pub fn libtorch_cpu_path() -> Option<PathBuf> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| p.ends_with("/libtorch_cpu.so"))
        .map(PathBuf::from)
}

/// Whether `/proc/self/maps` lists a library of this file name (e.g. `libtorch_cuda.so`).
pub fn is_mapped(file_name: &str) -> bool {
    std::fs::read_to_string("/proc/self/maps")
        .map(|m| m.lines().any(|l| l.split_whitespace().nth(5).is_some_and(|p| p.ends_with(&format!("/{file_name}")))))
        .unwrap_or(false)
}

#[cfg(target_os = "linux")]
fn load_once() -> Option<PathBuf> {
    // libtorch_cpu.so is in the binary's NEEDED list: mapped before main.
    let cpu = libtorch_cpu_path()?;
    let cuda = cpu.with_file_name("libtorch_cuda.so");
    if !cuda.is_file() {
        tracing::warn!(libtorch = %cpu.display(), "this libtorch has no CUDA backend (a CPU-only build): training on the CPU");
        return None;
    }
    let c = std::ffi::CString::new(cuda.as_os_str().as_encoded_bytes()).ok()?;
    // SAFETY: a NUL-terminated path; the handle is kept open for the life of the process (never
    // dlclose'd), as the registered backend lives in it.
    let handle = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
    if handle.is_null() {
        // SAFETY: dlerror returns a thread-local NUL-terminated string or null.
        let why = unsafe { libc::dlerror() };
        let why = if why.is_null() { "unknown".into() } else { unsafe { std::ffi::CStr::from_ptr(why) }.to_string_lossy().into_owned() };
        tracing::warn!(library = %cuda.display(), reason = %why, "could not load libtorch's CUDA backend: training on the CPU");
        return None;
    }
    Some(cuda)
}

#[cfg(not(target_os = "linux"))]
fn load_once() -> Option<PathBuf> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The venv's torch (PyPI's CUDA build) ships libtorch_cuda.so: after the call it is mapped and
    /// its backend registered, whether or not this machine has a GPU. With a CPU-only libtorch
    /// there is nothing to load.
    #[test]
    fn loads_the_cuda_backend_next_to_libtorch_cpu() {
        let _ = tch::Tensor::zeros([1], (tch::Kind::Float, tch::Device::Cpu));
        let cpu = libtorch_cpu_path().expect("libtorch_cpu.so is mapped in a process that used tch");
        let shipped = cpu.with_file_name("libtorch_cuda.so");
        let loaded = load_cuda_backend();
        let gpu = nvidia_driver_present();
        if shipped.is_file() {
            assert_eq!(loaded, Some(shipped.as_path()));
            assert!(is_mapped("libtorch_cuda.so"), "libtorch_cuda.so not in /proc/self/maps after loading");
            // A second call loads nothing new and answers the same.
            assert_eq!(load_cuda_backend(), Some(shipped.as_path()));
            // The backend is registered: a CUDA tensor now fails for want of a driver (or is made,
            // on a GPU), not for want of a backend. Before the load it failed with "Could not run
            // 'aten::empty.memory_format' with arguments from the 'CUDA' backend" (seen here).
            match tch::Tensor::f_zeros([1], (tch::Kind::Float, tch::Device::Cuda(0))) {
                Ok(_) => assert!(gpu, "a CUDA tensor without an NVIDIA driver"),
                Err(e) => {
                    let e = e.to_string();
                    assert!(!e.contains("from the 'CUDA' backend"), "CUDA backend not registered after the load: {e}");
                    assert!(e.contains("NVIDIA driver") || gpu, "unexpected error: {e}");
                }
            }
        } else {
            assert_eq!(loaded, None);
        }
        if !gpu {
            assert!(!tch::Cuda::is_available());
        }
    }

    #[test]
    fn is_mapped_tells_mapped_from_absent_libraries() {
        let _ = tch::Tensor::zeros([1], (tch::Kind::Float, tch::Device::Cpu));
        assert!(is_mapped("libtorch_cpu.so"));
        assert!(!is_mapped("libnot_a_library_of_ours.so"));
    }
}
