//! `trainer info`.

use tch::{nn, Device};

use super::ConfigArgs;

/// Arguments of `trainer info`.
#[derive(clap::Args)]
pub struct InfoArgs {
    #[command(flatten)]
    pub cfg: ConfigArgs,
}

/// Print parameter count, MACs and FLOPs (= 2 x MACs) of a configuration.
///
/// # Errors
/// A bad config or override.
pub fn info(args: InfoArgs) -> anyhow::Result<()> {
    let InfoArgs { cfg } = args;
    let config = cfg.resolve(None)?;
    let vs = nn::VarStore::new(Device::Cpu);
    let model = crate::model::FfcAd::new(&vs.root(), &config.model)?;
    let meta = crate::evaluate::uncalibrated_metadata(&config.model);
    let e = crate::export::build(&model, &meta);
    println!("config      {} ({}x{} px)", config.preset, config.model.input_height, config.model.input_width);
    println!("parameters  {} ({:.2} M)", crate::model::parameter_count(&vs), crate::model::parameter_count(&vs) as f64 / 1e6);
    println!("MACs        {:.3} G", e.macs as f64 / 1e9);
    println!("FLOPs       {:.3} G (2 x MACs; FourierUnits counted as their DFT-basis MatMuls)", 2.0 * e.macs as f64 / 1e9);
    Ok(())
}
