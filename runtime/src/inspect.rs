//! Offline inspection of image files (DESIGN.md §6 stages 2-7 on files instead of a camera):
//! preprocess -> tract inference -> decide -> simulated reject -> overlay -> JSONL event, plus a
//! summary with counts and, where the MVTec layout gives labels and masks, image/pixel metrics.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use firmware_config::OverlayMode;
use serde::Serialize;

use crate::dataset::{collect_inputs, Sample};
use crate::decide::Verdict;
use crate::evaluation::{mask_for_metrics, render_defect_areas, Accumulator, MetricReport};
use crate::events::{EventLog, StageLatency};
use crate::infer::AnomalyModel;
use crate::inspector::{overlay_wanted, FrameOutcome, Inspector};
use crate::output::{overlay_name, parse_overlay_name, write_png_atomic, OutputErrors};
use crate::bit_depth::BitDepth;
use crate::preprocess::load_image;
use crate::reject::{Pulse, RejectOutput, SimulatedReject};

/// What to inspect and where to write.
#[derive(Debug, Clone)]
pub struct InspectOptions {
    pub model: PathBuf,
    /// Image files and/or folders (searched recursively for PNG/JPEG).
    pub inputs: Vec<PathBuf>,
    pub out_dir: PathBuf,
    /// Replaces the model's threshold when set.
    pub threshold: Option<f32>,
    pub overlays: OverlayMode,
    /// Reject pulse delay and width, ms (simulated line).
    pub reject_delay_ms: u32,
    pub reject_pulse_ms: u32,
    /// Pulse the reject line for a frame that cannot be inspected (fail-safe: an unchecked part
    /// must not pass as good). Such frames are still counted as `bad`, not as rejects.
    pub reject_unreadable: bool,
    /// Inference threads (tract matmuls), >= 1.
    pub threads: usize,
    /// Region of each image that is inspected, px (as on the line: an image the ROI does not fit
    /// is `BAD`).
    pub roi: Option<crate::preprocess::Roi>,
    /// Show a progress bar on stderr.
    pub progress: bool,
    /// Significant bits of 16-bit image samples ([`crate::bit_depth`]); `None`: the model's
    /// (`ffcad.bit_depth`, that of its training images).
    pub bit_depth: Option<BitDepth>,
    /// Inference engine, and the ONNX Runtime library for [`crate::infer::ModelEngine::Onnxruntime`].
    pub engine: crate::infer::ModelEngine,
    pub onnxruntime_lib: Option<PathBuf>,
    /// How many images the report's lists name ([`crate::extremes::Extremes`]; 0: none).
    pub listed: usize,
}

impl InspectOptions {
    /// `model` judging `inputs`, results in `out_dir`, with the CLI's defaults: the model's
    /// threshold, overlays of rejects, a 0 ms / 50 ms simulated pulse, fail-safe pulses for `BAD`
    /// files, one thread, no ROI, no progress bar, the model's bit depth, lists of 5 images.
    pub fn new(model: PathBuf, inputs: Vec<PathBuf>, out_dir: PathBuf) -> Self {
        Self { model, inputs, out_dir, threshold: None, overlays: OverlayMode::Rejects, reject_delay_ms: 0, reject_pulse_ms: 50, reject_unreadable: true, threads: 1, roi: None, progress: false, bit_depth: None, engine: crate::infer::ModelEngine::Tract, onnxruntime_lib: None, listed: crate::extremes::LISTED }
    }
}

