//! `runtime config check` and `runtime run` against this machine (issue 12, findings 6 and 7):
//! the ROI is checked against the replay images' real size, an output folder the runtime user
//! cannot write is a problem, and a grey camera is warned about while the model does not say it
//! was trained on grey images.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn frames(dir: &Path, n: u32, w: u32, h: u32, grey: bool) {
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..n {
        let p = dir.join(format!("{i:04}.png"));
        if grey {
            image::GrayImage::from_pixel(w, h, image::Luma([30])).save(p).unwrap();
        } else {
            image::RgbImage::from_pixel(w, h, image::Rgb([30, 30, 30])).save(p).unwrap();
        }
    }
}

/// A config for the synthetic model, a replay of `replay`, output `out`, plus `extra` TOML.
fn config(w: &Path, replay: &Path, out: &Path, extra: &str) -> PathBuf {
    let model = w.join("model.onnx");
    if !model.exists() {
        runtime::synthetic::write_brightness_model(&model, 96, 64, 0.5).unwrap();
    }
    let cfg = w.join(format!("device-{}.toml", std::fs::read_dir(w).unwrap().count()));
    std::fs::write(
        &cfg,
        format!("[model]\npath = \"{}\"\n[camera]\nsource = \"replay\"\nreplay_dir = \"{}\"\nfps = 50\n[output]\ndir = \"{}\"\n{extra}", model.display(), replay.display(), out.display()),
    )
    .unwrap();
    cfg
}

fn runtime(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_runtime")).args(args).env_remove("RUST_LOG").output().unwrap()
}

fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

fn line<'a>(out: &'a str, start: &str) -> &'a str {
    out.lines().find(|l| l.trim_start().starts_with(start)).unwrap_or_else(|| panic!("no line starting with `{start}` in:\n{out}"))
}

#[test]
fn config_check_holds_the_roi_to_the_replay_images_not_to_640x480() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    frames(&w.join("small"), 2, 96, 64, false);
    frames(&w.join("large"), 1, 700, 500, false);
    let out = w.join("out");
    // Fits camera.width x height (640x480, the default) but not the 96x64 px replay frames.
    let cfg = config(w, &w.join("small"), &out, "[roi]\nx = 0\ny = 16\nwidth = 128\nheight = 48\n");
    let o = runtime(&["config", "check", cfg.to_str().unwrap()]);
    let (stdout, stderr) = text(&o);
    assert!(!o.status.success(), "{stdout}");
    let l = line(&stdout, "PROBLEM roi");
    assert!(l.contains("roi x 0 y 16 width 128 height 48") && l.contains("96x64 px") && l.contains("0000.png") && l.contains("expected x + width <= 96"), "{l}");
    assert!(line(&stdout, "ok      replay frame size").contains("96x64 px"), "{stdout}");
    assert!(stderr.contains("1 problem(s)"), "{stderr}");
    // Fits the frames: ok.
    let cfg = config(w, &w.join("small"), &out, "[roi]\nx = 0\ny = 16\nwidth = 96\nheight = 48\n");
    let o = runtime(&["config", "check", cfg.to_str().unwrap()]);
    let (stdout, _) = text(&o);
    assert!(o.status.success(), "{stdout}");
    assert!(line(&stdout, "ok      roi").contains("inside 96x64 px"), "{stdout}");
    // Larger than 640x480 but inside the 700x500 px replay images: ok (was refused before).
    let cfg = config(w, &w.join("large"), &out, "[roi]\nx = 0\ny = 0\nwidth = 700\nheight = 500\n");
    let o = runtime(&["config", "check", cfg.to_str().unwrap()]);
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stdout}{stderr}");
    assert!(line(&stdout, "ok      roi").contains("inside 700x500 px"), "{stdout}");
}

#[test]
fn config_check_says_not_ok_for_an_output_folder_the_runtime_cannot_write() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    frames(&w.join("frames"), 1, 96, 64, false);
    let out = w.join("out");
    std::fs::create_dir(&out).unwrap();
    let cfg = config(w, &w.join("frames"), &out, "");
    let o = runtime(&["config", "check", cfg.to_str().unwrap()]);
    let (stdout, _) = text(&o);
    assert!(o.status.success(), "{stdout}");
    assert!(line(&stdout, "ok      output folder").contains("(writable)"), "{stdout}");
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0, "the check leaves nothing behind");

    // Not writable: a read-only tmpfs over it (root, in a private mount namespace), or mode 555
    // (not root: root ignores modes).
    let root = Command::new("unshare").args(["-m", "true"]).status().map(|s| s.success()).unwrap_or(false);
    let o = if root {
        let script = r#"mount -t tmpfs -o ro,size=64k tmpfs "$OUT" || exit 90; exec "$EXE" config check "$CFG""#;
        Command::new("unshare")
            .args(["-m", "sh", "-c", script])
            .env("OUT", &out)
            .env("EXE", env!("CARGO_BIN_EXE_runtime"))
            .env("CFG", &cfg)
            .env_remove("RUST_LOG")
            .output()
            .unwrap()
    } else {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o555)).unwrap();
        runtime(&["config", "check", cfg.to_str().unwrap()])
    };
    let (stdout, stderr) = text(&o);
    assert_ne!(o.status.code(), Some(90), "mount failed: {stderr}");
    assert!(!o.status.success(), "{stdout}");
    let l = line(&stdout, "PROBLEM output folder");
    assert!(
        l.contains(&format!("output.dir = {}", out.display())) && l.contains("cannot create a file") && l.contains("expected a folder the runtime user can write"),
        "{l}"
    );
}

