//! `runtime reload` and `runtime rollback`: ask a running `runtime run` to swap its model or to
//! return to the previous one ([`crate::line::swap`]), and print what the line did.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use firmware_config::DeviceConfig;

/// Arguments of `runtime reload` and `runtime rollback`.
#[derive(clap::Args, Debug)]
pub struct SwapArgs {
    /// Device configuration TOML of the running line (its `[output].dir` holds `runtime.pid`).
    #[arg(long)]
    pub config: PathBuf,
    /// Longest wait for the line's answer in `models.jsonl`, s.
    #[arg(long, default_value_t = 120)]
    pub wait_s: u64,
}

/// Sends SIGHUP to the line running with `--config`: it loads and checks `[model].path` beside the
/// running model and swaps between two frames, or refuses it and keeps running. Prints the line's
/// record of the outcome from `models.jsonl`.
///
/// # Errors
/// The device file is invalid, no line runs with it (no or a stale `runtime.pid`), the line did not
/// answer within `--wait-s`, or it refused the model (the message says why).
pub fn reload(args: SwapArgs) -> anyhow::Result<()> {
    ask(&args, signal_hook::consts::SIGHUP, "reload")
}

/// Sends SIGUSR1 to the line running with `--config`: it returns to the model that ran before
/// its last swap (the two change places: a second rollback undoes the first). Prints the line's
/// record of the outcome.
///
/// # Errors
/// As [`reload`]; also when the line has no earlier model to return to.
pub fn rollback(args: SwapArgs) -> anyhow::Result<()> {
    ask(&args, signal_hook::consts::SIGUSR1, "rollback")
}

fn ask(args: &SwapArgs, signal: i32, what: &str) -> anyhow::Result<()> {
    let cfg = DeviceConfig::load(&args.config)?;
    let log = cfg.output.dir.join("models.jsonl");
    let pid = crate::line::swap::running_line_pid(&cfg.output.dir)?;
    // A request of our own, so that we print the answer to it and not to another client's.
    let id = format!("{}-{}", std::process::id(), crate::events::now_unix_ms());
    let requests = crate::line::swap::requests_dir(&cfg.output.dir);
    let request = requests.join(format!("{id}.{what}"));
    std::fs::create_dir_all(&requests).and_then(|()| std::fs::write(&request, b"")).with_context(|| format!("cannot write the request {}", request.display()))?;
    if let Err(e) = crate::line::swap::signal_running_line(&cfg.output.dir, signal) {
        let _ = std::fs::remove_file(&request);
        return Err(e);
    }
    println!("{what}: signalled runtime pid {pid}; waiting for its answer in {}", log.display());
    let deadline = Instant::now() + Duration::from_secs(args.wait_s);
    let mut seen = 0;
    while Instant::now() < deadline {
        while let Some(line) = new_line(&log, seen)? {
            seen += 1;
            let v: serde_json::Value = serde_json::from_str(&line).with_context(|| format!("{}: not a JSON line: {line}", log.display()))?;
            if !v["requests"].as_array().is_some_and(|r| r.iter().any(|x| x == id.as_str())) {
                continue;
            }
            let action = v["action"].as_str().unwrap_or("");
            let model = v["model"].as_str().unwrap_or("");
            let ms = |k: &str| v[k].as_f64().map(|x| format!("{x:.1} ms")).unwrap_or_else(|| "-".into());
            return match action {
                "swap" => {
                    println!("swap: now running {model} (was {}), after frame {}; checked beside the line in {}, inference switched in {}", v["previous"].as_str().unwrap_or("?"), v["after_frame"], ms("check_ms"), ms("switch_ms"));
                    Ok(())
                }
                "rollback" => {
                    println!("rollback: now running {model} (was {}), after frame {}; inference switched in {}", v["previous"].as_str().unwrap_or("?"), v["after_frame"], ms("switch_ms"));
                    Ok(())
                }
                "unchanged" => {
                    println!("unchanged: {}; still running {model}", v["reason"].as_str().unwrap_or(""));
                    Ok(())
                }
                _ => anyhow::bail!("{action}: {}; the line still runs {model}", v["reason"].as_str().unwrap_or("")),
            };
        }
        if !crate::line::swap::process_alive(pid) {
            let _ = std::fs::remove_file(&request);
            anyhow::bail!("runtime pid {pid} ended before it answered (see its log)");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = std::fs::remove_file(&request);
    anyhow::bail!("no answer from runtime pid {pid} in {} s (see its log)", args.wait_s)
}

/// Line `after` (0-based) of `path` once it is whole.
fn new_line(path: &Path, after: usize) -> anyhow::Result<Option<String>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let whole = text.rfind('\n').map(|i| &text[..=i]).unwrap_or("");
    Ok(whole.lines().nth(after).map(str::to_string))
}
