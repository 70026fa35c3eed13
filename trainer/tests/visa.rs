//! A VisA category folder (original layout, split by split_csv/1cls.csv) trains and evaluates
//! like an MVTec AD category: the split file decides the training images, and the anomaly masks
//! (label values 1, not 255) reach the pixel metrics.

use std::fmt::Write;
use std::path::Path;

use trainer::config::TrainConfig;
use trainer::train::{train, TrainOptions};

fn write_visa(root: &Path) {
    let obj = root.join("candle/Data");
    for d in ["Images/Normal", "Images/Anomaly", "Masks/Anomaly"] {
        std::fs::create_dir_all(obj.join(d)).unwrap();
    }
    let mut csv = String::from("object,split,label,image,mask\n");
    for i in 0..14u32 {
        let name = format!("{i:04}.JPG");
        image::RgbImage::from_fn(96, 80, |x, y| image::Rgb([(x * 2) as u8, (y * 3) as u8, (120 + i * 5) as u8])).save_with_format(obj.join("Images/Normal").join(&name), image::ImageFormat::Jpeg).unwrap();
        let split = if i < 12 { "train" } else { "test" };
        writeln!(csv, "candle,{split},normal,candle/Data/Images/Normal/{name},").unwrap();
    }
    for i in 0..2u32 {
        let name = format!("{i:03}");
        // A dark square defect; its mask holds the value 1 as VisA's masks do.
        let img = image::RgbImage::from_fn(96, 80, |x, y| if (30..50).contains(&x) && (20..40).contains(&y) { image::Rgb([0, 0, 0]) } else { image::Rgb([(x * 2) as u8, (y * 3) as u8, 130]) });
        img.save_with_format(obj.join("Images/Anomaly").join(format!("{name}.JPG")), image::ImageFormat::Jpeg).unwrap();
        image::GrayImage::from_fn(96, 80, |x, y| image::Luma([u8::from((30..50).contains(&x) && (20..40).contains(&y))])).save(obj.join("Masks/Anomaly").join(format!("{name}.png"))).unwrap();
        writeln!(csv, "candle,test,anomaly,candle/Data/Images/Anomaly/{name}.JPG,candle/Data/Masks/Anomaly/{name}.png").unwrap();
    }
    std::fs::create_dir_all(root.join("split_csv")).unwrap();
    std::fs::write(root.join("split_csv/1cls.csv"), csv).unwrap();
}

#[test]
fn a_visa_category_trains_and_evaluates_with_its_split_and_masks() {
    let d = tempfile::tempdir().unwrap();
    write_visa(d.path());
    let mut cfg = TrainConfig::small();
    cfg.model.input_height = 64;
    cfg.model.input_width = 64;
    cfg.steps = 2;
    cfg.batch_size = 2;
    let category = d.path().join("candle");
    let (weights, info) = train(&TrainOptions::new(category.clone(), cfg, d.path().join("out"))).unwrap();
    // 12 train rows: 4 held out for calibration (the minimum), 8 trained on.
    assert_eq!((info.train_images, info.holdout.len(), info.category.as_str()), (8, 4, "candle"));
    let r = trainer::evaluate::evaluate(&weights, &category, tch::Device::Cpu, false).unwrap();
    assert_eq!((r.labelled_images, r.defective_images), (4, 2));
    // Pixel metrics exist only if the value-1 masks were read as defects.
    assert!(r.pixel_auroc.is_some() && r.aupro.is_some(), "{r:?}");
}
