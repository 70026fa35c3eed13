//! The inference stage of the line: judging frames ([`judge`], on one or more workers) and
//! accounting for them in capture order ([`account`]: counters, reject pulses, overlays, saved
//! frames, events), with model swaps applied between frames.
//!
//! With `workers = 1` one thread judges and accounts, frame after frame. With `workers = N > 1`
//! (issue 15, item 2) N worker threads, each with its own inspector (its own tract state on the
//! shared plan: [`Inspector::twin`]), take frames from the capture queue as they come, and this
//! thread puts their results back in capture order before it counts them, raises pulses and
//! writes events: verdicts, pulses and events stay in frame order whatever the workers' timing.
//! A model swap goes to every worker; with N workers the up to N - 1 frames being judged at the
//! switch may be judged by either model (each event names its model).

use std::collections::BTreeMap;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use image::{DynamicImage, RgbImage};

use super::health::Heartbeat;
use super::swap::{LineControl, ModelChange};
use super::{ms, Job, LatencyAccumulators, LineCounters, LineOptions, Output};
use crate::decide::Verdict;
use crate::events::{now_unix_ms, InspectionEvent};
use crate::inspector::{overlay_wanted, FrameOutcome, Inspector};
use crate::output::overlay_name;
use crate::overlay::OverlayFit;
use crate::reject::RejectOutput;

/// A frame judged by a worker, waiting to be accounted in capture order.
pub(super) struct Judged {
    /// Position in the capture queue (0, 1, 2, ... over the jobs sent to inference).
    seq: u64,
    frame_id: u64,
    seen: Instant,
    file: Option<std::path::PathBuf>,
    /// Time in the capture queue, ms (frames the source delivered).
    queue_ms: Option<f64>,
    /// The event (no overlay name yet: that depends on the output queue).
    event: InspectionEvent,
    inference_failed: bool,
    overlay: Option<RgbImage>,
    /// The overlay goes to disk (the overlay mode asked for it), not only to the web view.
    overlay_to_disk: bool,
    /// The frame as captured, kept when it may be saved ([`super::SaveFrames`]).
    frame: Option<RgbImage>,
}

/// Judges one job with `inspector` (frame check, preprocessing, inference, decision) and draws
/// its overlay when the overlay mode asks for one.
fn judge(job: Job, inspector: &mut Inspector, opts: &LineOptions, beat: &Heartbeat) -> Judged {
    beat.inference_started();
    let model_label = inspector.model().id().label();
    let roi = inspector.roi();
    let (seq, frame_id, name, seen, file, queue_ms, image) = match job {
        Job::Bad { seq, frame_id, name, reason, seen } => (seq, frame_id, name, seen, None, None, Err(reason)),
        Job::Frame { seq, frame } => {
            let queue_ms = ms(frame.captured_at.elapsed());
            let (id, name, seen) = (frame.id, frame.name(), frame.captured_at);
            let file = frame.file.clone();
            (seq, id, name, seen, file, Some(queue_ms), frame.into_image())
        }
    };
    let outcome = match &image {
        Ok(img) => inspector.inspect(img, &name),
        Err(reason) => FrameOutcome::bad(reason.clone(), inspector.threshold()),
    };
    beat.inference_finished();
    let mut overlay = None;
    let mut overlay_ms = 0.0;
    let overlay_to_disk = overlay_wanted(opts.overlays, outcome.verdict);
    // The web view draws every REJECT (gallery) and a few frames a second (live view).
    let for_view = opts.web.as_ref().is_some_and(|w| outcome.verdict == Verdict::Reject || (outcome.verdict.is_inspected() && w.live_due()));
    if let (true, Ok(DynamicImage::ImageRgb8(base))) = (overlay_to_disk || for_view, &image) {
        let t = Instant::now();
        // Files and the reject gallery get the full overlay; a live frame only is drawn at the
        // size the page shows (it is drawn up to live_fps times a second).
        let fit = if overlay_to_disk || outcome.verdict == Verdict::Reject { OverlayFit::File } else { OverlayFit::Live };
        overlay = outcome.overlay(base, roi, fit);
        overlay_ms = ms(t.elapsed());
    }
    let mut event = outcome.event(frame_id, name, None);
    event.latency.overlay_ms = overlay_ms;
    event.model = Some(model_label.to_string());
    let inference_failed = outcome.inference_failed;
    // Moved, not copied: the frame is not needed any more.
    let frame = match (opts.save_frames.may_save(event.verdict), image) {
        (true, Ok(DynamicImage::ImageRgb8(img))) => Some(match roi {
            Some(r) => image::imageops::crop_imm(&img, r.x, r.y, r.width, r.height).to_image(),
            None => img,
        }),
        _ => None,
    };
    Judged { seq, frame_id, seen, file, queue_ms, event, inference_failed, overlay, overlay_to_disk, frame }
}

