//! Progress bars for long work (indicatif), hidden when not wanted.

use indicatif::{ProgressBar, ProgressStyle};

/// A bar of `len` steps with a label; hidden when `visible` is false.
pub fn bar(len: u64, label: &str, visible: bool) -> ProgressBar {
    if !visible {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template("{prefix:>8} [{bar:30}] {pos}/{len} {msg} ({elapsed}, eta {eta})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    pb.set_prefix(label.to_string());
    pb
}
