//! `trainer info | head` and the like: a closed stdout ends the short commands quietly (SIGPIPE),
//! not with a panic and a backtrace (`train` and `ablate` keep running to their checkpoint).

#[cfg(unix)]
#[test]
fn a_closed_stdout_ends_the_trainer_without_a_panic() {
    use std::os::unix::process::ExitStatusExt;
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader); // closed before the trainer writes its first line
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(["info", "--size", "64x64"])
        .stdout(writer)
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.signal(), Some(libc::SIGPIPE), "ended by SIGPIPE: {:?} {stderr}", out.status);
}
