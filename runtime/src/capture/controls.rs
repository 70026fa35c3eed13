//! V4L2 camera controls (`[camera.controls]`, issue 16 item 4): exposure, gain, white balance and
//! focus set to fixed values at open and after every reopen, read back and logged. Auto exposure
//! and auto white balance drifting with the light is a classic cause of false rejects: the model
//! learnt one brightness.
//!
//! Names are the driver's control names normalised by [`control_key`] (`Exposure Time, Absolute`
//! -> `exposure_time_absolute`), as `runtime cameras` lists them with their ranges. Controls whose
//! key contains `auto` are set first; then the others, each in key order.

use std::collections::BTreeMap;

use firmware_config::ControlValue;

/// One control of a device (VIDIOC_QUERY_EXT_CTRL), as far as the runtime uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlInfo {
    pub id: u32,
    /// The driver's name, e.g. `Exposure Time, Absolute`.
    pub name: String,
    pub kind: ControlKind,
    pub minimum: i64,
    pub maximum: i64,
    pub step: u64,
    pub default: i64,
    /// Menu entries `(index, label)` of a menu control.
    pub menu: Vec<(u32, String)>,
    pub read_only: bool,
    /// Disabled, or inactive now (e.g. a manual exposure while auto exposure is on).
    pub inactive: bool,
}

/// The control types the runtime can set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlKind {
    Integer,
    Boolean,
    Menu,
    /// Buttons, strings, classes, compound types: listed, never set.
    Other,
}

impl ControlInfo {
    /// The key for `[camera.controls]` ([`control_key`]).
    pub fn key(&self) -> String {
        control_key(&self.name)
    }

    /// `0..=255 step 1 (default 128)`, `bool (default true)`, `menu 1=Manual Mode, 3=Aperture
    /// Priority Mode (default 3)`: how `runtime cameras` shows the allowed values.
    pub fn range_text(&self) -> String {
        match self.kind {
            ControlKind::Boolean => format!("bool (default {})", self.default != 0),
            ControlKind::Menu => {
                let items: Vec<String> = self.menu.iter().map(|(i, l)| format!("{i}={l}")).collect();
                format!("menu {} (default {})", items.join(", "), self.default)
            }
            ControlKind::Integer => format!("{}..={} step {} (default {})", self.minimum, self.maximum, self.step.max(1), self.default),
            ControlKind::Other => "not settable".into(),
        }
    }

    /// Why `value` cannot be set on this control, if it cannot.
    fn value_problem(&self, value: ControlValue) -> Option<String> {
        if self.read_only {
            return Some("the control is read-only".into());
        }
        let v = value.as_i64();
        match (self.kind, value) {
            (ControlKind::Other, _) => Some("the runtime sets integer, boolean and menu controls only".into()),
            (ControlKind::Boolean, ControlValue::Int(i)) if i != 0 && i != 1 => Some(format!("{i}: expected true or false")),
            (ControlKind::Menu, _) if !self.menu.iter().any(|(i, _)| i64::from(*i) == v) => Some(format!("{v}: expected one of the menu entries {}", self.range_text())),
            (ControlKind::Integer, _) if v < self.minimum || v > self.maximum => Some(format!("{v}: expected {}", self.range_text())),
            (ControlKind::Integer, _) if self.step > 1 && (v - self.minimum) % self.step as i64 != 0 => Some(format!("{v}: expected {}", self.range_text())),
            _ => None,
        }
    }
}

/// `Exposure Time, Absolute` -> `exposure_time_absolute`: lower case, runs of other characters
/// as one `_`, none at the ends.
pub fn control_key(name: &str) -> String {
    let mut key = String::new();
    for ch in name.chars() {
        if ch.is_ascii_alphanumeric() {
            key.push(ch.to_ascii_lowercase());
        } else if !key.ends_with('_') && !key.is_empty() {
            key.push('_');
        }
    }
    key.trim_end_matches('_').to_string()
}

