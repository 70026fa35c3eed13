//! `runtime cameras`.

/// Lists the V4L2 cameras (`/dev/video*`): driver, card, capture formats (fourcc, description,
/// whether the runtime converts it) and frame sizes; says so when there are none.
///
/// # Errors
/// None: a camera that cannot be queried is listed with the reason.
pub fn cameras() -> anyhow::Result<()> {
    print!("{}", crate::capture::render_camera_table(&crate::capture::list_cameras()));
    Ok(())
}