/// Result of a run; also written to `<out_dir>/summary.json`.
#[derive(Debug, Clone, Serialize)]
pub struct InspectSummary {
    pub model: PathBuf,
    /// How the model scores ([`crate::metadata::ModelMetadata::scoring`]).
    #[serde(default)]
    pub scoring: String,
    pub threshold: f32,
    pub inspected: usize,
    pub ok: usize,
    pub rejected: usize,
    /// Files that could not be inspected (`BAD` events: unreadable, truncated, too small or large,
    /// ROI outside the image).
    pub bad: usize,
    pub mean_latency: StageLatency,
    pub metrics: Option<MetricReport>,
    pub events: PathBuf,
    /// Folder of the overlay PNGs (created even when none are wanted, so earlier runs' overlays
    /// are cleared from it).
    pub overlays: PathBuf,
    /// Overlay PNGs written by this run (0 with `--overlays none`).
    #[serde(default)]
    pub overlays_written: usize,
    pub pulses: Vec<Pulse>,
    /// Score of every image, in event order (`None` for `BAD` ones).
    pub scores: Vec<(String, Option<f32>)>,
    /// The least normal good images and the lowest-scored defective ones, by name.
    pub extremes: crate::extremes::Extremes,
    /// The overlays of each list on one picture ([`crate::contact_sheet`]); none without overlays.
    pub sheets: Vec<crate::contact_sheet::Sheet>,
    /// Output writes that failed (event lines, overlays, the summary; e.g. a full disk). The
    /// images were inspected all the same; the run reports them at the end.
    pub output_write_errors: u64,
    /// Images of the other colour than the model's training images (grey ones for a colour
    /// model, or the reverse; [`crate::preflight::colour_mismatch`]): inspected, but their scores
    /// do not mean what the threshold assumes.
    #[serde(default)]
    pub colour_mismatches: usize,
    /// Files inside the input folders that are not PNG/JPEG by their extension: not inspected,
    /// counted and named in the log (the first 5) so nothing is skipped silently.
    pub ignored_files: Vec<PathBuf>,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Runs the inspection: a driver over one [`Inspector`] (the frame -> verdict path `runtime run`
/// uses too). A file that cannot be read or decoded, or cannot be inspected as configured (e.g.
/// the ROI does not fit it), is logged, recorded as a `BAD` event naming the file and the reason,
/// pulsed when [`InspectOptions::reject_unreadable`] (fail-safe), and the run goes on; only a bad
/// model, a missing input path or an output folder that cannot be created stop it. An event or
/// overlay that cannot be written once the run has started (e.g. a full disk) is counted in
/// [`InspectSummary::output_write_errors`] and logged at most once a minute; the image stays
/// inspected and no partial overlay file is left. Overlays are named by
/// [`crate::output::overlay_name`]; those of earlier runs in the same folder are removed first.
///
/// Errors also when the threshold is not a finite number of at least
/// [`firmware_config::MIN_THRESHOLD`], and when no image at all could be
/// inspected (after writing the events and the summary).
pub fn inspect(opts: &InspectOptions) -> anyhow::Result<InspectSummary> {
    if let Some(t) = opts.threshold {
        if let Some(why) = firmware_config::threshold_problem(t) {
            anyhow::bail!("--threshold {why}");
        }
    }
    let model = AnomalyModel::load_engine(&opts.model, opts.threads, opts.engine, opts.onnxruntime_lib.as_deref())?;
    let bit_depth = opts.bit_depth.unwrap_or(model.metadata.bit_depth);
    let mut inspector = Inspector::new(model, opts.threshold, opts.roi)?;
    let overlay_dir = opts.out_dir.join("overlays");
    std::fs::create_dir_all(&overlay_dir).with_context(|| format!("cannot create output folder {}", overlay_dir.display()))?;
    clear_old_overlays(&overlay_dir)?;
    // Never inspect our own outputs when the output folder lies inside an input folder.
    let out_canon = opts.out_dir.canonicalize().ok();
    let collected_inputs = collect_inputs(&opts.inputs)?;
    if !collected_inputs.ignored.is_empty() {
        let first: Vec<String> = collected_inputs.ignored.iter().take(5).map(|p| p.display().to_string()).collect();
        tracing::warn!("{} files in the input folders are not .png/.jpg/.jpeg and are not inspected: {}{}", collected_inputs.ignored.len(), first.join(", "), if collected_inputs.ignored.len() > 5 { ", ..." } else { "" });
    }
    let samples: Vec<Sample> = collected_inputs
        .samples
        .into_iter()
        .filter(|s| !matches!((&out_canon, s.image.canonicalize()), (Some(o), Ok(p)) if p.starts_with(o)))
        .collect();
    anyhow::ensure!(!samples.is_empty(), "no PNG or JPEG images found in {:?}", opts.inputs);
    let events_path = opts.out_dir.join("events.jsonl");
    let mut log = EventLog::create(&events_path)?;
    let mut errors = OutputErrors::new();
    let threshold = inspector.threshold();
    let mut reject = SimulatedReject::new(Duration::from_millis(opts.reject_delay_ms.into()), Duration::from_millis(opts.reject_pulse_ms.into()));
    let bar = crate::progress::bar(samples.len() as u64, "inspect", opts.progress);
    // Overlays of earlier runs are cleared above, so names need no start time: run 0, the same
    // names on every run (outputs of two runs can be compared file by file).
    let run_id = 0;

    let (mut ok, mut rejected, mut bad) = (0, 0, 0);
    let mut overlays_written = 0usize;
    let mut total = StageLatency::default();
    let (mw, mh) = inspector.model().input_size();
    let mut collected = Accumulator::new(mw as usize, mh as usize);
    let mut scores = Vec::new();
    let mut overlays: Vec<Option<String>> = Vec::new();
    let model_colour = inspector.model().metadata.input_colour;
    let model_label = inspector.model().id().label();
    let mut colour_mismatches = 0usize;
    for (frame_id, sample) in samples.iter().enumerate() {
        let frame_id = frame_id as u64;
        let source = sample.image.display().to_string();
        let t = Instant::now();
        let image = load_image(&sample.image, bit_depth);
        let load_ms = ms(t.elapsed());
        if let Some(why) = image.as_ref().ok().and_then(|img| crate::preflight::colour_mismatch(model_colour, img)) {
            if colour_mismatches == 0 {
                tracing::warn!("{source} is {why}: its score is not comparable with the threshold");
            }
            colour_mismatches += 1;
        }
        let outcome = match &image {
            Ok(img) => inspector.inspect(img, &source),
            Err(e) => FrameOutcome::bad(e.to_string(), threshold),
        };
        match outcome.verdict {
            Verdict::Ok => ok += 1,
            Verdict::Reject => rejected += 1,
            Verdict::Bad | Verdict::Late => {
                bad += 1;
                tracing::warn!(frame = frame_id, file = %source, "not inspected: {}", outcome.reason.as_deref().unwrap_or(""));
            }
        }
        if outcome.verdict.pulses(opts.reject_unreadable) {
            if let Err(e) = reject.reject(frame_id) {
                tracing::error!(frame = frame_id, "reject output failed: {e:#}");
            }
        }
        // Masks are read only to score the run, not on the inspection path; a broken mask is
        // logged and the image leaves the pixel metrics.
        // The mask file of a labelled defect whose mask the metrics could use: ringed on its overlay.
        let mut ring_mask = None;
        if let (Some(defective), Some(score), Some(map)) = (sample.is_defective, outcome.score, outcome.anomaly_map) {
            let frame = image.as_ref().ok().map(|i| (i.width(), i.height()));
            let mask = mask_for_metrics(sample, frame, opts.roi, mw, mh);
            collected.add(score, defective, mask.as_deref().map(|m| (map, m)));
            ring_mask = sample.mask.as_deref().filter(|_| defective && mask.is_some());
        }
        let t = Instant::now();
        let mut overlay = None;
        if let (true, Ok(img)) = (overlay_wanted(opts.overlays, outcome.verdict), &image) {
            if let Some(mut drawn) = outcome.overlay(&img.to_rgb8(), opts.roi, crate::overlay::OverlayFit::File) {
                // The labelled defect, ringed: where a missed one is on the picture. Read again at
                // the frame's (ROI's) own size, as at the model's input a 1 px defect may vanish;
                // only when an overlay is drawn.
                let (cw, ch) = opts.roi.map_or((img.width(), img.height()), |r| (r.width, r.height));
                if let Some(mask) = ring_mask.and_then(|path| crate::preprocess::load_mask(path, Some((img.width(), img.height())), opts.roi, cw, ch).ok()) {
                    let (sx, sy) = (drawn.width() as f64 / img.width() as f64, drawn.height() as f64 / img.height() as f64);
                    let (x, y, w, h) = opts.roi.map_or((0, 0, img.width(), img.height()), |r| (r.x, r.y, r.width, r.height));
                    let region = ((x as f64 * sx) as u32, (y as f64 * sy) as u32, (w as f64 * sx).round() as u32, (h as f64 * sy).round() as u32);
                    let thickness = crate::overlay::ring_thickness(drawn.width());
                    crate::overlay::outline_mask(&mut drawn, &mask, cw, ch, region, thickness);
                }
                let path = opts.out_dir.join(overlay_name(run_id, frame_id, Some(&sample.image)));
                // A failed overlay is an output error, not an uninspected image.
                match write_png_atomic(&path, &drawn) {
                    Ok(()) => {
                        overlay = Some(path.display().to_string());
                        overlays_written += 1;
                    }
                    Err(e) => {
                        errors.record(&format_args!("{e:#}"));
                    }
                }
            }
        }
        let mut ev = outcome.event(frame_id, source, overlay);
        ev.model = Some(model_label.to_string());
        ev.latency.load_ms = load_ms;
        ev.latency.overlay_ms = if ev.overlay.is_some() { ms(t.elapsed()) } else { 0.0 };
        if ev.verdict.is_inspected() {
            add_latency(&mut total, &ev.latency);
        }
        scores.push((ev.source.clone(), ev.score));
        overlays.push(ev.overlay.clone());
        if let Err(e) = log.write(&ev) {
            errors.record(&format_args!("{e:#}"));
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    reject.release()?;
    let inspected = ok + rejected;
    let n = inspected.max(1) as f64;
    let mean_latency = StageLatency {
        load_ms: total.load_ms / n,
        preprocess_ms: total.preprocess_ms / n,
        infer_ms: total.infer_ms / n,
        decide_ms: total.decide_ms / n,
        overlay_ms: total.overlay_ms / n,
    };
    let mut summary = InspectSummary {
        model: opts.model.clone(),
        scoring: inspector.model().metadata.scoring(),
        threshold,
        inspected,
        ok,
        rejected,
        bad,
        mean_latency,
        metrics: collected.report(Some(threshold)),

        events: events_path,
        overlays: overlay_dir,
        overlays_written,
        pulses: reject.pulses().to_vec(),
        extremes: crate::extremes::Extremes::from_scores(
            samples.iter().zip(&scores).zip(&overlays).map(|((sample, (source, score)), overlay)| crate::extremes::Scored { image: source, is_defective: sample.is_defective, score: *score, overlay: overlay.as_deref() }),
            opts.listed,
            threshold,
        ),
        scores,
        sheets: Vec::new(),
        output_write_errors: errors.count(),
        colour_mismatches,
        ignored_files: collected_inputs.ignored,
    };
    // A sheet that fails is an output error like an overlay: the images were inspected.
    summary.sheets = crate::contact_sheet::write_sheets(&summary.extremes, &opts.out_dir, |e| {
        errors.record(&format_args!("{e:#}"));
    });
    summary.output_write_errors = errors.count();
    let path = opts.out_dir.join("summary.json");
    if let Err(e) = crate::output::write_atomic(&path, serde_json::to_string_pretty(&summary)?.as_bytes(), false) {
        errors.record(&e);
        summary.output_write_errors = errors.count();
    }
    anyhow::ensure!(
        summary.inspected > 0,
        "none of the {} images could be inspected (see the errors in {})",
        summary.bad,
        summary.events.display()
    );
    Ok(summary)
}

/// Removes overlay PNGs of an earlier run so the folder shows this run only: those named by
/// [`overlay_name`], and `NNNNN_<stem>.png` of versions before it; other files are left alone.
fn clear_old_overlays(dir: &Path) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let old_scheme = name.ends_with(".png") && name.len() > 6 && name[..5].bytes().all(|b| b.is_ascii_digit()) && name.as_bytes()[5] == b'_';
        if old_scheme || parse_overlay_name(&name).is_some() {
            std::fs::remove_file(entry.path()).with_context(|| format!("cannot remove old overlay {}", entry.path().display()))?;
        }
    }
    Ok(())
}

fn add_latency(total: &mut StageLatency, l: &StageLatency) {
    total.load_ms += l.load_ms;
    total.preprocess_ms += l.preprocess_ms;
    total.infer_ms += l.infer_ms;
    total.decide_ms += l.decide_ms;
    total.overlay_ms += l.overlay_ms;
}

/// Human-readable report of a summary: counts, metrics, latency and where files went.
pub fn render_summary(s: &InspectSummary) -> String {
    let f = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{v:.4}"));
    let mut out = String::new();
    out.push_str(&format!("model      {}\nscoring    {}\nthreshold  {:.4}\n", s.model.display(), s.scoring, s.threshold));
    out.push_str(&format!("images     {} inspected: {} OK, {} REJECT; {} BAD (not inspected)\n", s.inspected, s.ok, s.rejected, s.bad));
    if !s.ignored_files.is_empty() {
        out.push_str(&format!("ignored    {} files that are not .png/.jpg/.jpeg (listed in summary.json)\n", s.ignored_files.len()));
    }
    if let Some(m) = s.metrics.as_ref().filter(|m| m.defective_images == 0 || m.defective_images == m.labelled_images) {
        // One class only (e.g. a train/good folder): no metric is defined, a table of n/a and
        // 0.000 would read as a result.
        if m.defective_images == 0 {
            out.push_str(&format!("labels     {} images, 0 of them defective: AUROC, AP, AUPRO and F1 need both good and defective images\n", m.labelled_images));
        } else {
            // Defective images only: the maps still have good pixels around the defects, and how
            // many images the threshold rejects (recall), per defect size, still says something.
            out.push_str(&format!("labels     {} images, all defective: image AUROC and F1 need good images too; the pixel metrics use the good pixels around the defects\n", m.labelled_images));
            out.push_str(&format!("\n| metric | value |\n|---|---|\n| pixel AUROC | {} |\n| pixel AP | {} |\n| AUPRO (FPR <= 0.3) | {} |\n", f(m.pixel_auroc), f(m.pixel_ap), f(m.aupro)));
            if let Some(p) = &m.at_threshold {
                out.push_str(&format!("| defective images rejected at threshold (recall) | {} of {} ({:.3}) |\n", (p.recall * m.defective_images as f64).round(), m.defective_images, p.recall));
            }
            // The first note repeats the labels line.
            for note in m.notes().iter().skip(1) {
                out.push_str(&format!("({note})\n"));
            }
            out.push('\n');
            out.push_str(&render_defect_areas(&m.by_defect_area, m.defective_images));
        }
    } else if let Some(m) = &s.metrics {
        out.push_str(&format!("\n| metric | value |\n|---|---|\n| labelled images (defective) | {} ({}) |\n", m.labelled_images, m.defective_images));
        out.push_str(&format!("| image AUROC | {} |\n| pixel AUROC | {} |\n| pixel AP | {} |\n| AUPRO (FPR <= 0.3) | {} |\n| image F1-max | {} (at threshold {}) |\n", f(m.image_auroc), f(m.pixel_auroc), f(m.pixel_ap), f(m.aupro), f(m.image_f1_max), m.image_f1_threshold.map_or("n/a".into(), |t| format!("{t:.4}"))));
        if let Some(p) = &m.at_threshold {
            out.push_str(&format!("| precision / recall / F1 at threshold | {:.3} / {:.3} / {:.3} |\n", p.precision, p.recall, p.f1));
        }
        for note in m.notes() {
            out.push_str(&format!("({note})\n"));
        }
        out.push('\n');
        out.push_str(&render_defect_areas(&m.by_defect_area, m.defective_images));
    }
    out.push_str(&s.extremes.render());
    let l = &s.mean_latency;
    out.push_str(&format!(
        "latency ms (mean per image): load {:.1}, preprocess {:.1}, infer {:.1}, decide {:.2}, overlay {:.1}\n",
        l.load_ms, l.preprocess_ms, l.infer_ms, l.decide_ms, l.overlay_ms
    ));
    out.push_str(&format!("reject pulses (simulated): {}\nevents     {}\n", s.pulses.len(), s.events.display()));
    out.push_str(&match s.overlays_written {
        0 if s.output_write_errors > 0 => "overlays   none written (see --overlays, and the failed writes below)\n".to_string(),
        0 => "overlays   none written (see --overlays)\n".to_string(),
        n => format!("overlays   {n} in {}\n", s.overlays.display()),
    });
    for sheet in &s.sheets {
        out.push_str(&sheet.render());
    }
    if s.colour_mismatches > 0 {
        out.push_str(&format!(
            "WARNING    {} images are of the other colour than the model's training images (grey vs colour): their verdicts are unreliable; inspect images from the camera format the model was trained on\n",
            s.colour_mismatches
        ));
    }
    if s.output_write_errors > 0 {
        out.push_str(&format!("WARNING    {} output writes failed (events, overlays, sheets or summary; full disk?): the files above are incomplete\n", s.output_write_errors));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_file_is_inspected_once_and_non_images_are_counted() {
        let d = tempfile::tempdir().unwrap();
        let model = d.path().join("m.onnx");
        crate::synthetic::write_brightness_model(&model, 32, 16, 0.5).unwrap();
        let imgs = d.path().join("d");
        std::fs::create_dir(&imgs).unwrap();
        image::RgbImage::from_pixel(32, 16, image::Rgb([10, 10, 10])).save(imgs.join("g1.png")).unwrap();
        std::fs::write(imgs.join("readme.txt"), b"not an image").unwrap();
        // The same file three ways: relative to the folder, absolute, and through `..`.
        let inputs = vec![imgs.join("g1.png"), d.path().join("d/../d/g1.png"), imgs.clone()];
        let out = d.path().join("out");
        let opts = InspectOptions { overlays: OverlayMode::None, reject_pulse_ms: 10, ..InspectOptions::new(model, inputs, out.clone()) };
        let s = inspect(&opts).unwrap();
        assert_eq!((s.inspected, s.bad), (1, 0), "one file, inspected once");
        assert_eq!(std::fs::read_to_string(out.join("events.jsonl")).unwrap().lines().count(), 1);
        assert_eq!(s.ignored_files, vec![imgs.join("readme.txt")]);
        assert!(render_summary(&s).contains("ignored    1 files"), "{}", render_summary(&s));
        // No overlay was asked for: the report says so instead of naming an empty folder.
        assert_eq!(s.overlays_written, 0);
        assert!(render_summary(&s).contains("overlays   none written"), "{}", render_summary(&s));
        let all = InspectOptions { overlays: OverlayMode::All, reject_pulse_ms: 10, ..InspectOptions::new(opts.model.clone(), vec![imgs.clone()], out.clone()) };
        let s = inspect(&all).unwrap();
        let pngs = std::fs::read_dir(out.join("overlays")).unwrap().filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "png")).count();
        assert_eq!((s.overlays_written, pngs), (1, 1));
        assert!(render_summary(&s).contains(&format!("overlays   1 in {}", out.join("overlays").display())), "{}", render_summary(&s));
    }

    /// Under `root`: a 32x16 brightness model `m.onnx` and flat grey 32x16 images `test/<class>/<name>.png`
    /// for each (class, name) of `images`; `ground_truth/crack/a_mask.png` marks a 3x4 px defect
    /// at x 24-26, y 0-3. Returns the model and the crack masks' folder.
    fn flat_crack_set(root: &Path, images: &[(&str, &str)]) -> (PathBuf, PathBuf) {
        let model = root.join("m.onnx");
        crate::synthetic::write_brightness_model(&model, 32, 16, 0.5).unwrap();
        let gt = root.join("ground_truth/crack");
        std::fs::create_dir_all(&gt).unwrap();
        for (class, name) in images {
            std::fs::create_dir_all(root.join("test").join(class)).unwrap();
            image::RgbImage::from_pixel(32, 16, image::Rgb([200, 200, 200])).save(root.join("test").join(class).join(format!("{name}.png"))).unwrap();
        }
        image::GrayImage::from_fn(32, 16, |x, y| image::Luma([if (24..27).contains(&x) && y < 4 { 255 } else { 0 }])).save(gt.join("a_mask.png")).unwrap();
        (model, gt)
    }

    #[test]
    fn overlays_of_labelled_defects_ring_the_mask_where_the_defect_is() {
        let d = tempfile::tempdir().unwrap();
        let (model, _) = flat_crack_set(d.path(), &[("crack", "a"), ("good", "g")]);
        let ring = |roi| {
            let out = d.path().join("out");
            let opts = InspectOptions { overlays: OverlayMode::All, roi, ..InspectOptions::new(model.clone(), vec![d.path().join("test")], out.clone()) };
            let s = inspect(&opts).unwrap();
            assert_eq!(s.overlays_written, 2);
            let mut by_image: Vec<(String, Vec<(u32, u32)>)> = std::fs::read_dir(out.join("overlays"))
                .unwrap()
                .map(|e| {
                    let p = e.unwrap().path();
                    let img = image::open(&p).unwrap().to_rgb8();
                    (p.file_name().unwrap().to_string_lossy().into_owned(), img.enumerate_pixels().filter(|q| q.2 .0 == crate::overlay::MASK_OUTLINE).map(|q| (q.0, q.1)).collect())
                })
                .collect();
            by_image.sort();
            by_image
        };
        // The ring just outside a region of x0..=x1, y 0..=y1 (the image's top edge has none).
        let around = |x0: u32, x1: u32, y1: u32| -> Vec<(u32, u32)> { (0..=y1 + 1).flat_map(|y| (x0 - 1..=x1 + 1).map(move |x| (x, y))).filter(|&(x, y)| !((x0..=x1).contains(&x) && y <= y1)).collect() };
        // The whole frame, enlarged 10x to the 320 px of a file overlay: the defect at x 240-269, y 0-39.
        let got = ring(None);
        assert!(got[0].0.contains("a.png") && got[1].0.contains("g.png"), "{got:?}");
        assert_eq!(got[0].1, around(240, 269, 39));
        assert!(got[1].1.is_empty(), "a good image gets no ring");
        // The right half as the ROI: the overlay keeps the frame's size, the ring its place.
        let got = ring(Some(crate::preprocess::Roi { x: 16, y: 0, width: 16, height: 16 }));
        assert_eq!(got[0].1, around(24, 26, 3));
    }

    #[test]
    fn defective_images_only_still_get_the_defect_area_table_with_the_mask_cropped_to_the_roi() {
        let d = tempfile::tempdir().unwrap();
        // a: a 3x4 px defect at x 24-26; b: a mask of another size than its image; c: no mask.
        let (model, gt) = flat_crack_set(d.path(), &[("crack", "a"), ("crack", "b"), ("crack", "c")]);
        image::GrayImage::from_pixel(10, 10, image::Luma([255])).save(gt.join("b_mask.png")).unwrap();
        let run = |roi| {
            let opts = InspectOptions { overlays: OverlayMode::None, roi, ..InspectOptions::new(model.clone(), vec![d.path().join("test")], d.path().join("out")) };
            inspect(&opts).unwrap()
        };
        // The whole 32x16 frame is the model's input: a's defect is 12 px.
        let s = run(None);
        let bins = &s.metrics.as_ref().unwrap().by_defect_area;
        assert_eq!((bins.len(), bins[0].min_px, bins[0].images, bins[0].rejected, bins[0].auroc_against_good), (1, 0, 1, Some(1), None));
        let text = render_summary(&s);
        assert!(text.contains("| 0-15 | 1 | 1 | n/a |") && text.contains("(2 of the 3 defective images are in no bin"), "{text}");
        // Pixel metrics from the one usable mask: a flat image gives a flat map, every pixel tied
        // (AUROC 1/2, AP = the defect's share of the 512 px, 12 / 512); all 3 rejected.
        assert!(text.contains("| pixel AUROC | 0.5000 |") && text.contains(&format!("| pixel AP | {:.4} |", 12.0 / 512.0)), "{text}");
        assert!(text.contains("| defective images rejected at threshold (recall) | 3 of 3 (1.000) |") && !text.contains("| image AUROC"), "{text}");
        // The right half as the ROI, stretched to 32x16: the defect doubles in width, 24 px.
        let s = run(Some(crate::preprocess::Roi { x: 16, y: 0, width: 16, height: 16 }));
        let bins = &s.metrics.as_ref().unwrap().by_defect_area;
        assert_eq!((bins.len(), bins[0].min_px, bins[0].images), (1, 16, 1), "{bins:?}");
    }

    #[test]
    fn a_folder_of_good_images_only_gets_no_metric_table_and_names_its_least_normal_image() {
        let d = tempfile::tempdir().unwrap();
        let model = d.path().join("m.onnx");
        crate::synthetic::write_brightness_model(&model, 32, 16, 0.5).unwrap();
        let good = d.path().join("train/good");
        std::fs::create_dir_all(&good).unwrap();
        for (name, v) in [("dim", 40u8), ("worn", 200), ("mid", 90)] {
            image::RgbImage::from_pixel(32, 16, image::Rgb([v, v, v])).save(good.join(format!("{name}.png"))).unwrap();
        }
        let opts = InspectOptions { overlays: OverlayMode::All, ..InspectOptions::new(model, vec![d.path().join("train")], d.path().join("out")) };
        let s = inspect(&opts).unwrap();
        let m = s.metrics.as_ref().unwrap();
        assert_eq!((m.labelled_images, m.defective_images), (3, 0));
        let text = render_summary(&s);
        assert!(text.contains("labels     3 images, 0 of them defective") && !text.contains("| image AUROC"), "{text}");
        assert!(m.at_threshold.is_none(), "no precision or recall without a defective image");
        let listed: Vec<&str> = s.extremes.least_normal_good.iter().map(|i| i.image.rsplit('/').next().unwrap()).collect();
        assert_eq!(listed, ["worn.png", "mid.png", "dim.png"]);
        let summary: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(d.path().join("out/summary.json")).unwrap()).unwrap();
        let worn = &summary["extremes"]["least_normal_good"][0];
        assert!(worn["image"].as_str().unwrap().ends_with("worn.png"), "{summary}");
        // Brightness 200/255 = 0.78 over the threshold 0.5: a false reject; 40/255 passes.
        assert_eq!((worn["verdict"].as_str(), summary["extremes"]["least_normal_good"][2]["verdict"].as_str()), (Some("REJECT"), Some("OK")));
        let overlay = std::path::PathBuf::from(worn["overlay"].as_str().unwrap());
        assert!(overlay.is_file() && overlay.file_name().unwrap().to_str().unwrap().ends_with("_worn.png"), "{overlay:?}");
        assert!(text.contains(&format!("REJECT  {}  (overlay {})", s.extremes.least_normal_good[0].image, overlay.file_name().unwrap().to_str().unwrap())), "{text}");
        // The three overlays on one sheet (two per row), the worn part's first: its banner red.
        let sheet_path = d.path().join("out/least_normal_good.png");
        assert_eq!(s.sheets, [crate::contact_sheet::Sheet { path: sheet_path.clone(), overlays: 3, listed: 3 }]);
        assert!(text.contains(&format!("sheet      {} (3 of the 3 images listed above)\n", sheet_path.display())), "{text}");
        let sheet = image::open(&sheet_path).unwrap().to_rgb8();
        let tile = image::imageops::resize(&image::open(&overlay).unwrap().to_rgb8(), crate::contact_sheet::TILE_WIDTH_PX, 240, image::imageops::FilterType::Triangle);
        assert_eq!(sheet.dimensions(), (2 * crate::contact_sheet::TILE_WIDTH_PX, 2 * (crate::contact_sheet::CAPTION_PX + 240)), "32x16 images: overlays 320x160, tiles 480x240");
        assert_eq!(*sheet.get_pixel(100, crate::contact_sheet::CAPTION_PX + 120), *tile.get_pixel(100, 120));
        assert_eq!(sheet.get_pixel(460, crate::contact_sheet::CAPTION_PX + 20).0, [220, 30, 30], "the first tile is the REJECT banner of worn.png");
        assert!(!d.path().join("out/lowest_defective.png").exists(), "no defective image, no second sheet");
        // Run again without overlays: the old sheet goes with them.
        inspect(&InspectOptions { overlays: OverlayMode::None, ..opts.clone() }).unwrap();
        assert!(!sheet_path.exists(), "a sheet of the earlier run's overlays is removed");
    }

