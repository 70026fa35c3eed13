//! One picture of the images a `runtime inspect` list names ([`crate::extremes`]): their
//! overlays in a grid, each under its rank and file name, so a person auditing the 20 training
//! images the model finds least normal opens one file instead of twenty.

use std::path::Path;

use anyhow::Context;
use embedded_graphics::{
    mono_font::{ascii::FONT_7X13, MonoTextStyle},
    pixelcolor::Rgb888,
    prelude::*,
    text::{Baseline, Text},
};
use image::{imageops::FilterType, Rgb, RgbImage};

use crate::extremes::ScoredImage;
use crate::overlay::Canvas;

/// Overlays per row of a sheet.
pub const COLUMNS: u32 = 2;
/// Width of one tile of the sheet, px: an overlay is scaled to fit [`TILE_WIDTH_PX`] x
/// [`TILE_MAX_HEIGHT_PX`] keeping its aspect ratio (a 50x4000 px frame would otherwise make a
/// tile 37,000 px tall).
pub const TILE_WIDTH_PX: u32 = 480;
/// Height of the box an overlay is fitted into, px.
pub const TILE_MAX_HEIGHT_PX: u32 = 480;
/// Height of the caption line above each overlay, px (FONT_7X13).
pub const CAPTION_PX: u32 = 18;
/// At most this many overlays go on a sheet (the first of the list): a sheet of a whole training
/// set would be a tall picture no one scrolls through, and its size grows with every image.
pub const MAX_TILES: usize = 40;

/// A sheet `runtime inspect` wrote: where, how many overlays it holds and how many images its
/// list names (more when some have no overlay or the list is longer than [`MAX_TILES`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Sheet {
    pub path: std::path::PathBuf,
    pub overlays: usize,
    pub listed: usize,
}

impl Sheet {
    /// The report's line for this sheet.
    pub fn render(&self) -> String {
        let mut line = format!("sheet      {} ({} of the {} images listed above", self.path.display(), self.overlays, self.listed);
        if self.overlays < self.listed.min(MAX_TILES) {
            line += "; the others have no overlay: --overlays all draws every one";
        }
        if self.listed > MAX_TILES {
            line += &format!("; at most the first {MAX_TILES}");
        }
        line + ")\n"
    }
}

/// File names of the two sheets in the run's output folder, by list.
pub const SHEET_FILES: [&str; 2] = ["least_normal_good.png", "lowest_defective.png"];

/// Writes the sheet of each list of `extremes` into `out_dir` ([`SHEET_FILES`]) and returns the
/// ones written; a list without overlays removes the sheet an earlier run left there, so the
/// folder never shows another run's images. Each list is tried on its own: a sheet that fails
/// (an overlay that cannot be read, a sheet that cannot be written or an old one removed) goes
/// to `on_error`, naming the file, and the other is still written.
pub fn write_sheets(extremes: &crate::extremes::Extremes, out_dir: &Path, mut on_error: impl FnMut(anyhow::Error)) -> Vec<Sheet> {
    let mut written = Vec::new();
    for (list, name) in [&extremes.least_normal_good, &extremes.lowest_defective].into_iter().zip(SHEET_FILES) {
        let path = out_dir.join(name);
        let outcome = contact_sheet(list).and_then(|sheet| match sheet {
            Some((sheet, overlays)) => crate::output::write_png_atomic(&path, &sheet).map(|()| Some(Sheet { path: path.clone(), overlays, listed: list.len() })),
            None => match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e).with_context(|| format!("cannot remove the old sheet {}", path.display())),
                _ => Ok(None),
            },
        });
        match outcome {
            Ok(sheet) => written.extend(sheet),
            Err(e) => on_error(e),
        }
    }
    written
}

/// `text` cut to at most `max` characters, its middle replaced by `...`: file names differ most
/// at their end (`_crop_2.jpg`), so the end stays.
fn ellipsize(text: &str, max: usize) -> String {
    let chars: Vec<char> = text.chars().collect();
    if chars.len() <= max {
        return text.to_string();
    }
    let head = (max - 3) / 2;
    let tail = max - 3 - head;
    chars[..head].iter().chain(['.', '.', '.'].iter()).chain(chars[chars.len() - tail..].iter()).collect()
}

