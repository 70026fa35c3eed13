//! `runtime gpio-test`.

/// Arguments of `runtime gpio-test`.
#[derive(clap::Args, Debug)]
pub struct GpioTestArgs {
    /// The reject line: a line name (e.g. GPIO17, searched on every /dev/gpiochip*) or
    /// CHIP:OFFSET (gpiochip0:17, /dev/gpiochip0:17, or a chip label: pinctrl-rp1:17).
    #[arg(long)]
    pub line: String,
    /// The ejector fires on a low level.
    #[arg(long)]
    pub active_low: bool,
    /// Pulse width, ms.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10000))]
    pub pulse_ms: u32,
    /// Number of pulses.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=10000))]
    pub count: u32,
    /// Time between pulse requests, ms.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(0..=60000))]
    pub interval_ms: u32,
    /// Delay from each request to its rising edge (camera-to-ejector time), ms.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=60000))]
    pub delay_ms: u32,
    /// Drive a simulated line instead of the GPIO device, and print the recorded edges.
    #[arg(long)]
    pub simulated: bool,
}

/// Pulse the reject line through the reject scheduler and print what was done: checks wiring,
/// active level and ejector timing. Ctrl-C stops early with the line inactive.
///
/// # Errors
/// The line cannot be found, opened or written, or a signal stopped the test (the line is left
/// inactive either way).
pub fn gpio_test(args: GpioTestArgs) -> anyhow::Result<()> {
    let GpioTestArgs { line, active_low, pulse_ms, count, interval_ms, delay_ms, simulated } = args;
    let safe = crate::shutdown::SafeLines::install();
    let stop = crate::shutdown::install_handlers();
    let opts = crate::gpio_test::GpioTestOptions { line, active_low, pulse_ms, delay_ms, count, interval_ms, simulated };
    print!("{}", crate::gpio_test::run(&opts, &safe, &stop)?);
    anyhow::ensure!(!stop.load(std::sync::atomic::Ordering::SeqCst), "interrupted by a signal; line released inactive");
    Ok(())
}
