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

/// The mapped files of this process, from `/proc/self/maps`: the path is the rest of a line from
/// its first `/` (paths may hold spaces), without the kernel's ` (deleted)` suffix.
fn mapped_paths() -> Vec<PathBuf> {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    maps.lines()
        .filter_map(|l| l.find('/').map(|i| &l[i..]))
        .map(|p| PathBuf::from(p.strip_suffix(" (deleted)").unwrap_or(p)))
        .collect()
}

/// Whether `path`'s file name is `name`, or for a `name` ending in `.so` a versioned `name.X`
/// (`libtorch_cpu.so.2.11`).
fn is_library(path: &Path, name: &str) -> bool {
    path.file_name().and_then(|f| f.to_str()).is_some_and(|f| f == name || (name.ends_with(".so") && f.starts_with(&format!("{name}."))))
}

/// Where this process loaded `libtorch_cpu.so` (or a versioned `libtorch_cpu.so.X`) from.
pub fn libtorch_cpu_path() -> Option<PathBuf> {
    mapped_paths().into_iter().find(|p| is_library(p, "libtorch_cpu.so"))
}

/// Whether this process has mapped a library of this file name (e.g. `libtorch_cuda.so`, or a
/// versioned `libtorch_cuda.so.X`).
pub fn is_mapped(file_name: &str) -> bool {
    mapped_paths().iter().any(|p| is_library(p, file_name))
}

#[cfg(target_os = "linux")]
fn load_once() -> Option<PathBuf> {
    // libtorch_cpu.so is in the binary's NEEDED list: mapped before main.
    let Some(cpu) = libtorch_cpu_path() else {
        tracing::warn!("libtorch_cpu.so not found in /proc/self/maps: cannot load libtorch's CUDA backend; training on the CPU");
        return None;
    };
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
    }

    #[test]
    fn is_mapped_tells_mapped_from_absent_libraries() {
        let _ = tch::Tensor::zeros([1], (tch::Kind::Float, tch::Device::Cpu));
        assert!(is_mapped("libtorch_cpu.so"));
        assert!(!is_mapped("libnot_a_library_of_ours.so"));
        assert!(!is_mapped("libtorch_cpu"), "a prefix of a name is not the name");
    }

    #[test]
    fn library_names_with_versions_and_paths_with_spaces() {
        assert!(is_library(Path::new("/opt/My Projects/.venv/torch/lib/libtorch_cpu.so"), "libtorch_cpu.so"));
        assert!(is_library(Path::new("/usr/lib/libtorch_cpu.so.2.11"), "libtorch_cpu.so"));
        assert!(!is_library(Path::new("/usr/lib/libtorch_cpu.sox"), "libtorch_cpu.so"));
        assert!(!is_library(Path::new("/usr/lib/libtorch_cuda.so"), "libtorch_cpu.so"));
    }
}
