//! Each subcommand of the `runtime` program as one documented library function with its clap
//! arguments (`runtime/src/main.rs` only parses the command line and calls one of these).

pub mod bench;
pub mod bench_one;
pub mod calibrate;
pub mod cameras;
pub mod collect;
pub mod config_check;
pub mod gpio_test;
pub mod inspect;
pub mod run;
pub mod swap;
