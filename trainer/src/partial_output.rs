//! Output written under a temporary name beside its destination and renamed onto it only when
//! complete: a failed or interrupted command leaves no half-written model or test set where a
//! user (or the next step) would take it for a whole one.

use std::path::{Path, PathBuf};

/// A file or folder at [`runtime::output::temp_path`] of its destination (`.<name>.tmp`), removed
/// on drop unless [`PartialOutput::commit`] renamed it onto the destination.
pub(crate) struct PartialOutput {
    pub(crate) path: PathBuf,
    committed: bool,
}

impl PartialOutput {
    /// The partial file of `out` (created by the caller; one left by a killed run is overwritten).
    pub(crate) fn file_beside(out: &Path) -> Self {
        Self { path: runtime::output::temp_path(out), committed: false }
    }

    /// The partial folder of `out`, created (with `out`'s parent) after removing one a killed
    /// run left: the name is this program's own. Errors name the folder.
    pub(crate) fn folder_beside(out: &Path) -> anyhow::Result<Self> {
        let path = runtime::output::temp_path(out);
        if path.is_dir() {
            std::fs::remove_dir_all(&path).map_err(|e| anyhow::anyhow!("cannot remove {}, the partial output of an interrupted run: {e}", path.display()))?;
        }
        std::fs::create_dir_all(&path).map_err(|e| anyhow::anyhow!("cannot create folder {}: {e}", path.display()))?;
        Ok(Self { path, committed: false })
    }

    /// Renames the partial output onto `out` (a partial folder replaces an empty folder there).
    /// Errors name both paths.
    pub(crate) fn commit(mut self, out: &Path) -> anyhow::Result<()> {
        if self.path.is_dir() && out.is_dir() {
            let _ = std::fs::remove_dir(out);
        }
        std::fs::rename(&self.path, out).map_err(|e| anyhow::anyhow!("cannot move {} to {}: {e}", self.path.display(), out.display()))?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for PartialOutput {
    fn drop(&mut self) {
        if !self.committed {
            let _ = if self.path.is_dir() { std::fs::remove_dir_all(&self.path) } else { std::fs::remove_file(&self.path) };
        }
    }
}
