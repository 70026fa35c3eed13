//! Ablation grid: the paper's ablations (FFC-AD, Sensors 2025, Tables 12-16) as one-factor-at-a-
//! time variants of a base configuration, each trained and evaluated on one category, collected in
//! a Markdown table.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::Device;

use crate::config::{Augment, CoordChannels, DropoutKind, HeadOutWeights, MaskGeometry, OptimizerKind, SynthConfig, TrainConfig, Tta, TtaReduce, Upsample};
use crate::train::{TrainOptions, TrainOutcome};

/// One configuration of the grid.
#[derive(Debug, Clone)]
pub struct Variant {
    /// Short name, also the sub-folder of the run, e.g. `hsas-off`.
    pub name: String,
    /// What differs from the base, with the paper table it comes from.
    pub change: String,
    pub config: TrainConfig,
}

/// The paper's ablations around `base` (its value of each knob is the paper's best): FFC encoder
/// and FFC DAE off (Table 12), FFC layers per block 1 / 3 (Table 13), global ratio 0.25 / 0.75
/// (Table 14), HSAS off, dropout p 0.01 / 0.04 / 0.2 and 1-D dropout (Table 15), AdamW (Table 16);
/// then each part of the localization recipe (issue 13) switched back (the map's floor included), options outside the recipe
/// (spots, shaded strokes, mask geometries, augmentations, coordinate channels, crops,
/// non-negative head output weights, the head's output prior, weight averaging, the line-mean
/// image score, test-time augmentation and how its passes are combined, strip pooling in the head), and the whole old recipe: 41 rows.
pub fn paper_grid(base: &TrainConfig) -> Vec<Variant> {
    let v = |name: &str, change: &str, f: &dyn Fn(&mut TrainConfig)| {
        let mut config = base.clone();
        f(&mut config);
        Variant { name: name.into(), change: change.into(), config }
    };
    vec![
        v("base", "base configuration", &|_| {}),
        v("encoder-plain", "FFC encoder off: plain ResNet convolutions (Table 12)", &|c| c.model.ffc_encoder = false),
        v("dae-plain", "FFC DAE off: plain conv residual blocks (Table 12)", &|c| c.model.ffc_dae = false),
        v("layers-1", "1 FFC layer per block (Table 13)", &|c| c.model.ffc_layers_per_block = 1),
        v("layers-3", "3 FFC layers per block (Table 13)", &|c| c.model.ffc_layers_per_block = 3),
        v("ratio-0.25", "global ratio 0.25 (Table 14)", &|c| c.model.global_ratio = 0.25),
        v("ratio-0.75", "global ratio 0.75 (Table 14)", &|c| c.model.global_ratio = 0.75),
        v("hsas-off", "HSAS off (Table 15)", &|c| c.model.hsas = false),
        v("hsas-p0.01", "HSAS dropout p 0.01 (Table 15)", &|c| c.model.hsas_p = 0.01),
        v("hsas-p0.04", "HSAS dropout p 0.04 (Table 15)", &|c| c.model.hsas_p = 0.04),
        v("hsas-p0.2", "HSAS dropout p 0.2 (Table 15)", &|c| c.model.hsas_p = 0.2),
        v("hsas-1d", "1-D (element-wise) dropout (Table 15)", &|c| c.model.hsas_kind = DropoutKind::D1),
        v("adamw", "AdamW instead of SGD (Table 16)", &|c| c.optimizer = OptimizerKind::Adamw),
        // The localization recipe of issue 13, one part at a time.
        v("stride-32", "encoder to stride 32 (5 decoder steps; recipe: 16)", &|c| {
            c.model.encoder_stride = 32;
            let last = *c.model.decoder_widths.last().expect("decoder widths");
            c.model.decoder_widths.push((last / 2).max(2));
        }),
        v("deconv", "2x2 transposed-conv upsampling in decoder and head (recipe: bilinear + 3x3 conv)", &|c| c.model.upsample = Upsample::Deconv),
        v("head-3", "3-level head, 1x1 output conv (recipe: 5 levels capped at 64 ch, 3x3)", &|c| {
            c.model.head_levels = 3;
            c.model.head_out_kernel = 1;
        }),
        v("loss-l1", "segmentation loss focal x1 + L1 (recipe: focal x5)", &|c| {
            c.seg_focal_weight = 1.0;
            c.seg_l1_weight = 1.0;
        }),
        v("loss-dice", "soft Dice x1 on defective samples added", &|c| c.seg_dice_weight = 1.0),
        v("synth-old", "synthetic defects as before issue 13 (unshifted self-texture, smooth fields, small masks)", &|c| c.synth = SynthConfig::legacy()),
        v("no-strokes", "no thin stroke masks (recipe: 15 %)", &|c| c.synth.stroke_probability = 0.0),
        v("no-rotate", "Perlin noise not rotated", &|c| c.synth.rotate_noise = false),
        v("spots", "a quarter of the blob masks drawn as clusters of 1.5-5 px spots (`--spots 0.25`; recipe: none)", &|c| c.synth.spot_probability = 0.25),
        v("stroke-shade", "strokes drawn as the part darkened or brightened along the line (`--stroke-shade 1`; recipe: textured)", &|c| c.synth.stroke_shade_probability = 1.0),
        v("masks-axis", "axis-aligned Perlin masks, cells down to 2 px (`--masks axis`; recipe: DRAEM's, >= 8 px, rotated)", &|c| MaskGeometry::Axis.apply(&mut c.synth)),
        v("masks-mixed", "each blob mask axis-aligned or DRAEM's, 50 / 50 (`--masks mixed`)", &|c| MaskGeometry::Mixed.apply(&mut c.synth)),
        v("sigma-0", "raw anomaly map (recipe: Gaussian sigma 2 px)", &|c| c.model.map_sigma_px = 0.0),
        v("map-floor-0", "the map reported with its floor (`--map-floor 0`; recipe: its 0.1-quantile removed per image)", &|c| c.model.map_floor_quantile = 0.0),
        // Augmentation is a per-data-set flag (not every part may flip): these rows say what it
        // is worth on the data at hand before `--augment` goes into its command.
        v("augment-mirror", "good images mirrored left-right and top-bottom (`--augment flip,vflip`; recipe: none)", &|c| c.augment = vec![Augment::Flip, Augment::Vflip]),
        v("augment-all", "mirrors and quarter turns (`--augment flip,vflip,rot90`; recipe: none)", &|c| c.augment = vec![Augment::Flip, Augment::Vflip, Augment::Rot90]),
        v("augment-colour", "lighting and white-balance jitter (`--augment colour`; recipe: none)", &|c| c.augment = vec![Augment::Colour]),
        v("no-coords", "no coordinate channels (`--coord-channels none`; recipe: in the head's input)", &|c| c.model.coord_channels = CoordChannels::None),
        v("coords-both", "coordinate channels in the encoder's and the head's input (`--coord-channels encoder-and-head`; recipe: the head's only)", &|c| {
            c.model.coord_channels = CoordChannels::EncoderAndHead
        }),
        v("crop-2x", "input at twice the height and width, trained on random crops of the base size (`--size 2Hx2W --crop HxW --coord-channels none`: full resolution at the base's step cost; recipe: whole images)", &|c| {
            c.train_crop = Some((c.model.input_height, c.model.input_width));
            c.model.input_height *= 2;
            c.model.input_width *= 2;
            c.model.coord_channels = CoordChannels::None;
        }),
        v("head-out-nonnegative", "head's output weights kept >= 0, so a pixel the head sees nothing at scores the map's minimum (`--head-out-weights non-negative`; recipe: any sign)", &|c| {
            c.model.head_out_weights = HeadOutWeights::NonNegative
        }),
        v("head-out-prior", "head's output starts at an anomaly probability of 0.01 (bias -ln 99, weights N(0, 0.01^2); `--head-out-prior 0.01`; recipe: tch's draw)", &|c| c.model.head_out_prior = 0.01),
        v("strip-pool", "strip pooling at the head's coarsest level: each cell also sees its row's and column's mean (`--head-strip-pool`; recipe: off)", &|c| c.model.head_strip_pool = true),
        v("ema", "weights averaged over the steps (`--ema-decay 0.99`; recipe: the last step's weights)", &|c| c.ema_decay = 0.99),
        v("score-line", "image score = the anomaly map's best mean along a line half the input's shorter side long (`--score-line`; recipe: max of the 3 px mean-filtered map)", &|c| {
            c.model.score_line_px = c.model.input_height.min(c.model.input_width) / 2
        }),
        v("tta", "map averaged over the image and its mirrors, 4 passes (`--tta flip-vflip`; recipe: one pass)", &|c| c.model.tta = Tta::FlipVflip),
        v("tta-min", "map = pixel-wise minimum over the image and its mirrors, 4 passes (`--tta flip-vflip --tta-reduce min`; recipe: one pass)", &|c| {
            c.model.tta = Tta::FlipVflip;
            c.model.tta_reduce = TtaReduce::Min;
        }),
        v("recipe-old", "the whole recipe before issue 13 (stride 32, deconv, 3-level head, focal + L1, old synthesis, raw map, no coordinate channels)", &|c| {
            let size = (c.model.input_height, c.model.input_width);
            *c = TrainConfig::small_legacy();
            (c.model.input_height, c.model.input_width) = size;
            c.steps = base.steps;
            c.seed = base.seed;
        }),
    ]
}