#[test]
fn a_grey_camera_is_warned_about_by_config_check_and_run() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    frames(&w.join("grey"), 3, 96, 64, true);
    frames(&w.join("colour"), 1, 96, 64, false);
    let out = w.join("out");
    // Replay of grey images.
    let cfg = config(w, &w.join("grey"), &out, "");
    let o = runtime(&["config", "check", cfg.to_str().unwrap()]);
    let (stdout, _) = text(&o);
    assert!(o.status.success(), "a warning is not a problem: {stdout}");
    let l = line(&stdout, "WARNING");
    assert!(l.contains("replay images are grey") && l.contains("0000.png") && l.contains("model.onnx") && l.contains("grey or colour"), "{l}");
    let o = runtime(&["run", "--config", cfg.to_str().unwrap()]);
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stdout}{stderr}");
    assert!(stderr.contains("replay images are grey"), "logged at start: {stderr}");
    assert!(line(&stdout, "WARNING").contains("replay images are grey"), "repeated with the results: {stdout}");
    assert!(line(&stdout, "frames").starts_with("frames      3 = "), "{stdout}");
    // Colour replay: no warning, whatever camera.fourcc says.
    let cfg = config(w, &w.join("colour"), &out, "");
    let cfg_text = std::fs::read_to_string(&cfg).unwrap().replace("fps = 50", "fps = 50\nfourcc = \"GREY\"");
    std::fs::write(&cfg, cfg_text).unwrap();
    let (stdout, _) = text(&runtime(&["config", "check", cfg.to_str().unwrap()]));
    assert!(!stdout.contains("WARNING"), "{stdout}");
    // A V4L2 camera asked for GREY or Y16 (absent here: a problem, the warning still comes).
    for fourcc in ["GREY", "Y16"] {
        let cfg = config(w, &w.join("colour"), &out, "");
        let cfg_text = std::fs::read_to_string(&cfg).unwrap().replace("source = \"replay\"", &format!("source = \"v4l2\"\ndevice = \"/dev/video-absent\"\nfourcc = \"{fourcc}\""));
        std::fs::write(&cfg, cfg_text).unwrap();
        let (stdout, _) = text(&runtime(&["config", "check", cfg.to_str().unwrap()]));
        let l = line(&stdout, "WARNING");
        assert!(l.contains(&format!("camera.fourcc = \"{fourcc}\" is a grey pixel format")) && l.contains("YUYV, MJPG, RGB3 or BGR3"), "{l}");
        assert!(line(&stdout, "PROBLEM camera").contains("absent"), "{stdout}");
    }
}

#[test]
fn logging_level_in_the_device_file_is_applied_and_rust_log_overrides_it() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    frames(&w.join("f"), 2, 96, 64, false);
    let run = |level: &str, rust_log: Option<&str>| {
        let cfg = config(w, &w.join("f"), &w.join(format!("out-{level}")), &format!("[logging]\nlevel = \"{level}\"\n"));
        let mut c = Command::new(env!("CARGO_BIN_EXE_runtime"));
        c.args(["run", "--config", cfg.to_str().unwrap(), "--max-frames", "2"]).env_remove("RUST_LOG");
        if let Some(v) = rust_log {
            c.env("RUST_LOG", v);
        }
        let o = c.output().unwrap();
        assert!(o.status.success(), "{:?}", text(&o));
        text(&o).1
    };
    // `runtime run` logs its source, model and reject line at info at start.
    let info = run("info", None);
    assert!(info.contains("INFO") && info.contains("source:"), "{info}");
    let warn = run("warn", None);
    assert!(!warn.contains("INFO"), "level warn still logs info lines:\n{warn}");
    let overridden = run("warn", Some("info"));
    assert!(overridden.contains("INFO") && overridden.contains("source:"), "RUST_LOG=info overrides the file:\n{overridden}");
}