/// The sheet of `list`'s overlays in list order, [`COLUMNS`] per row, each fitted into
/// [`TILE_WIDTH_PX`] x [`TILE_MAX_HEIGHT_PX`] (aspect kept) under a caption `"<rank>. <file name>"` (the overlay's own banner gives
/// score and verdict); white between tiles. Images without an overlay (`--overlays none`, or
/// `rejects` and an OK image) are left out, as is everything after [`MAX_TILES`]; the count of
/// tiles drawn is returned beside the sheet. `None` when no listed image has an overlay.
///
/// # Errors
/// An overlay file that cannot be read or decoded, naming it.
pub fn contact_sheet(list: &[ScoredImage]) -> anyhow::Result<Option<(RgbImage, usize)>> {
    let mut tiles = Vec::new();
    for (rank, item) in list.iter().enumerate().take(MAX_TILES) {
        let Some(path) = &item.overlay else { continue };
        let overlay = image::open(path).with_context(|| format!("cannot read the overlay {path} for the sheet"))?.to_rgb8();
        let (ow, oh) = (overlay.width().max(1) as f64, overlay.height().max(1) as f64);
        let scale = (TILE_WIDTH_PX as f64 / ow).min(TILE_MAX_HEIGHT_PX as f64 / oh);
        let (w, h) = (((ow * scale).round() as u32).clamp(1, TILE_WIDTH_PX), ((oh * scale).round() as u32).clamp(1, TILE_MAX_HEIGHT_PX));
        let name = Path::new(&item.image).file_name().map_or(item.image.clone(), |n| n.to_string_lossy().into_owned());
        // FONT_7X13: 7 px a character, 4 px margin on each side of the tile.
        let caption = ellipsize(&format!("{}. {name}", rank + 1), (TILE_WIDTH_PX as usize - 8) / 7);
        tiles.push((caption, image::imageops::resize(&overlay, w, h, FilterType::Triangle)));
    }
    if tiles.is_empty() {
        return Ok(None);
    }
    let rows: Vec<&[(String, RgbImage)]> = tiles.chunks(COLUMNS as usize).collect();
    let row_h: Vec<u32> = rows.iter().map(|r| CAPTION_PX + r.iter().map(|t| t.1.height()).max().unwrap_or(0)).collect();
    let mut sheet = RgbImage::from_pixel(COLUMNS * TILE_WIDTH_PX, row_h.iter().sum(), Rgb([255, 255, 255]));
    let style = MonoTextStyle::new(&FONT_7X13, Rgb888::BLACK);
    let mut y = 0;
    for (row, h) in rows.iter().zip(&row_h) {
        for (col, (caption, tile)) in row.iter().enumerate() {
            let x = col as u32 * TILE_WIDTH_PX;
            image::imageops::replace(&mut sheet, tile, x as i64, (y + CAPTION_PX) as i64);
            let _ = Text::with_baseline(caption, Point::new(x as i32 + 4, y as i32 + 3), style, Baseline::Top).draw(&mut Canvas(&mut sheet));
        }
        y += h;
    }
    Ok(Some((sheet, tiles.len())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::Verdict;

    fn item(image: &str, overlay: Option<&Path>) -> ScoredImage {
        ScoredImage { image: image.into(), score: 0.5, verdict: Verdict::Ok, overlay: overlay.map(|p| p.display().to_string()) }
    }

    #[test]
    fn tiles_go_in_list_order_two_per_row_under_their_captions() {
        let d = tempfile::tempdir().unwrap();
        // Three overlays of different aspect and colour: 320x160 red, 320x320 green, 640x160 blue.
        let mut items = Vec::new();
        for (i, (w, h, c)) in [(320u32, 160u32, [200u8, 0, 0]), (320, 320, [0, 200, 0]), (640, 160, [0, 0, 200])].into_iter().enumerate() {
            let p = d.path().join(format!("o{i}.png"));
            RgbImage::from_pixel(w, h, Rgb(c)).save(&p).unwrap();
            items.push(item(&format!("data/train/good/img{i}.png"), Some(&p)));
        }
        items.insert(1, item("data/train/good/no_overlay.png", None));
        let (sheet, drawn) = contact_sheet(&items).unwrap().unwrap();
        assert_eq!(drawn, 3, "the image without an overlay is left out");
        // Row 1: 480x240 and 480x480 tiles; row 2: 480x120. Each row adds its caption.
        assert_eq!(sheet.dimensions(), (960, (CAPTION_PX + 480) + (CAPTION_PX + 120)));
        assert_eq!(sheet.get_pixel(240, CAPTION_PX + 100).0, [200, 0, 0], "first tile, left");
        assert_eq!(sheet.get_pixel(720, CAPTION_PX + 400).0, [0, 200, 0], "second tile, right");
        assert_eq!(sheet.get_pixel(240, CAPTION_PX + 300).0, [255, 255, 255], "below the shorter tile of a row: white");
        assert_eq!(sheet.get_pixel(240, 2 * CAPTION_PX + 480 + 60).0, [0, 0, 200], "third tile, next row");
        // Captions are drawn in black on white above each tile (rank counts the left-out image).
        let caption_ink = |x0: u32, y0: u32| (x0..x0 + 200).flat_map(|x| (y0..y0 + CAPTION_PX).map(move |y| (x, y))).filter(|&(x, y)| sheet.get_pixel(x, y).0 == [0, 0, 0]).count();
        assert!(caption_ink(0, 0) > 50 && caption_ink(480, 0) > 50 && caption_ink(0, CAPTION_PX + 480) > 50);
        assert_eq!(caption_ink(480, CAPTION_PX + 480), 0, "no fourth tile");
    }

    #[test]
    fn tall_and_wide_overlays_fit_the_tile_box_and_long_names_are_cut_in_the_middle() {
        let d = tempfile::tempdir().unwrap();
        let (tall, wide) = (d.path().join("tall.png"), d.path().join("wide.png"));
        RgbImage::from_pixel(26, 2048, Rgb([1, 2, 3])).save(&tall).unwrap();
        RgbImage::from_pixel(2048, 26, Rgb([4, 5, 6])).save(&wide).unwrap();
        let long = format!("{}_crop_2.jpg", "M".repeat(100));
        let (sheet, _) = contact_sheet(&[item("t.png", Some(&tall)), item(&long, Some(&wide))]).unwrap().unwrap();
        // tall: 26x2048 -> 6x480; wide: 2048x26 -> 480x6; one row of the taller.
        assert_eq!(sheet.dimensions(), (960, CAPTION_PX + TILE_MAX_HEIGHT_PX));
        assert_eq!((sheet.get_pixel(3, CAPTION_PX + 479).0, sheet.get_pixel(8, CAPTION_PX + 10).0), ([1, 2, 3], [255, 255, 255]));
        assert_eq!((sheet.get_pixel(959, CAPTION_PX + 3).0, sheet.get_pixel(700, CAPTION_PX + 8).0), ([4, 5, 6], [255, 255, 255]));
        // A caption is cut to its tile's width, keeping the name's end.
        assert_eq!(ellipsize("2. abcdefghij_crop_2.jpg", 15), "2. abc..._2.jpg", "6 + 3 + 6 characters");
        assert_eq!(ellipsize("short.jpg", 15), "short.jpg");
        let cut = ellipsize(&format!("2. {long}"), (TILE_WIDTH_PX as usize - 8) / 7);
        assert!(cut.len() * 7 + 4 <= TILE_WIDTH_PX as usize && cut.ends_with("_crop_2.jpg") && cut.contains("..."), "{cut}");
    }

    #[test]
    fn one_failed_sheet_leaves_the_other_written_and_reported() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("o.png");
        RgbImage::from_pixel(48, 24, Rgb([9, 9, 9])).save(&p).unwrap();
        let extremes = crate::extremes::Extremes { least_normal_good: vec![item("g.png", Some(&p))], lowest_defective: vec![item("d.png", Some(&p)), item("e.png", None)] };
        // The first sheet's path is a folder: it cannot be written.
        std::fs::create_dir(d.path().join(SHEET_FILES[0])).unwrap();
        let mut errors = Vec::new();
        let written = write_sheets(&extremes, d.path(), |e| errors.push(format!("{e:#}")));
        assert_eq!(written, [Sheet { path: d.path().join(SHEET_FILES[1]), overlays: 1, listed: 2 }]);
        assert!(errors.len() == 1 && errors[0].contains(SHEET_FILES[0]), "{errors:?}");
        assert!(image::open(d.path().join(SHEET_FILES[1])).is_ok());
        assert!(written[0].render().contains("(1 of the 2 images listed above; the others have no overlay"), "{}", written[0].render());
    }

    #[test]
    fn no_overlay_gives_no_sheet_and_an_unreadable_one_names_the_file() {
        assert!(contact_sheet(&[item("a.png", None)]).unwrap().is_none());
        assert!(contact_sheet(&[]).unwrap().is_none());
        let d = tempfile::tempdir().unwrap();
        let bad = d.path().join("broken.png");
        std::fs::write(&bad, b"not a png").unwrap();
        let e = contact_sheet(&[item("a.png", Some(&bad))]).unwrap_err();
        assert!(format!("{e:#}").contains("broken.png"), "{e:#}");
    }

    #[test]
    fn a_long_list_is_cut_at_max_tiles() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("o.png");
        RgbImage::from_pixel(48, 24, Rgb([9, 9, 9])).save(&p).unwrap();
        let items: Vec<ScoredImage> = (0..MAX_TILES + 5).map(|i| item(&format!("{i}.png"), Some(&p))).collect();
        let (sheet, drawn) = contact_sheet(&items).unwrap().unwrap();
        assert_eq!(drawn, MAX_TILES);
        assert_eq!(sheet.height(), (MAX_TILES as u32 / COLUMNS) * (CAPTION_PX + 240));
    }
}