/// Measured result of one variant.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AblationRow {
    pub name: String,
    pub change: String,
    pub parameters: i64,
    pub train_s: f64,
    pub images_per_s: f64,
    pub image_auroc: Option<f64>,
    pub pixel_auroc: Option<f64>,
    pub aupro: Option<f64>,
    pub image_f1_max: Option<f64>,
}

/// Where and how to run the grid.
#[derive(Debug, Clone)]
pub struct AblationOptions {
    pub data_root: PathBuf,
    /// Gets `<variant>/` run folders, `ablation.json` and `ablation.md`.
    pub out_dir: PathBuf,
    pub device: Device,
    pub progress: bool,
}

/// Trains and evaluates every variant in turn, rewriting `ablation.md` / `ablation.json` after
/// each so that partial results survive an interruption. A variant whose run folder already holds
/// a finished checkpoint of the same configuration and data set is evaluated without training
/// again.
pub fn run_grid(variants: &[Variant], opts: &AblationOptions) -> anyhow::Result<Vec<AblationRow>> {
    std::fs::create_dir_all(&opts.out_dir).map_err(|e| anyhow::anyhow!("cannot create {}: {e}", opts.out_dir.display()))?;
    let mut rows = Vec::new();
    for (i, v) in variants.iter().enumerate() {
        tracing::info!("ablation {}/{}: {} ({})", i + 1, variants.len(), v.name, v.change);
        let dir = opts.out_dir.join(&v.name);
        let weights = dir.join("checkpoint.safetensors");
        let data_root = opts.data_root.canonicalize().unwrap_or_else(|_| opts.data_root.clone());
        let finished = crate::checkpoint::load_info(&weights).ok().filter(|info| info.config == v.config && info.data_root == data_root);
        let info = if let Some(info) = finished {
            tracing::info!("{}: reusing the finished run in {}", v.name, dir.display());
            info
        } else {
            let mut t = TrainOptions::new(opts.data_root.clone(), v.config.clone(), dir.clone());
            t.device = opts.device;
            t.progress = opts.progress;
            match crate::train::run(&t)? {
                TrainOutcome::Finished { info, .. } => *info,
                TrainOutcome::Stopped { step, .. } => anyhow::bail!("variant {} stopped after step {step}", v.name),
            }
        };
        let m = crate::evaluate::evaluate(&weights, &opts.data_root, opts.device, opts.progress)?;
        rows.push(AblationRow {
            name: v.name.clone(),
            change: v.change.clone(),
            parameters: info.parameters,
            train_s: info.wall_time_s,
            images_per_s: (info.steps_done * info.config.batch_size) as f64 / info.wall_time_s.max(1e-9),
            image_auroc: m.image_auroc,
            pixel_auroc: m.pixel_auroc,
            aupro: m.aupro,
            image_f1_max: m.image_f1_max,
        });
        write_results(&rows, variants.first().map(|v| &v.config), &opts.data_root, &opts.out_dir)?;
    }
    Ok(rows)
}

