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

/// The test's name, for the filter and the libtest-style report lines that `scripts/test.sh` counts.
const NAME: &str = "a_freed_step_is_reused_without_page_faults";

/// Runs the test unless a name filter (a non-flag argument, as libtest takes it) excludes it,
/// and reports in libtest's format, so `scripts/test.sh`'s total counts it. A failure panics:
/// the binary exits non-zero and cargo reports it.
fn main() {
    let filters: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    if !filters.is_empty() && !filters.iter().any(|f| NAME.contains(f.as_str())) {
        println!("\nrunning 0 tests\n\ntest result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 1 filtered out\n");
        return;
    }
    println!("\nrunning 1 test");
    let report = a_freed_step_is_reused_without_page_faults();
    println!("test {NAME} ... ok ({report})\n\ntest result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out\n");
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn a_freed_step_is_reused_without_page_faults() -> String {
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
    format!("a 256 MiB step faults {default_faults} pages with glibc's defaults, {kept_faults} after keep_freed_memory")
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn a_freed_step_is_reused_without_page_faults() -> String {
    assert!(trainer::heap::keep_freed_memory().is_empty());
    "not glibc: keep_freed_memory does nothing".into()
}
