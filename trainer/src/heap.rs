//! Keep the memory libtorch frees between training steps instead of returning it to the OS.
//!
//! Each training step allocates its activations and gradients (hundreds of MB at 96x192 x 8, a few
//! GB at 768x320 x 2) and frees them at its end. glibc's malloc gives a freed block back to the
//! kernel when it was mmap'ed (blocks above `M_MMAP_THRESHOLD`, at most 32 MB) or when the free
//! space at the top of the heap exceeds `M_TRIM_THRESHOLD` (by default twice the largest freed
//! mmap'ed block), so the next step touches fresh pages that the kernel faults in and zeroes one
//! by one. On a 2-core AMD EPYC the demo's 800 steps (96x192 x 8) took 29.3 M minor page faults
//! and 117 s of system time, 899 s in all; with the settings below 0.18 M faults and 762 s (-15 %,
//! the same machine the same hour), and a byte-identical checkpoint: the allocator does not change
//! the arithmetic (RESULTS.md "Session 36"). tract in the runtime reuses its buffers (3 page
//! faults in 50 frames), so the runtime does not need this.
//!
//! The cost: the process keeps its peak heap until it exits (the trainer's peak is what it needs
//! anyway: 100 demo steps peak at 751 MB resident with it, 759 MB without).

/// Sets glibc's malloc to serve every block from the heap (`M_MMAP_MAX` 0) and never to trim it
/// (`M_TRIM_THRESHOLD` 2 GiB, the largest `int`), with 256 MiB of top padding per heap growth
/// (`M_TOP_PAD`: fewer `brk` calls; untouched pages cost no memory). Blocks too large for a
/// thread's arena are still mmap'ed by glibc, as its fallback does. Call once, before training.
///
/// Returns the settings glibc refused (empty when all were taken); on other C libraries (musl,
/// macOS) it does nothing and returns an empty list.
pub fn keep_freed_memory() -> Vec<&'static str> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let settings = [("M_MMAP_MAX", libc::M_MMAP_MAX, 0), ("M_TRIM_THRESHOLD", libc::M_TRIM_THRESHOLD, i32::MAX), ("M_TOP_PAD", libc::M_TOP_PAD, 256 << 20)];
        // SAFETY: mallopt only sets malloc's tuning parameters; each value is within its range.
        settings.into_iter().filter(|&(_, param, value)| unsafe { libc::mallopt(param, value) } != 1).map(|(name, _, _)| name).collect()
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    Vec::new()
}