fn write_results(rows: &[AblationRow], base: Option<&TrainConfig>, data_root: &Path, out_dir: &Path) -> anyhow::Result<()> {
    let json = out_dir.join("ablation.json");
    std::fs::write(&json, serde_json::to_string_pretty(rows)?).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", json.display()))?;
    let md = out_dir.join("ablation.md");
    std::fs::write(&md, markdown(rows, base, data_root)).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", md.display()))
}

fn cell(v: Option<f64>) -> String {
    v.map_or("n/a".into(), |v| format!("{v:.3}"))
}

/// The rows as a Markdown table, with the base configuration and data set in a heading line.
/// Differences to the base row's image AUROC are given in brackets.
pub fn markdown(rows: &[AblationRow], base: Option<&TrainConfig>, data_root: &Path) -> String {
    let mut s = String::new();
    if let Some(b) = base {
        s += &format!(
            "Ablation on {} ({} config, {}x{} px, {} steps x {}, seed {})\n\n",
            data_root.display(),
            b.preset,
            b.model.input_height,
            b.model.input_width,
            b.steps,
            b.batch_size,
            b.seed
        );
    }
    s += "| variant | change | parameters | train s | images/s | image AUROC | pixel AUROC | AUPRO | image F1-max |\n";
    s += "|---|---|---|---|---|---|---|---|---|\n";
    let base_auroc = rows.first().and_then(|r| r.image_auroc);
    for r in rows {
        let delta = match (r.image_auroc, base_auroc) {
            (Some(a), Some(b)) if r.name != rows[0].name => format!(" ({:+.3})", a - b),
            _ => String::new(),
        };
        s += &format!(
            "| {} | {} | {} | {:.0} | {:.1} | {}{delta} | {} | {} | {} |\n",
            r.name,
            r.change,
            r.parameters,
            r.train_s,
            r.images_per_s,
            cell(r.image_auroc),
            cell(r.pixel_auroc),
            cell(r.aupro),
            cell(r.image_f1_max)
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names of the fields (model fields prefixed `model.`) where two configs differ.
    fn changed_fields(a: &TrainConfig, b: &TrainConfig) -> Vec<String> {
        let (a, b) = (serde_json::to_value(a).unwrap(), serde_json::to_value(b).unwrap());
        let mut out = Vec::new();
        for (prefix, x, y) in [("model.", &a["model"], &b["model"]), ("", &a, &b)] {
            for (f, val) in x.as_object().unwrap() {
                if f != "model" && y[f.as_str()] != *val {
                    out.push(format!("{prefix}{f}"));
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn the_grid_changes_one_knob_per_variant() {
        let base = TrainConfig::small();
        let grid = paper_grid(&base);
        assert_eq!(grid.len(), 41);
        assert_eq!(grid[0].config, base);
        let names: std::collections::HashSet<_> = grid.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names.len(), grid.len(), "names are unique (they are folder names)");
        // Knobs that are one setting but two fields.
        let expected = |name: &str| -> Option<Vec<&str>> {
            match name {
                "stride-32" => Some(vec!["model.decoder_widths", "model.encoder_stride"]),
                "head-3" => Some(vec!["model.head_levels", "model.head_out_kernel"]),
                "loss-l1" => Some(vec!["seg_focal_weight", "seg_l1_weight"]),
                "crop-2x" => Some(vec!["model.coord_channels", "model.input_height", "model.input_width", "train_crop"]),
                "tta-min" => Some(vec!["model.tta", "model.tta_reduce"]),
                "recipe-old" => None,
                _ => Some(vec![]),
            }
        };
        for v in &grid[1..] {
            v.config.validate().unwrap_or_else(|e| panic!("{}: {e}", v.name));
            let changed = changed_fields(&v.config, &base);
            match expected(&v.name) {
                Some(e) if e.is_empty() => assert_eq!(changed.len(), 1, "{}: {changed:?}", v.name),
                Some(e) => assert_eq!(changed, e, "{}", v.name),
                None => {
                    // The old recipe at the base's size, steps and seed.
                    assert_eq!(v.config.model.encoder_stride, 32);
                    assert_eq!((v.config.model.input_height, v.config.model.input_width, v.config.steps, v.config.seed), (base.model.input_height, base.model.input_width, base.steps, base.seed));
                    assert!(changed.len() > 5, "{changed:?}");
                }
            }
        }
    }

    #[test]
    fn the_table_gives_deltas_to_the_base() {
        let row = |name: &str, auroc| AblationRow {
            name: name.into(),
            change: "c".into(),
            parameters: 10,
            train_s: 12.4,
            images_per_s: 20.0,
            image_auroc: auroc,
            pixel_auroc: Some(0.5),
            aupro: None,
            image_f1_max: Some(0.9),
        };
        let md = markdown(&[row("base", Some(0.9)), row("hsas-off", Some(0.85)), row("x", None)], Some(&TrainConfig::small()), Path::new("/d"));
        assert!(md.starts_with("Ablation on /d (small config, 128x128 px, 1200 steps x 8, seed 7)"), "{md}");
        assert!(md.contains("| base | c | 10 | 12 | 20.0 | 0.900 | 0.500 | n/a | 0.900 |"), "{md}");
        assert!(md.contains("| hsas-off | c | 10 | 12 | 20.0 | 0.850 (-0.050) |"), "{md}");
        assert!(md.contains("| x | c | 10 | 12 | 20.0 | n/a |"), "{md}");
    }
}
