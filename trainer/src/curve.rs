//! Validation curve on held-out good images during training: numbers per evaluation step, a CSV
//! and a PNG plot (drawn with embedded-graphics on the runtime's overlay canvas).

use std::path::Path;

use embedded_graphics::{
    mono_font::{ascii::FONT_6X10, MonoTextStyle},
    pixelcolor::Rgb888,
    prelude::*,
    primitives::{Line, PrimitiveStyle, Polyline, Rectangle},
    text::Text,
};
use image::RgbImage;
use runtime::overlay::Canvas;
use serde::{Deserialize, Serialize};

/// One evaluation of the held-out good images. A NaN (an untrained model early on) is stored as
/// JSON `null` and read back as NaN.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CurvePoint {
    pub step: usize,
    /// Smoothed training loss at this step.
    #[serde(deserialize_with = "null_as_nan")]
    pub train_loss: f64,
    /// Reconstruction loss (MSE + 1 - SSIM) of held-out good images in eval mode.
    #[serde(deserialize_with = "null_as_nan")]
    pub holdout_recon_loss: f64,
    /// Mean and max image score of held-out good images (what the threshold is calibrated on).
    #[serde(deserialize_with = "null_as_nan")]
    pub holdout_score_mean: f64,
    #[serde(deserialize_with = "null_as_nan")]
    pub holdout_score_max: f64,
}

fn null_as_nan<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// Writes the points as CSV (header + one row per point).
pub fn write_csv(points: &[CurvePoint], path: &Path) -> anyhow::Result<()> {
    let mut s = String::from("step,train_loss,holdout_recon_loss,holdout_score_mean,holdout_score_max\n");
    for p in points {
        s.push_str(&format!("{},{:.6},{:.6},{:.6},{:.6}\n", p.step, p.train_loss, p.holdout_recon_loss, p.holdout_score_mean, p.holdout_score_max));
    }
    std::fs::write(path, s).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
}

/// Plot size, px.
pub const PLOT_W: u32 = 640;
pub const PLOT_H: u32 = 360;

/// Draws the curves (x: step; each series scaled to its own maximum, which the legend states)
/// into a `PLOT_W x PLOT_H` RGB image.
pub fn plot(points: &[CurvePoint]) -> RgbImage {
    let mut img = RgbImage::from_pixel(PLOT_W, PLOT_H, image::Rgb([255, 255, 255]));
    let mut c = Canvas(&mut img);
    let (x0, y0, x1, y1) = (50i32, 30i32, PLOT_W as i32 - 20, PLOT_H as i32 - 40);
    let axis = PrimitiveStyle::with_stroke(Rgb888::BLACK, 1);
    let _ = Line::new(Point::new(x0, y1), Point::new(x1, y1)).into_styled(axis).draw(&mut c);
    let _ = Line::new(Point::new(x0, y0), Point::new(x0, y1)).into_styled(axis).draw(&mut c);
    let text = |c: &mut Canvas, s: &str, x: i32, y: i32, col: Rgb888| {
        let _ = Text::new(s, Point::new(x, y), MonoTextStyle::new(&FONT_6X10, col)).draw(c);
    };
    text(&mut c, "validation on held-out good images (each curve / its max)", x0, 15, Rgb888::BLACK);
    let max_step = points.iter().map(|p| p.step).max().unwrap_or(1).max(1);
    text(&mut c, "0", x0, y1 + 14, Rgb888::BLACK);
    text(&mut c, &format!("step {max_step}"), x1 - 60, y1 + 14, Rgb888::BLACK);
    let series: [(&str, Rgb888, fn(&CurvePoint) -> f64); 4] = [
        ("train loss", Rgb888::new(120, 120, 120), |p| p.train_loss),
        ("held-out recon loss", Rgb888::new(30, 90, 200), |p| p.holdout_recon_loss),
        ("held-out score mean", Rgb888::new(30, 160, 60), |p| p.holdout_score_mean),
        ("held-out score max", Rgb888::new(210, 40, 40), |p| p.holdout_score_max),
    ];
    for (i, (name, col, get)) in series.iter().enumerate() {
        // NaN / infinite values (an untrained model early on) are left out of the line.
        let finite: Vec<&CurvePoint> = points.iter().filter(|p| get(p).is_finite()).collect();
        let max = finite.iter().map(|p| get(p)).fold(f64::MIN_POSITIVE, f64::max);
        let mut pts: Vec<Point> = finite
            .iter()
            .map(|p| {
                let x = x0 + ((x1 - x0) as f64 * p.step as f64 / max_step as f64) as i32;
                let y = y1 - ((y1 - y0) as f64 * (get(p) / max).clamp(0.0, 1.0)) as i32;
                Point::new(x, y)
            })
            .collect();
        pts.dedup();
        let _ = Polyline::new(&pts).into_styled(PrimitiveStyle::with_stroke(*col, 2)).draw(&mut c);
        let ly = y1 + 26 + 12 * (i as i32 / 2);
        let lx = x0 + 280 * (i as i32 % 2);
        let _ = Rectangle::new(Point::new(lx, ly - 7), Size::new(8, 8)).into_styled(PrimitiveStyle::with_fill(*col)).draw(&mut c);
        text(&mut c, &format!("{name} ({max:.3})"), lx + 11, ly, Rgb888::BLACK);
    }
    img
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plot_draws_each_series_and_csv_has_a_row_per_point() {
        let pts: Vec<CurvePoint> = (0..5)
            .map(|i| CurvePoint { step: i * 10, train_loss: 1.0 / (i + 1) as f64, holdout_recon_loss: 0.5, holdout_score_mean: 0.1, holdout_score_max: 0.2 * i as f64 })
            .collect();
        let img = plot(&pts);
        assert_eq!((img.width(), img.height()), (PLOT_W, PLOT_H));
        for col in [[30u8, 90, 200], [30, 160, 60], [210, 40, 40]] {
            assert!(img.pixels().filter(|p| p.0 == col).count() > 50, "series {col:?} drawn");
        }
        // Non-finite values are skipped, not drawn (and do not panic).
        let mut bad = pts.clone();
        bad[0].holdout_recon_loss = f64::NAN;
        bad[1].holdout_score_max = f64::NEG_INFINITY;
        bad[2].holdout_score_mean = f64::INFINITY;
        assert!(plot(&bad).pixels().filter(|p| p.0 == [30, 90, 200]).count() > 50);
        let d = tempfile::tempdir().unwrap();
        write_csv(&pts, &d.path().join("v.csv")).unwrap();
        assert_eq!(std::fs::read_to_string(d.path().join("v.csv")).unwrap().lines().count(), 6);
    }
}
