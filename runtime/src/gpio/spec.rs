//! How a GPIO line is named on the command line and in the configuration: [`LineSpec`].

use std::fmt;
use std::path::PathBuf;

/// The chip part of a `CHIP:OFFSET` line spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChipRef {
    /// A device path, e.g. `/dev/gpiochip0`.
    Path(PathBuf),
    /// A device name under /dev, e.g. `gpiochip0`.
    Device(String),
    /// A chip label, e.g. `pinctrl-rp1` (Raspberry Pi 5: stable where chip numbers are not).
    Label(String),
}

impl fmt::Display for ChipRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChipRef::Path(p) => write!(f, "{}", p.display()),
            ChipRef::Device(d) => write!(f, "/dev/{d}"),
            ChipRef::Label(l) => write!(f, "chip labelled `{l}`"),
        }
    }
}

/// Which GPIO line: by line name (searched on every /dev/gpiochip*) or by chip and offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineSpec {
    /// A line name as the device tree gives it, e.g. `GPIO17` or `REJECT`.
    Named(String),
    /// A line offset on one chip.
    Offset {
        /// The chip.
        chip: ChipRef,
        /// Line offset on the chip (0-based).
        offset: u32,
    },
}

impl LineSpec {
    /// Parses `NAME`, `gpiochipN:OFFSET`, `/dev/...:OFFSET` (a device path) or `LABEL:OFFSET`
    /// (a chip label). Surrounding spaces are ignored.
    ///
    /// # Errors
    /// Empty spec; empty chip or offset around `:`; an offset that is not a decimal u32; a name
    /// with whitespace or control characters; a relative chip path.
    pub fn parse(spec: &str) -> anyhow::Result<LineSpec> {
        let s = spec.trim();
        anyhow::ensure!(!s.is_empty(), "empty GPIO line spec: expected a line name (e.g. GPIO17) or CHIP:OFFSET (e.g. gpiochip0:17)");
        let Some((chip, offset)) = s.rsplit_once(':') else {
            anyhow::ensure!(
                !s.chars().any(|c| c.is_whitespace() || c.is_control()),
                "GPIO line spec `{spec}`: a line name has no spaces or control characters"
            );
            return Ok(LineSpec::Named(s.to_string()));
        };
        anyhow::ensure!(!chip.is_empty(), "GPIO line spec `{spec}`: no chip before `:` (expected CHIP:OFFSET, e.g. gpiochip0:17)");
        anyhow::ensure!(!offset.is_empty(), "GPIO line spec `{spec}`: no line offset after `:` (expected CHIP:OFFSET, e.g. gpiochip0:17)");
        let offset: u32 = offset
            .parse()
            .ok()
            .filter(|_| offset.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| anyhow::anyhow!("GPIO line spec `{spec}`: line offset `{offset}` is not a number (expected CHIP:OFFSET, e.g. gpiochip0:17)"))?;
        let chip = if chip.contains('/') {
            anyhow::ensure!(chip.starts_with('/'), "GPIO line spec `{spec}`: chip path `{chip}` is not absolute (e.g. /dev/gpiochip0)");
            ChipRef::Path(PathBuf::from(chip))
        } else if chip.strip_prefix("gpiochip").is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())) {
            ChipRef::Device(chip.to_string())
        } else {
            ChipRef::Label(chip.to_string())
        };
        Ok(LineSpec::Offset { chip, offset })
    }
}

impl std::str::FromStr for LineSpec {
    type Err = anyhow::Error;

    /// See [`LineSpec::parse`].
    fn from_str(s: &str) -> anyhow::Result<Self> {
        LineSpec::parse(s)
    }
}

impl fmt::Display for LineSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LineSpec::Named(n) => write!(f, "line `{n}`"),
            LineSpec::Offset { chip, offset } => write!(f, "line {offset} of {chip}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(s: &str) -> String {
        format!("{:#}", LineSpec::parse(s).unwrap_err())
    }

    #[test]
    fn parses_names_devices_paths_and_labels() {
        assert_eq!(LineSpec::parse("GPIO17").unwrap(), LineSpec::Named("GPIO17".into()));
        assert_eq!(LineSpec::parse(" REJECT ").unwrap(), LineSpec::Named("REJECT".into()));
        assert_eq!(LineSpec::parse("gpiochip0:17").unwrap(), LineSpec::Offset { chip: ChipRef::Device("gpiochip0".into()), offset: 17 });
        assert_eq!(LineSpec::parse("/dev/gpiochip0:17").unwrap(), LineSpec::Offset { chip: ChipRef::Path("/dev/gpiochip0".into()), offset: 17 });
        assert_eq!(LineSpec::parse("pinctrl-rp1:4").unwrap(), LineSpec::Offset { chip: ChipRef::Label("pinctrl-rp1".into()), offset: 4 });
        // Only `gpiochip` + digits is a device name; anything else is a label.
        assert_eq!(LineSpec::parse("gpiochipX:1").unwrap(), LineSpec::Offset { chip: ChipRef::Label("gpiochipX".into()), offset: 1 });
        assert_eq!("gpiochip4:0".parse::<LineSpec>().unwrap().to_string(), "line 0 of /dev/gpiochip4");
    }

    #[test]
    fn rejects_bad_specs_with_a_reason() {
        assert!(err("").contains("empty GPIO line spec"));
        assert!(err("   ").contains("empty GPIO line spec"));
        assert!(err(":17").contains("no chip before `:`"));
        assert!(err("gpiochip0:").contains("no line offset after `:`"));
        assert!(err("gpiochip0:abc").contains("line offset `abc` is not a number"));
        assert!(err("gpiochip0:-1").contains("is not a number"));
        assert!(err("gpiochip0:+1").contains("is not a number"));
        assert!(err("gpiochip0:99999999999").contains("is not a number"));
        assert!(err("dev/gpiochip0:3").contains("not absolute"));
        assert!(err("GPIO 17").contains("no spaces"));
    }
}