/// Counts a judged frame, raises its pulse, queues its overlay and saved frame, and sends its
/// event to the output thread. Returns false when the output thread is gone.
#[allow(clippy::too_many_arguments)]
fn account(j: Judged, out: &SyncSender<Output>, reject: &mut dyn RejectOutput, opts: &LineOptions, run_id: u128, c: &mut LineCounters, lat: &mut LatencyAccumulators, beat: &Heartbeat, drift: &mut Option<super::drift::DriftWatch>) -> bool {
    let Judged { frame_id, seen, file, queue_ms, mut event, inference_failed, overlay, overlay_to_disk, frame, .. } = j;
    if let Some(q) = queue_ms {
        lat.queue.add(q);
    }
    match event.verdict {
        Verdict::Ok => c.ok += 1,
        Verdict::Reject => c.rejected += 1,
        Verdict::Bad | Verdict::Late => {
            c.bad += 1;
            tracing::warn!(frame = frame_id, "bad frame {}: {}", event.source, event.error.as_deref().unwrap_or(""));
        }
    }
    c.infer_errors += u64::from(inference_failed);
    if event.verdict.pulses(opts.reject_bad_frames) {
        if let Err(e) = reject.reject_at(frame_id, seen) {
            c.reject_errors += 1;
            tracing::error!(frame = frame_id, "reject output failed: {e:#}");
        }
        if let Some(web) = &opts.web {
            web.set_pulses_missed(reject.missed_pulses());
        }
    }
    if event.verdict.is_inspected() {
        c.inspected += 1;
        lat.preprocess.add(event.latency.preprocess_ms);
        lat.infer.add(event.latency.infer_ms);
        lat.decision.add(ms(seen.elapsed()));
        // In frame order: a frame stuck on one worker holds this back, and readiness with it.
        beat.frame_accounted();
        if let (Some(w), Some(score)) = (drift.as_mut(), event.score) {
            if let Some(alarm) = w.add(frame_id, score) {
                if alarm.action == "drift" {
                    c.drift_alarms += 1;
                    tracing::warn!("drift: the median score of the last {} frames is {:.4}, more than {:.4} from the good images' mean {:.4}: lighting, lens or product changed? False rejects follow; recalibrate (`runtime calibrate`) or fix the cause", alarm.window, alarm.median, alarm.bound, alarm.good_mean);
                } else {
                    tracing::info!("drift cleared: median score {:.4} back near the good images' mean {:.4}", alarm.median, alarm.good_mean);
                }
                let _ = out.send(Output::Alarm(alarm));
            }
        }
    }
    let (overlay, view_only) = if overlay_to_disk { (overlay, None) } else { (None, overlay) };
    if let Some(image) = view_only {
        // For the web view only: never written, dropped when output is behind.
        let _ = out.try_send(Output::View { frame_id, image });
    }
    if let Some(drawn) = overlay {
        lat.overlay.add(event.latency.overlay_ms);
        let file_name = overlay_name(run_id, frame_id, file.as_deref());
        // Overlays are a convenience: drop them, never the events, when output is behind.
        match out.try_send(Output::Overlay { frame_id, name: file_name.clone(), image: drawn }) {
            Ok(()) => event.overlay = Some(file_name),
            Err(_) => c.overlays_dropped += 1,
        }
    }
    if let (Some(folder), Some(crop)) = (opts.save_frames.folder(event.verdict, c.ok), frame) {
        // The overlay's file name, in the frames folder: `run<R>_frame_<F>[_<stem>].png`.
        let name = overlay_name(run_id, frame_id, file.as_deref()).trim_start_matches("overlays/").to_string();
        if out.try_send(Output::Frame { folder, name, image: crop }).is_err() {
            c.frames_not_saved += 1;
        }
    }
    out.send(Output::Event(Box::new(event))).is_ok()
}

