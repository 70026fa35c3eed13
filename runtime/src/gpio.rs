//! GPIO through the Linux character device (gpiocdev): the reject output line ([`GpioLine`], a
//! [`LineDriver`]) and the trigger input ([`GpioTrigger`]). Lines are found by name on every
//! /dev/gpiochip*, or by chip (path, device name or label: the Pi 5 renumbered its chips) and
//! offset ([`LineSpec`]). Levels are logical: with `active_low` the kernel inverts them, so
//! "active" always means "ejector fires" / "sensor sees a part".

use std::fmt;
use std::path::{Path, PathBuf};

use gpiocdev::line::Value;

use crate::reject::LineDriver;

mod spec;
mod trigger;

pub use spec::{ChipRef, LineSpec};
pub use trigger::{debounce, Debouncer, GpioTrigger, TriggerEvent};

/// A line found on a chip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedLine {
    /// Chip device path, e.g. `/dev/gpiochip0`.
    pub chip: PathBuf,
    /// Line offset on the chip.
    pub offset: u32,
    /// Line name (empty when the line has none).
    pub name: String,
}

impl fmt::Display for ResolvedLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.chip.display(), self.offset)?;
        if !self.name.is_empty() {
            write!(f, " (`{}`)", self.name)?;
        }
        Ok(())
    }
}

/// The GPIO chip devices of this machine, e.g. `["/dev/gpiochip0"]` (may be empty).
///
/// # Errors
/// /dev cannot be listed.
pub fn chip_paths() -> anyhow::Result<Vec<PathBuf>> {
    gpiocdev::chip::chips().map_err(|e| anyhow::anyhow!("cannot list GPIO chips in /dev: {e}"))
}

fn list(chips: &[PathBuf]) -> String {
    chips.iter().map(|c| c.display().to_string()).collect::<Vec<_>>().join(", ")
}

fn open_chip(path: &Path) -> anyhow::Result<gpiocdev::Chip> {
    gpiocdev::Chip::from_path(path).map_err(|e| {
        let found = match chip_paths() {
            Ok(c) if c.is_empty() => "no gpiochip devices found".to_string(),
            Ok(c) => format!("found {}", list(&c)),
            Err(e) => format!("{e:#}"),
        };
        anyhow::anyhow!("cannot open GPIO chip {}: {e} ({found})", path.display())
    })
}

/// Finds the chip and offset of `spec`.
///
/// # Errors
/// No gpiochip devices; no line of that name on any chip, or the name on several lines; no chip
/// with that path, name or label; an offset beyond the chip's lines.
pub fn resolve(spec: &LineSpec) -> anyhow::Result<ResolvedLine> {
    match spec {
        LineSpec::Named(name) => {
            let chips = chip_paths()?;
            anyhow::ensure!(!chips.is_empty(), "no GPIO line named `{name}` on any of /dev/gpiochip*: no gpiochip devices found");
            let mut found = Vec::new();
            for path in &chips {
                let chip = open_chip(path)?;
                let iter = chip.line_info_iter().map_err(|e| anyhow::anyhow!("cannot read the lines of GPIO chip {}: {e}", path.display()))?;
                for info in iter.flatten().filter(|i| &i.name == name) {
                    found.push(ResolvedLine { chip: path.clone(), offset: info.offset, name: name.clone() });
                }
            }
            match found.len() {
                0 => anyhow::bail!("no GPIO line named `{name}` on any of /dev/gpiochip* (searched {})", list(&chips)),
                1 => Ok(found.remove(0)),
                _ => anyhow::bail!(
                    "GPIO line name `{name}` is not unique: {}; give CHIP:OFFSET instead",
                    found.iter().map(|l| format!("{}:{}", l.chip.display(), l.offset)).collect::<Vec<_>>().join(", ")
                ),
            }
        }
        LineSpec::Offset { chip, offset } => {
            let (path, c) = match chip {
                ChipRef::Path(p) => (p.clone(), open_chip(p)?),
                ChipRef::Device(d) => {
                    let p = Path::new("/dev").join(d);
                    let c = open_chip(&p)?;
                    (p, c)
                }
                ChipRef::Label(label) => find_labelled(label)?,
            };
            let info = c.info().map_err(|e| anyhow::anyhow!("cannot read GPIO chip {}: {e}", path.display()))?;
            anyhow::ensure!(
                *offset < info.num_lines,
                "GPIO chip {} (`{}`) has {} lines (0..={}): no line {offset}",
                path.display(),
                info.label,
                info.num_lines,
                info.num_lines.saturating_sub(1)
            );
            let name = c.line_info(*offset).map(|i| i.name).unwrap_or_default();
            Ok(ResolvedLine { chip: path, offset: *offset, name })
        }
    }
}