    #[test]
    fn full_disk_outputs_are_counted_and_every_image_is_still_inspected() {
        let d = tempfile::tempdir().unwrap();
        let model = d.path().join("m.onnx");
        crate::synthetic::write_brightness_model(&model, 32, 16, 0.5).unwrap();
        let imgs = d.path().join("imgs");
        std::fs::create_dir(&imgs).unwrap();
        for (name, v) in [("a", 250u8), ("b", 10), ("c", 250), ("d", 10)] {
            image::RgbImage::from_pixel(32, 16, image::Rgb([v, v, v])).save(imgs.join(format!("{name}.png"))).unwrap();
        }
        let out = d.path().join("out");
        std::fs::create_dir_all(out.join("overlays")).unwrap();
        // Events and every overlay land on a full device (ENOSPC).
        std::os::unix::fs::symlink("/dev/full", out.join("events.jsonl")).unwrap();
        for (i, name) in ["a", "b", "c", "d"].iter().enumerate() {
            std::os::unix::fs::symlink("/dev/full", out.join("overlays").join(format!(".run0_frame_{i:08}_{name}.png.tmp"))).unwrap();
        }
        let opts = InspectOptions { overlays: OverlayMode::All, reject_pulse_ms: 10, ..InspectOptions::new(model, vec![imgs], out.clone()) };
        let s = inspect(&opts).unwrap();
        assert_eq!((s.inspected, s.ok, s.rejected, s.bad), (4, 2, 2, 0));
        assert_eq!(s.output_write_errors, 8, "4 events + 4 overlays");
        assert_eq!(s.overlays_written, 0, "no overlay reached the full disk");
        assert!(render_summary(&s).contains("overlays   none written (see --overlays, and the failed writes below)"), "{}", render_summary(&s));
        assert_eq!(s.pulses.len(), 2, "both REJECTs pulsed");
        // Unlabelled images: the bright ones lead the least-normal list, in inspection order.
        let listed: Vec<&str> = s.extremes.least_normal_good.iter().map(|i| i.image.rsplit('/').next().unwrap()).collect();
        assert_eq!(listed, ["a.png", "c.png", "b.png", "d.png"]);
        assert!(render_summary(&s).contains("REJECT  ") && s.extremes.lowest_defective.is_empty());
        let left: Vec<String> = std::fs::read_dir(out.join("overlays")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        assert!(left.is_empty(), "no overlay file, empty or not, and no temporary file: {left:?}");
        let summary: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
        assert_eq!(summary["output_write_errors"], 8);
        assert!(render_summary(&s).contains("8 output writes failed"));
    }

    #[test]
    fn subnormal_and_tiny_thresholds_are_refused_clearly() {
        let d = tempfile::tempdir().unwrap();
        let model = d.path().join("m.onnx");
        crate::synthetic::write_brightness_model(&model, 32, 16, 0.5).unwrap();
        let mk = |t: f32| InspectOptions { threshold: Some(t), overlays: OverlayMode::None, ..InspectOptions::new(model.clone(), vec![d.path().to_path_buf()], d.path().join("out")) };
        let msg = inspect(&mk(1e-45)).unwrap_err().to_string();
        assert!(msg.contains("--threshold 1e-45") && msg.contains("at least 1e-6") && msg.contains("0.0000"), "{msg}");
        let msg = inspect(&mk(5e-7)).unwrap_err().to_string();
        assert!(msg.contains("--threshold 5e-7") && msg.contains("at least 1e-6"), "{msg}");
        let msg = inspect(&mk(f32::NAN)).unwrap_err().to_string();
        assert!(msg.contains("--threshold NaN") && msg.contains("finite"), "{msg}");
        assert!(!d.path().join("out").exists(), "refused before anything is written");
    }
}