/// A model change for one worker's inspector.
enum WorkerControl {
    Use(Box<Inspector>),
    Rollback,
    /// A checked threshold for the running model.
    Threshold(f32),
}

/// A worker's inspector and the one before the last swap.
struct WorkerModel {
    current: Inspector,
    previous: Option<Inspector>,
}

impl WorkerModel {
    fn apply(&mut self, control: WorkerControl) {
        match control {
            // The model before the old one is dropped here: part of the switch.
            WorkerControl::Use(new) => drop(self.previous.replace(std::mem::replace(&mut self.current, *new))),
            WorkerControl::Rollback => {
                if let Some(p) = self.previous.take() {
                    self.previous = Some(std::mem::replace(&mut self.current, p));
                }
            }
            WorkerControl::Threshold(t) => {
                // Checked by the accounting side before it was sent.
                let _ = self.current.set_threshold(t);
            }
        }
    }
}

/// The accounting side's view of the models: which runs now and which ran before (for the
/// records and to refuse a rollback with nothing to return to), and where swaps come from.
pub(super) struct Models {
    current: RunningModel,
    previous: Option<RunningModel>,
    controls: Option<Receiver<LineControl>>,
}

/// What the records and the drift watch need of a model, without its inspector.
struct RunningModel {
    id: crate::infer::ModelId,
    threshold: f32,
    /// How its threshold was calibrated (metadata).
    calibration: serde_json::Value,
    /// Its good-image score statistics (metadata).
    good: crate::metadata::ScoreStats,
}

impl RunningModel {
    fn of(i: &Inspector) -> Self {
        let meta = &i.model().metadata;
        Self { id: i.model().id().clone(), threshold: i.threshold(), calibration: serde_json::to_value(&meta.threshold_calibration).unwrap_or_default(), good: meta.good_score_stats.clone() }
    }
}

impl Models {
    /// `first` runs at start; swaps and rollbacks come from `controls`.
    pub(super) fn new(first: &Inspector, controls: Option<Receiver<LineControl>>) -> Self {
        Self { current: RunningModel::of(first), previous: None, controls }
    }

    fn replace_current(&mut self, next: RunningModel) {
        self.previous = Some(std::mem::replace(&mut self.current, next));
    }

    /// A drift watch over the current model ([`super::drift`]).
    fn drift_watch(&self, opts: &LineOptions) -> Option<super::drift::DriftWatch> {
        opts.drift.map(|(window, k)| super::drift::DriftWatch::new(window, k, &self.current.good, self.current.threshold))
    }

    /// The model running now.
    pub(super) fn current(&self) -> &crate::infer::ModelId {
        &self.current.id
    }

