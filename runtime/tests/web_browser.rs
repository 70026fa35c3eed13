//! The web view in a real browser (issue 17): `runtime run` on a looping replay with `[web]` on,
//! the page loaded in headless Chromium (Debian's `chromium`, installed by `scripts/install.sh`),
//! and the DOM after its script ran checked: non-zero counters, a live image that changes between
//! two loads, rejects in the gallery. A screenshot is saved as
//! `<target>/tmp/web-view.png` (`CARGO_TARGET_TMPDIR`). Run alone with
//! `cargo test -p runtime --test web_browser`; CI runs it with the suite. No browser = failure.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

mod common;

const TOKEN: &str = "browser-test-token-0123";

/// Chromium headless with the arguments for a container (root, no GPU); `--virtual-time-budget`
/// lets the page's script run (fetch the status, fill the DOM) before the dump or screenshot.
fn chromium(args: &[&str], url: &str) -> std::process::Output {
    let profile = tempfile::tempdir().unwrap();
    Command::new("chromium")
        .args(["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run", "--virtual-time-budget=4000"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .output()
        .expect("chromium (Debian package `chromium`; scripts/install.sh installs it)")
}

/// The number in the counters table's row `name`.
fn counter(dom: &str, name: &str) -> u64 {
    let row = dom.split(&format!("<td>{name}</td><td class=\"n\">")).nth(1).unwrap_or_else(|| panic!("no `{name}` counter in the page:\n{dom}"));
    row.split('<').next().unwrap().parse().unwrap()
}

/// The frame id the page shows with the live image (`frame <id> · score ...`), after checking
/// that the image is set (a `blob:` URL of the fetched JPEG).
fn live_frame(dom: &str) -> u64 {
    let img = dom.split("id=\"live\"").nth(1).and_then(|r| r.split('>').next()).unwrap_or_else(|| panic!("no live image in the page:\n{dom}"));
    assert!(img.contains("src=\"blob:"), "the live image is not set: {img}");
    let info = dom.split("id=\"liveinfo\">frame ").nth(1).unwrap_or_else(|| panic!("no live frame info in the page:\n{dom}"));
    info.split(' ').next().unwrap().parse().unwrap()
}

#[test]
fn the_page_shows_counters_a_moving_live_image_and_rejects_in_a_real_browser() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    common::write_replay(dir, 30, 64, 48);
    std::fs::write(dir.join("token"), TOKEN).unwrap();
    let config = dir.join("device.toml");
    std::fs::write(
        &config,
        format!(
            "[camera]\nsource = \"replay\"\nreplay_dir = {:?}\nreplay_loop = true\nfps = 40\n\n[model]\npath = {:?}\n\n[reject]\nbackend = \"simulated\"\ndelay_ms = 200\n\n[output]\ndir = {:?}\noverlays = \"none\"\n\n[web]\nenabled = true\nport = 0\ntoken_file = {:?}\n",
            dir.join("replay"),
            dir.join("model.onnx"),
            dir.join("out"),
            dir.join("token")
        ),
    )
    .unwrap();
    let (child, addr) = common::start_with_web(&config, &dir.join("run.log"));
    std::thread::sleep(Duration::from_secs(2));
    let url = format!("http://{addr}/?token={TOKEN}");

    let first = chromium(&["--dump-dom"], &url);
    let dom1 = String::from_utf8_lossy(&first.stdout).into_owned();
    assert!(first.status.success() && dom1.contains("FFC-AD inspection line"), "chromium: {}\n{dom1}", String::from_utf8_lossy(&first.stderr));
    let (inspected, ok, reject) = (counter(&dom1, "inspected"), counter(&dom1, "OK"), counter(&dom1, "REJECT"));
    assert!(inspected > 0 && ok > 0 && reject > 0, "inspected {inspected}, OK {ok}, REJECT {reject}");
    assert!(dom1.contains(&format!("model.onnx@")), "the model is named on the page");
    let frame1 = live_frame(&dom1);
    assert!(dom1.matches("<figure").count() >= 1, "rejects in the gallery:\n{dom1}");
    assert!(dom1.contains("/api/rejects/") && dom1.contains("false reject"), "gallery images and their buttons");

    std::thread::sleep(Duration::from_secs(1));
    let dom2 = String::from_utf8_lossy(&chromium(&["--dump-dom"], &url).stdout).into_owned();
    let frame2 = live_frame(&dom2);
    assert!(frame2 > frame1, "the live image changes: frame {frame1} then {frame2}");
    assert!(counter(&dom2, "inspected") > inspected);

    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("web-view.png");
    let _ = std::fs::remove_file(&shot);
    let out = chromium(&[&format!("--screenshot={}", shot.display()), "--window-size=1280,900", "--hide-scrollbars"], &url);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let png = image::open(&shot).unwrap_or_else(|e| panic!("screenshot {}: {e}", shot.display()));
    assert_eq!((png.width(), png.height()), (1280, 900));

    common::stop(child);
    println!("BROWSER: counters inspected {inspected} (OK {ok}, REJECT {reject}); live frame {frame1} -> {frame2}; screenshot {}", shot.display());
}
