//! `runtime config check`.

use std::path::PathBuf;

use firmware_config::DeviceConfig;

/// Arguments of `runtime config check`.
#[derive(clap::Args, Debug)]
pub struct ConfigCheckArgs {
    /// Device configuration TOML.
    pub file: PathBuf,
}

/// Parse and validate a device configuration; print it with every default filled in, and
/// whether the model, camera, replay folder and GPIO lines it names exist on this machine.
///
/// # Errors
/// The file cannot be read or is invalid (naming the key), or a problem was found on this machine.
pub fn config_check(args: ConfigCheckArgs) -> anyhow::Result<()> {
    let ConfigCheckArgs { file } = args;
    let cfg = DeviceConfig::load(&file)?;
    println!("{} is valid. With defaults filled in:\n", file.display());
    println!("{}", toml::to_string_pretty(&cfg)?);
    // Paths are relative to the working directory the runtime starts in.
    println!("on this machine (relative paths from {}):", std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_default());
    let mut problems = 0;
    let mut report = |what: String, r: anyhow::Result<String>| match r {
        Ok(detail) => println!("  ok      {what}{detail}"),
        Err(e) => {
            problems += 1;
            println!("  PROBLEM {what}: {e:#}");
        }
    };
    let model = crate::infer::AnomalyModel::load_engine(&cfg.model.path, 1, cfg.model.engine, cfg.model.onnxruntime_lib.as_deref());
    report(format!("model {}", cfg.model.path.display()), model.as_ref().map(|m| format!(" ({}, {}x{} px, threshold {})", m.metadata.precision, m.metadata.input_width, m.metadata.input_height, m.metadata.threshold)).map_err(|e| anyhow::anyhow!("{e}")));
    let mut replay_first = None;
    match cfg.camera.source {
        firmware_config::CameraSource::V4l2 => {
            let d = cfg.camera.device.clone();
            report(format!("camera {}", d.display()), if d.exists() { Ok(String::new()) } else { Err(anyhow::anyhow!("absent (the runtime retries every {} ms)", cfg.camera.reopen_ms)) });
        }
        firmware_config::CameraSource::Replay => {
            let dir = cfg.camera.replay_dir.clone().unwrap_or_default();
            report(format!("replay folder {}", dir.display()), crate::capture::ReplaySource::open(&dir, cfg.camera.fps, false, crate::bit_depth::BitDepth::FULL).map(|r| format!(" ({} images)", r.len())).map_err(Into::into));
            // The replay's frame size is its images' (camera.width/height do not apply).
            match crate::preflight::first_replay_image(&dir) {
                Ok(h) => {
                    report("replay frame size".into(), Ok(format!(" {}x{} px{} (first image {})", h.width, h.height, if h.grey { ", grey" } else { "" }, h.path.display())));
                    if let Some(roi) = &cfg.roi {
                        let frames = format!("the replay (first image {})", h.path.display());
                        let r = match crate::preflight::roi_problem(roi, h.width, h.height, &frames) {
                            Some(p) => Err(anyhow::anyhow!("{p}")),
                            None => Ok(format!(" (x {} y {} width {} height {} inside {}x{} px)", roi.x, roi.y, roi.width, roi.height, h.width, h.height)),
                        };
                        report("roi".into(), r);
                    }
                    replay_first = Some(h);
                }
                Err(e) => report("replay frame size".into(), Err(e)),
            }
        }
    }
    let out = &cfg.output.dir;
    report(format!("output folder {}", out.display()), match crate::preflight::output_dir_problem(out) {
        Some(p) => Err(anyhow::anyhow!("{p}")),
        None => Ok(" (writable)".into()),
    });
    if let Some(fb) = &cfg.output.framebuffer {
        report(format!("framebuffer {}", fb.display()), crate::framebuffer::FbGeometry::from_sysfs(fb).map(|g| format!(" ({}x{}, {} bpp)", g.width, g.height, g.bits_per_pixel)));
    }
    if cfg.reject.backend == firmware_config::RejectBackend::Gpio {
        let line = cfg.reject.line.clone().unwrap_or_default();
        report(format!("reject line {line}"), line.parse::<crate::gpio::LineSpec>().map_err(anyhow::Error::from).and_then(|s| crate::gpio::resolve(&s)).map(|r| format!(" ({r:?})")));
    }
    if !cfg.camera.controls.is_empty() && cfg.camera.source == firmware_config::CameraSource::Replay {
        println!("  note    camera.controls apply to a V4L2 camera only: ignored with camera.source = \"replay\"");
    }
    if cfg.ready.backend == firmware_config::ReadyBackend::Gpio {
        let line = cfg.ready.line.clone().unwrap_or_default();
        report(format!("ready line {line}"), line.parse::<crate::gpio::LineSpec>().map_err(anyhow::Error::from).and_then(|s| crate::gpio::resolve(&s)).map(|r| format!(" ({r:?})")));
    }
    if cfg.model.acceptance_dir.is_some() && model.is_ok() {
        // The same checks `runtime run` makes at start and at every swap.
        let r = crate::line::swap::check_candidate(&cfg).map(|m| format!(" ({} images judged right, checks took {:.0} ms)", m.accepted_images, m.check_ms));
        report("acceptance set".into(), r);
    }
    if cfg.trigger.mode == firmware_config::TriggerMode::Gpio {
        let line = cfg.trigger.line.clone().unwrap_or_default();
        report(format!("trigger line {line}"), line.parse::<crate::gpio::LineSpec>().map_err(anyhow::Error::from).and_then(|s| crate::gpio::resolve(&s)).map(|r| format!(" ({r:?})")));
    }
    if let Ok(m) = &model {
        if let Some(w) = crate::preflight::grey_camera_warning(&cfg, &cfg.model.path, &m.metadata, replay_first.as_ref()) {
            println!("  WARNING {w}");
        }
        if let Ok(d) = crate::preflight::line_bit_depth(&cfg, &m.metadata) {
            let from = if cfg.camera.bit_depth.is_some() { "camera.bit_depth" } else { "the model's ffcad.bit_depth" };
            println!("  ok      16-bit samples (Y16, 16-bit replay images) read as {d} ({from})");
        }
        if let Some(w) = crate::preflight::bit_depth_warning(&cfg, &cfg.model.path, &m.metadata) {
            println!("  WARNING {w}");
        }
    }
    if let (true, Some(t)) = (cfg.web.enabled, &cfg.web.token_file) {
        report(format!("web token file {}", t.display()), crate::web::read_token(t).map(|_| String::new()));
    }
    if cfg.mqtt.enabled {
        // The broker itself is not contacted: it may be away; the line spools until it is back.
        report(format!("mqtt files for broker {}:{}", cfg.mqtt.host, cfg.mqtt.port), crate::mqtt::check_files(&cfg.mqtt));
    }
    if cfg.reject.delay_ms == 0 {
        println!("  note    reject.delay_ms = 0: pulses fire as soon as the decision is made; set it to the camera-to-ejector time (must exceed the capture->decision p95 `runtime run` prints)");
    }
    anyhow::ensure!(problems == 0, "{problems} problem(s) on this machine (see above)");
    Ok(())
}