    /// Takes the next waiting control, if any, hands it to the workers (`local`: this thread's
    /// own worker model, `remote`: the worker threads' control channels), and returns its
    /// `models.jsonl` record; logs it.
    fn apply_next(&mut self, after_frame: Option<u64>, c: &mut LineCounters, beat: &Heartbeat, local: Option<&mut WorkerModel>, remote: &[SyncSender<WorkerControl>]) -> Option<ModelChange> {
        let control = self.controls.as_ref()?.try_recv().ok()?;
        let (control, requests) = match control {
            LineControl::Requested { control, requests } => (*control, requests),
            c => (c, Vec::new()),
        };
        beat.set_swapping(true);
        let t = Instant::now();
        let running = self.current.id.to_string();
        let mut change = ModelChange {
            time_unix_ms: now_unix_ms(),
            action: String::new(),
            model: running.clone(),
            previous: None,
            sha256: self.current.id.sha256.clone(),
            threshold: self.current.threshold,
            calibration: self.current.calibration.clone(),
            after_frame,
            check_ms: None,
            switch_ms: None,
            reason: None,
            requests,
        };
        let hand_over = |controls: Vec<WorkerControl>, local: Option<&mut WorkerModel>| {
            let mut controls = controls.into_iter();
            if let Some(l) = local {
                if let Some(ctl) = controls.next() {
                    l.apply(ctl);
                }
            }
            for (tx, ctl) in remote.iter().zip(controls) {
                // A worker that is gone has ended with the line.
                let _ = tx.send(ctl);
            }
        };
        let workers = remote.len() + usize::from(local.is_some());
        match control {
            LineControl::Swap(checked) if checked.inspector.model().id().sha256 == self.current.id.sha256 => {
                // The same bytes: nothing to swap, and the rollback target stays.
                change.action = "unchanged".into();
                change.check_ms = Some(checked.check_ms);
                change.reason = Some(format!("{} is the model already running", checked.inspector.model().path().display()));
            }
            LineControl::Swap(checked) => {
                // One inspector per worker, each its own state on the checked model's plan.
                let first = checked.inspector;
                let twins: Result<Vec<Inspector>, _> = (1..workers).map(|_| first.twin()).collect();
                match twins {
                    Ok(twins) => {
                        let next = RunningModel::of(&first);
                        let controls = std::iter::once(first).chain(twins).map(|i| WorkerControl::Use(Box::new(i))).collect();
                        hand_over(controls, local);
                        self.replace_current(next);
                        c.model_swaps += 1;
                        change.action = "swap".into();
                        change.check_ms = Some(checked.check_ms);
                        change.previous = Some(running);
                    }
                    Err(e) => {
                        c.swaps_refused += 1;
                        change.action = "refused".into();
                        change.previous = Some(first.model().path().display().to_string());
                        change.reason = Some(format!("cannot start a state for each of {workers} workers: {e}"));
                    }
                }
            }
            LineControl::Rollback => match self.previous.take() {
                Some(p) => {
                    hand_over((0..workers).map(|_| WorkerControl::Rollback).collect(), local);
                    self.replace_current(p);
                    c.rollbacks += 1;
                    change.action = "rollback".into();
                    change.previous = Some(running);
                }
                None => {
                    change.action = "rollback_refused".into();
                    change.reason = Some("no earlier model in this run to return to".into());
                }
            },
            LineControl::Threshold { value, by } => match firmware_config::threshold_problem(value) {
                None => {
                    hand_over((0..workers).map(|_| WorkerControl::Threshold(value)).collect(), local);
                    change.action = "threshold".into();
                    change.previous = Some(format!("threshold {}", self.current.threshold));
                    change.reason = Some(format!("set by {by}"));
                    self.current.threshold = value;
                }
                Some(why) => {
                    change.action = "threshold_refused".into();
                    change.reason = Some(format!("threshold {why} (asked by {by})"));
                }
            },
            LineControl::Refused { path, reason } => {
                c.swaps_refused += 1;
                change.action = "refused".into();
                change.previous = Some(path.display().to_string());
                change.reason = Some(reason);
            }
            // Unwrapped above; a nested one is not sent.
            LineControl::Requested { .. } => change.action = "ignored".into(),
        }
        change.model = self.current.id.to_string();
        change.sha256 = self.current.id.sha256.clone();
        change.threshold = self.current.threshold;
        change.calibration = self.current.calibration.clone();
        change.switch_ms = Some(ms(t.elapsed()));
        beat.set_swapping(false);
        match change.action.as_str() {
            "unchanged" => tracing::info!("model reload: {}; nothing swapped", change.reason.as_deref().unwrap_or("")),
            "threshold" => tracing::warn!(
                "{} -> {} after frame {}, {}; until the next swap or restart ([model].threshold in the device file is what lasts)",
                change.previous.as_deref().unwrap_or(""),
                change.threshold,
                after_frame.map_or_else(|| "none".to_string(), |f| f.to_string()),
                change.reason.as_deref().unwrap_or("")
            ),
            "swap" | "rollback" => tracing::info!(
                "model {}: {} -> {} after frame {:?} (checked in {:.0} ms beside the line; switch {:.2} ms)",
                change.action,
                change.previous.as_deref().unwrap_or(""),
                change.model,
                after_frame,
                change.check_ms.unwrap_or(0.0),
                change.switch_ms.unwrap_or(0.0)
            ),
            _ => tracing::error!("model {}: {}; still running {}", change.action, change.reason.as_deref().unwrap_or(""), change.model),
        }
        Some(change)
    }
}