/// What a device offers for controls: the real V4L2 device, or a simulated one in tests.
pub trait ControlDevice {
    /// Every control the driver lists.
    ///
    /// # Errors
    /// The query ioctl failed.
    fn controls(&self) -> std::io::Result<Vec<ControlInfo>>;
    /// The current value of control `id`.
    ///
    /// # Errors
    /// The ioctl failed.
    fn get(&self, id: u32) -> std::io::Result<i64>;
    /// Sets control `id` to `value` (drivers may clamp or round it).
    ///
    /// # Errors
    /// The driver refused the value.
    fn set(&mut self, id: u32, value: i64) -> std::io::Result<()>;
}

/// One control as set: what the device file asked and what the driver reports afterwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedControl {
    pub key: String,
    pub wanted: i64,
    pub read_back: i64,
}

/// Sets every control of `wanted` on `dev` (auto modes first), reads each back and logs it; a value
/// the driver changed is logged as a warning. All are checked before the first is set.
///
/// # Errors
/// A name the device does not have (the message lists the ones it has), a value outside the
/// control's range or menu, a read-only control, or an ioctl the driver refused: each message
/// names the device and the `camera.controls` key.
pub fn apply_controls(dev: &mut dyn ControlDevice, device: &str, wanted: &BTreeMap<String, ControlValue>) -> Result<Vec<AppliedControl>, String> {
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let available = dev.controls().map_err(|e| format!("camera {device}: cannot list its controls: {e}"))?;
    let mut plan = Vec::new();
    for (key, value) in wanted {
        let Some(info) = available.iter().find(|c| c.key() == *key) else {
            let keys: Vec<String> = available.iter().filter(|c| c.kind != ControlKind::Other).map(ControlInfo::key).collect();
            return Err(format!("camera {device}: camera.controls.{key}: no such control; this camera has {}", if keys.is_empty() { "none".into() } else { keys.join(", ") }));
        };
        if let Some(why) = info.value_problem(*value) {
            return Err(format!("camera {device}: camera.controls.{key} = {}: {why}", value.as_i64()));
        }
        plan.push((key.contains("auto"), key.clone(), info.id, value.as_i64()));
    }
    // Auto modes first: a manual exposure set while auto exposure is on is ignored (inactive).
    plan.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    let mut applied = Vec::new();
    for (_, key, id, value) in plan {
        dev.set(id, value).map_err(|e| format!("camera {device}: camera.controls.{key} = {value}: the driver refused it: {e}"))?;
        let read_back = dev.get(id).map_err(|e| format!("camera {device}: camera.controls.{key}: cannot read it back: {e}"))?;
        if read_back == value {
            tracing::info!(device, "camera control {key} = {value} (read back {read_back})");
        } else {
            tracing::warn!(device, "camera control {key}: set {value}, the driver reports {read_back}");
        }
        applied.push(AppliedControl { key, wanted: value, read_back });
    }
    Ok(applied)
}

/// The controls of a real V4L2 device (the `v4l` crate).
pub struct V4l2Controls<'a>(pub &'a v4l::Device);

impl ControlDevice for V4l2Controls<'_> {
    fn controls(&self) -> std::io::Result<Vec<ControlInfo>> {
        use v4l::control::{Flags, MenuItem, Type};
        Ok(self
            .0
            .query_controls()?
            .into_iter()
            .map(|d| ControlInfo {
                id: d.id,
                kind: match d.typ {
                    Type::Integer | Type::Integer64 => ControlKind::Integer,
                    Type::Boolean => ControlKind::Boolean,
                    Type::Menu | Type::IntegerMenu => ControlKind::Menu,
                    _ => ControlKind::Other,
                },
                minimum: d.minimum,
                maximum: d.maximum,
                step: d.step,
                default: d.default,
                menu: d.items.unwrap_or_default().into_iter().map(|(i, item)| (i, match item {
                    MenuItem::Name(n) => n,
                    MenuItem::Value(v) => v.to_string(),
                })).collect(),
                read_only: d.flags.contains(Flags::READ_ONLY),
                inactive: d.flags.intersects(Flags::INACTIVE | Flags::DISABLED),
                name: d.name,
            })
            .collect())
    }

    fn get(&self, id: u32) -> std::io::Result<i64> {
        use v4l::control::Value;
        Ok(match self.0.control(id)?.value {
            Value::Integer(i) => i,
            Value::Boolean(b) => i64::from(b),
            _ => 0,
        })
    }

    fn set(&mut self, id: u32, value: i64) -> std::io::Result<()> {
        use v4l::control::{Control, Value};
        self.0.set_control(Control { id, value: Value::Integer(value) })
    }
}

