//! Files that hold patient data or secrets (letters with invitation codes, outbox messages
//! with reset links, reports, the data directory): readable by their owner only (0600,
//! directories 0700) whatever the umask, never written through a symbolic link, an existing
//! file replaced only when the caller says so, and synced before they count as written.

use std::io::Write;
use std::path::Path;

/// Whether an existing file at the path may be replaced.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Existing {
    /// Refuse (the file, or a symbolic link, is there).
    Refuse,
    /// Replace it (a symbolic link is replaced itself, never followed).
    Replace,
}

/// Creates `path` and its missing parents; the directory itself is left readable by its
/// owner only when Kith created it.
pub fn create_dir(path: &Path) -> std::io::Result<()> {
    if path.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(path)?;
    restrict(path, 0o700)
}

#[cfg(unix)]
fn restrict(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn restrict(_path: &Path, _mode: u32) -> std::io::Result<()> {
    Ok(())
}

/// A new file, readable by its owner only, that must not exist yet (`O_CREAT | O_EXCL`: an
/// existing file or symbolic link, even a dangling one, is refused).
fn create_new(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options.open(path)?;
    restrict(path, 0o600)?;
    Ok(file)
}

/// Writes `bytes` to `path` (see the module's documentation). With [`Existing::Replace`] the
/// bytes go to a new file beside it first, which then takes its place, so that a reader never
/// sees half a file and a link at `path` is replaced, not followed.
pub fn write(path: &Path, bytes: &[u8], existing: Existing) -> std::io::Result<()> {
    let written = |target: &Path| -> std::io::Result<()> {
        let mut file = create_new(target)?;
        file.write_all(bytes)?;
        file.sync_all()
    };
    match existing {
        Existing::Refuse => match written(path) {
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                format!("{} exists already (give --force to replace it)", path.display()),
            )),
            other => other,
        },
        Existing::Replace => {
            let name = path.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
            let temporary = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
            let _ = std::fs::remove_file(&temporary);
            written(&temporary)?;
            std::fs::rename(&temporary, path).inspect_err(|_| {
                let _ = std::fs::remove_file(&temporary);
            })
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn files_are_the_owner_s_and_links_are_never_followed() {
        let directory = tempfile::tempdir().unwrap();
        let private = directory.path().join("private");
        create_dir(&private).unwrap();
        assert_eq!(mode(&private), 0o700);
        let file = private.join("letters.pdf");
        write(&file, b"first", Existing::Refuse).unwrap();
        assert_eq!(mode(&file), 0o600);
        let refused = write(&file, b"second", Existing::Refuse).unwrap_err();
        assert!(refused.to_string().contains("exists already (give --force to replace it)"), "{refused}");
        assert_eq!(std::fs::read(&file).unwrap(), b"first");
        write(&file, b"second", Existing::Replace).unwrap();
        assert_eq!((std::fs::read(&file).unwrap(), mode(&file)), (b"second".to_vec(), 0o600));

        // A symbolic link planted where the file goes: refused, or replaced — the file it
        // points to is never written.
        let target = directory.path().join("elsewhere");
        std::fs::write(&target, b"untouched").unwrap();
        let link = private.join("link.pdf");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(write(&link, b"x", Existing::Refuse).is_err());
        write(&link, b"x", Existing::Replace).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"untouched");
        assert!(!std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    }
}