/// Runs the inference stage until the capture queue closes: judges every job (on `workers`
/// threads when more than one) and accounts for each in capture order. Returns the model running
/// at the end.
#[allow(clippy::too_many_arguments)]
pub(super) fn inference_loop(
    frames: Receiver<Job>,
    out: &SyncSender<Output>,
    first: Inspector,
    models: &mut Models,
    reject: &mut dyn RejectOutput,
    opts: &LineOptions,
    run_id: u128,
    c: &mut LineCounters,
    lat: &mut LatencyAccumulators,
    beat: &Arc<Heartbeat>,
) {
    let poll = Duration::from_millis(50);
    let mut last_frame: Option<u64> = None;
    let mut drift = models.drift_watch(opts);
    if opts.workers <= 1 {
        let mut model = WorkerModel { current: first, previous: None };
        loop {
            // Swaps and rollbacks take effect here, between two frames.
            while let Some(change) = models.apply_next(last_frame, c, beat, Some(&mut model), &[]) {
                if matches!(change.action.as_str(), "swap" | "rollback" | "threshold") {
                    drift = models.drift_watch(opts);
                }
                if out.send(Output::ModelChange(Box::new(change))).is_err() {
                    return;
                }
            }
            let job = match frames.recv_timeout(poll) {
                Ok(job) => job,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            let judged = judge(job, &mut model.current, opts, beat);
            last_frame = Some(judged.frame_id);
            if !account(judged, out, reject, opts, run_id, c, lat, beat, &mut drift) {
                return;
            }
        }
    }

    // N workers: each takes the next job from the shared queue, judges it with its own
    // inspector and hands the result back here.
    let jobs = Arc::new(Mutex::new(frames));
    let (judged_tx, judged_rx) = mpsc::sync_channel::<Judged>(2 * opts.workers);
    let mut controls = Vec::new();
    let mut handles = Vec::new();
    let mut inspectors = vec![first];
    for _ in 1..opts.workers {
        match inspectors[0].twin() {
            Ok(t) => inspectors.push(t),
            Err(e) => tracing::error!("cannot start another inference worker: {e}; running {} workers", inspectors.len()),
        }
    }
    for (i, inspector) in inspectors.into_iter().enumerate() {
        let (ctl_tx, ctl_rx) = mpsc::sync_channel::<WorkerControl>(2);
        controls.push(ctl_tx);
        let (jobs, tx, beat, opts) = (Arc::clone(&jobs), judged_tx.clone(), Arc::clone(beat), opts.clone());
        let spawned = std::thread::Builder::new().name(format!("infer-{i}")).spawn(move || {
            let mut model = WorkerModel { current: inspector, previous: None };
            loop {
                while let Ok(ctl) = ctl_rx.try_recv() {
                    model.apply(ctl);
                }
                // The lock is held only while waiting for the next job, never while judging.
                let job = match jobs.lock().unwrap_or_else(|p| p.into_inner()).recv_timeout(poll) {
                    Ok(job) => job,
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => return,
                };
                if tx.send(judge(job, &mut model.current, &opts, &beat)).is_err() {
                    return;
                }
            }
        });
        match spawned {
            Ok(h) => handles.push(h),
            Err(e) => tracing::error!("cannot start inference worker {i}: {e}"),
        }
    }
    drop(judged_tx);
    // In capture order: results wait here until every earlier frame is accounted.
    let mut waiting: BTreeMap<u64, Judged> = BTreeMap::new();
    let mut next_seq = 0u64;
    let mut output_gone = false;
    loop {
        while let Some(change) = models.apply_next(last_frame, c, beat, None, &controls) {
            if matches!(change.action.as_str(), "swap" | "rollback" | "threshold") {
                drift = models.drift_watch(opts);
            }
            output_gone |= out.send(Output::ModelChange(Box::new(change))).is_err();
        }
        match judged_rx.recv_timeout(poll) {
            Ok(j) => {
                waiting.insert(j.seq, j);
            }
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => break,
        }
        while let Some(j) = waiting.remove(&next_seq) {
            next_seq += 1;
            last_frame = Some(j.frame_id);
            if !output_gone && !account(j, out, reject, opts, run_id, c, lat, beat, &mut drift) {
                output_gone = true;
            }
        }
    }
    // The workers ended (the capture queue closed); anything left is in order after a gap that
    // cannot fill any more (a worker that died): account for it too, still in order.
    for (_, j) in std::mem::take(&mut waiting) {
        if !output_gone && !account(j, out, reject, opts, run_id, c, lat, beat, &mut drift) {
            output_gone = true;
        }
    }
    for h in handles {
        if h.join().is_err() {
            tracing::error!("an inference worker panicked");
        }
    }
}