/// A camera's controls in memory, with the driver behaviours that matter: values clamped to the
/// range, manual exposure inactive (ignored) while `auto_exposure` is not manual. For tests.
#[derive(Debug, Clone)]
pub struct SimulatedControls {
    pub infos: Vec<ControlInfo>,
    pub values: BTreeMap<u32, i64>,
    /// Every `set` in order, `(key, value)`.
    pub writes: Vec<(String, i64)>,
}

impl SimulatedControls {
    /// A UVC-like camera: `auto_exposure` (menu 1 = manual, 3 = aperture priority, default 3),
    /// `exposure_time_absolute` 3..=2047, `gain` 0..=255, `white_balance_automatic` (default on).
    pub fn uvc_like() -> Self {
        let c = |id, name: &str, kind, minimum, maximum, default, menu: Vec<(u32, String)>| ControlInfo {
            id,
            name: name.into(),
            kind,
            minimum,
            maximum,
            step: 1,
            default,
            menu,
            read_only: false,
            inactive: false,
        };
        let infos = vec![
            c(0x009a0901, "Auto Exposure", ControlKind::Menu, 0, 3, 3, vec![(1, "Manual Mode".into()), (3, "Aperture Priority Mode".into())]),
            c(0x009a0902, "Exposure Time, Absolute", ControlKind::Integer, 3, 2047, 250, vec![]),
            c(0x00980913, "Gain", ControlKind::Integer, 0, 255, 0, vec![]),
            c(0x0098090c, "White Balance, Automatic", ControlKind::Boolean, 0, 1, 1, vec![]),
        ];
        let values = infos.iter().map(|i| (i.id, i.default)).collect();
        Self { infos, values, writes: Vec::new() }
    }
}

impl ControlDevice for SimulatedControls {
    fn controls(&self) -> std::io::Result<Vec<ControlInfo>> {
        Ok(self.infos.clone())
    }

    fn get(&self, id: u32) -> std::io::Result<i64> {
        self.values.get(&id).copied().ok_or_else(|| std::io::Error::from_raw_os_error(libc::EINVAL))
    }

    fn set(&mut self, id: u32, value: i64) -> std::io::Result<()> {
        let info = self.infos.iter().find(|i| i.id == id).ok_or_else(|| std::io::Error::from_raw_os_error(libc::EINVAL))?;
        let key = info.key();
        self.writes.push((key.clone(), value));
        // A UVC driver ignores a manual exposure while auto exposure is on.
        if key == "exposure_time_absolute" && self.values.get(&0x009a0901) != Some(&1) {
            return Ok(());
        }
        let v = value.clamp(info.minimum, info.maximum);
        self.values.insert(id, v);
        Ok(())
    }
}