fn find_labelled(label: &str) -> anyhow::Result<(PathBuf, gpiocdev::Chip)> {
    let chips = chip_paths()?;
    anyhow::ensure!(!chips.is_empty(), "no GPIO chip labelled `{label}`: no gpiochip devices found");
    let mut seen = Vec::new();
    for path in chips {
        let chip = open_chip(&path)?;
        let info = chip.info().map_err(|e| anyhow::anyhow!("cannot read GPIO chip {}: {e}", path.display()))?;
        if info.label == label {
            return Ok((path, chip));
        }
        seen.push(format!("{} `{}`", path.display(), info.label));
    }
    anyhow::bail!("no GPIO chip labelled `{label}` (found {})", seen.join(", "))
}

/// The error for a failed line request, naming the line, what was asked and who holds it.
pub(crate) fn request_error(line: &ResolvedLine, what: &str, e: gpiocdev::Error) -> anyhow::Error {
    let holder = gpiocdev::Chip::from_path(&line.chip)
        .and_then(|c| c.line_info(line.offset))
        .ok()
        .filter(|i| i.used)
        .map(|i| format!(" (in use by `{}`)", i.consumer))
        .unwrap_or_default();
    anyhow::anyhow!("cannot request GPIO line {line} as {what}: {e}{holder}")
}

/// The reject output on a GPIO line, requested as an output initialised inactive.
pub struct GpioLine {
    req: gpiocdev::Request,
    line: ResolvedLine,
    active_low: bool,
}

impl GpioLine {
    /// Finds and requests the line (consumer `ffc-ad-reject`) as an output at its inactive level;
    /// `active_low`: the ejector fires on a low level (the kernel inverts the logical value).
    ///
    /// # Errors
    /// No gpiochip devices (e.g. "no GPIO line named `REJECT` on any of /dev/gpiochip*: no gpiochip
    /// devices found"), the line is not found, or it cannot be requested (busy, permissions).
    pub fn open(spec: &LineSpec, active_low: bool) -> anyhow::Result<Self> {
        let line = resolve(spec)?;
        let mut b = gpiocdev::Request::builder();
        b.on_chip(&line.chip).with_consumer("ffc-ad-reject").with_line(line.offset);
        if active_low {
            b.as_active_low();
        }
        let req = b.as_output(Value::Inactive).request().map_err(|e| request_error(&line, "output", e))?;
        tracing::info!("reject line {line}: output, active-{}, inactive", if active_low { "low" } else { "high" });
        Ok(Self { req, line, active_low })
    }

    /// The line that was found.
    pub fn line(&self) -> &ResolvedLine {
        &self.line
    }

    /// Whether the line is active-low.
    pub fn active_low(&self) -> bool {
        self.active_low
    }
}

impl LineDriver for GpioLine {
    /// Sets the logical level.
    ///
    /// # Errors
    /// The kernel refused the write (device gone).
    fn set_active(&mut self, active: bool) -> anyhow::Result<()> {
        let v = if active { Value::Active } else { Value::Inactive };
        self.req.set_value(self.line.offset, v).map_err(|e| anyhow::anyhow!("GPIO line {}: cannot set {v:?}: {e}", self.line))
    }
}

impl Drop for GpioLine {
    /// Best effort: the line inactive before the request is released.
    fn drop(&mut self) {
        if let Err(e) = self.set_active(false) {
            tracing::error!("{e:#}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_chips() -> bool {
        let none = chip_paths().unwrap().is_empty();
        if !none {
            eprintln!("skipped: this machine has GPIO chips");
        }
        none
    }

    #[test]
    fn open_by_name_without_gpiochips_is_a_clear_error() {
        if !no_chips() {
            return;
        }
        let e = GpioLine::open(&LineSpec::parse("REJECT").unwrap(), false).err().unwrap();
        assert_eq!(format!("{e:#}"), "no GPIO line named `REJECT` on any of /dev/gpiochip*: no gpiochip devices found");
    }

    #[test]
    fn open_by_chip_without_gpiochips_names_the_chip() {
        if !no_chips() {
            return;
        }
        for spec in ["gpiochip0:17", "/dev/gpiochip0:17"] {
            let e = format!("{:#}", GpioLine::open(&LineSpec::parse(spec).unwrap(), true).err().unwrap());
            assert!(e.starts_with("cannot open GPIO chip /dev/gpiochip0:") && e.ends_with("(no gpiochip devices found)"), "{e}");
        }
        let e = format!("{:#}", GpioLine::open(&LineSpec::parse("pinctrl-rp1:17").unwrap(), false).err().unwrap());
        assert_eq!(e, "no GPIO chip labelled `pinctrl-rp1`: no gpiochip devices found");
    }
}
