//! `runtime collect`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use firmware_config::DeviceConfig;

use crate::bit_depth::BitDepth;
use crate::collect::{collect as collect_frames, CollectOptions, DEFAULT_MIN_CHANGE};

/// Arguments of `runtime collect`.
#[derive(clap::Args, Debug)]
pub struct CollectArgs {
    /// Device configuration TOML: its camera (or replay), trigger and `[roi]` are used.
    #[arg(long)]
    pub config: PathBuf,
    /// Images to save.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub count: u32,
    /// Data set root: images go to `<out>/train/good/` (`trainer train --data <out>` reads it).
    #[arg(long)]
    pub out: PathBuf,
    /// A frame is saved only when its mean absolute difference to the last saved image is at
    /// least this many grey levels (0..=255; 0 saves every frame): a part standing still is
    /// saved once.
    #[arg(long, default_value_t = DEFAULT_MIN_CHANGE)]
    pub min_change: f64,
}

/// Save good frames from the line's camera as training images: each frame cropped to `[roi]` at
/// full resolution, lossless PNG, unchanged frames (a part standing still) skipped, with a
/// progress bar. `Y16` frames are read at `camera.bit_depth` (16 when unset). Ctrl-C stops early
/// and keeps what was saved.
///
/// # Errors
/// The device file is invalid; the source cannot be opened; the folder or an image cannot be
/// written.
pub fn collect(args: CollectArgs) -> anyhow::Result<()> {
    let CollectArgs { config, count, out, min_change } = args;
    let cfg = DeviceConfig::load(&config)?;
    crate::cli::apply_log_level(&cfg.logging.level);
    let depth = cfg.camera.bit_depth.map(BitDepth::new).transpose().map_err(|e| anyhow::anyhow!("camera.bit_depth: {e}"))?.unwrap_or(BitDepth::FULL);
    let mut source = crate::line::setup::open_source(&cfg, depth)?;
    let stop = crate::shutdown::install_handlers();
    let opts = CollectOptions {
        count: count as usize,
        out,
        roi: cfg.roi,
        min_change,
        frame_timeout: Duration::from_millis(u64::from(cfg.camera.timeout_ms)),
        progress: std::io::stderr().is_terminal(),
    };
    let s = collect_frames(source.as_mut(), &opts, &stop)?;
    println!("source      {}", source.describe());
    println!("saved       {} images in {} ({})", s.saved.len(), s.folder.display(), s.stopped_because);
    println!("skipped     {} unchanged (mean difference under {min_change} grey levels), {} unreadable", s.unchanged, s.bad);
    println!("next        trainer train --data {}", opts.out.display());
    Ok(())
}