/// The controls table `runtime cameras` prints under a camera: key, range, current value.
pub fn render_controls(controls: &[(ControlInfo, Option<i64>)]) -> String {
    if controls.is_empty() {
        return "  no controls listed\n".into();
    }
    let mut s = String::from("  | control (camera.controls key) | values | now |\n  |---|---|---|\n");
    for (c, now) in controls {
        let now = now.map(|v| v.to_string()).unwrap_or_else(|| "-".into());
        let flags = if c.read_only { " (read-only)" } else if c.inactive { " (inactive now)" } else { "" };
        s += &format!("  | {}{flags} | {} | {now} |\n", c.key(), c.range_text());
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn want(pairs: &[(&str, ControlValue)]) -> BTreeMap<String, ControlValue> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn keys_follow_the_driver_names() {
        assert_eq!(control_key("Exposure Time, Absolute"), "exposure_time_absolute");
        assert_eq!(control_key("White Balance, Automatic"), "white_balance_automatic");
        assert_eq!(control_key("  Gain "), "gain");
        assert_eq!(control_key("Focus (absolute)"), "focus_absolute");
    }

    #[test]
    fn auto_modes_go_first_so_the_manual_exposure_holds() {
        let mut cam = SimulatedControls::uvc_like();
        let applied = apply_controls(&mut cam, "/dev/video0", &want(&[("exposure_time_absolute", ControlValue::Int(500)), ("auto_exposure", ControlValue::Int(1)), ("gain", ControlValue::Int(16))])).unwrap();
        assert_eq!(cam.writes, [("auto_exposure".to_string(), 1), ("exposure_time_absolute".into(), 500), ("gain".into(), 16)]);
        assert_eq!(applied.iter().map(|a| (a.key.as_str(), a.read_back)).collect::<Vec<_>>(), [("auto_exposure", 1), ("exposure_time_absolute", 500), ("gain", 16)]);
        // In key order instead, the exposure would have been ignored: auto_exposure sorts first
        // anyway, so check the driver model itself.
        let mut cam = SimulatedControls::uvc_like();
        cam.set(0x009a0902, 500).unwrap();
        assert_eq!(cam.get(0x009a0902).unwrap(), 250, "ignored while auto exposure is on");
    }

    #[test]
    fn booleans_and_read_back_are_reported() {
        let mut cam = SimulatedControls::uvc_like();
        let applied = apply_controls(&mut cam, "cam", &want(&[("white_balance_automatic", ControlValue::Bool(false))])).unwrap();
        assert_eq!(applied, [AppliedControl { key: "white_balance_automatic".into(), wanted: 0, read_back: 0 }]);
    }

    #[test]
    fn bad_names_and_values_are_refused_before_anything_is_set() {
        let mut cam = SimulatedControls::uvc_like();
        let e = apply_controls(&mut cam, "/dev/video0", &want(&[("gain", ControlValue::Int(8)), ("exposure", ControlValue::Int(5))])).unwrap_err();
        assert!(e.contains("camera.controls.exposure: no such control; this camera has auto_exposure, exposure_time_absolute, gain, white_balance_automatic"), "{e}");
        assert!(cam.writes.is_empty(), "nothing set: {:?}", cam.writes);
        let e = apply_controls(&mut cam, "/dev/video0", &want(&[("gain", ControlValue::Int(300))])).unwrap_err();
        assert!(e.contains("camera.controls.gain = 300: 300: expected 0..=255 step 1 (default 0)"), "{e}");
        let e = apply_controls(&mut cam, "/dev/video0", &want(&[("auto_exposure", ControlValue::Int(2))])).unwrap_err();
        assert!(e.contains("expected one of the menu entries menu 1=Manual Mode, 3=Aperture Priority Mode"), "{e}");
        let e = apply_controls(&mut cam, "/dev/video0", &want(&[("white_balance_automatic", ControlValue::Int(5))])).unwrap_err();
        assert!(e.contains("expected true or false"), "{e}");
        cam.infos[2].read_only = true;
        let e = apply_controls(&mut cam, "/dev/video0", &want(&[("gain", ControlValue::Int(3))])).unwrap_err();
        assert!(e.contains("read-only"), "{e}");
        assert!(cam.writes.is_empty());
    }

    #[test]
    fn the_table_shows_ranges_and_values() {
        let cam = SimulatedControls::uvc_like();
        let rows: Vec<(ControlInfo, Option<i64>)> = cam.infos.iter().map(|i| (i.clone(), cam.get(i.id).ok())).collect();
        let t = render_controls(&rows);
        assert!(t.contains("| auto_exposure | menu 1=Manual Mode, 3=Aperture Priority Mode (default 3) | 3 |"), "{t}");
        assert!(t.contains("| exposure_time_absolute | 3..=2047 step 1 (default 250) | 250 |"), "{t}");
        assert!(t.contains("| white_balance_automatic | bool (default true) | 1 |"), "{t}");
    }
}
