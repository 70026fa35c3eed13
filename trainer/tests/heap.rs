//! `trainer::heap::keep_freed_memory`: memory freed at the end of a "step" is reused by the next
//! one without page faults, where glibc's defaults trim it and fault it in again. Runs without
//! the test harness (`harness = false` in Cargo.toml), on the process's main thread, so every
//! block comes from glibc's main arena and the fault counts are this code's alone.

/// Minor page faults of this process so far (getrusage, RUSAGE_SELF).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn minor_faults() -> i64 {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable rusage.
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) }, 0);
    usage.ru_minflt
}

/// One training-like step: 64 blocks of 4 MiB (256 MiB) allocated, every page written, then all
/// freed. Returns the minor page faults it took.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn step() -> i64 {
    let before = minor_faults();
    let blocks: Vec<Vec<u8>> = (0..64u8).map(|i| vec![i | 1; 4 << 20]).collect();
    assert!(blocks.iter().enumerate().all(|(i, b)| b[b.len() - 1] == i as u8 | 1));
    drop(blocks);
    minor_faults() - before
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn main() {
    let pages = (256 << 20) / 4096;
    // glibc's defaults: the first step's 4 MiB blocks are mmap'ed, which raises the mmap
    // threshold; the second's come from the heap, whose free top (256 MiB) is over the trim
    // threshold (8 MiB) and is trimmed; so the third faults its pages in again.
    step();
    step();
    let default_faults = step();
    assert!(default_faults > pages / 2, "with glibc's defaults a step of {pages} pages faulted only {default_faults} times: this test no longer shows what keep_freed_memory changes");

    assert_eq!(trainer::heap::keep_freed_memory(), Vec::<&str>::new(), "glibc refused a setting");
    step(); // grows the heap once
    let kept_faults = step();
    assert!(kept_faults < pages / 50, "after keep_freed_memory a step of {pages} pages still faulted {kept_faults} times (glibc's defaults: {default_faults})");
    println!("heap: a 256 MiB step faults {default_faults} pages with glibc's defaults, {kept_faults} after keep_freed_memory: ok");
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn main() {
    assert!(trainer::heap::keep_freed_memory().is_empty());
}
