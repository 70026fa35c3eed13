//! Gives the `trainer` binary an rpath to the libtorch folder torch-sys linked against (the
//! pinned PyTorch wheel in `.venv/`), so it runs without `source scripts/env.sh` or
//! LD_LIBRARY_PATH (issue 14, item 5).

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg-bins=-Wl,-rpath,{lib}");
    }
}
