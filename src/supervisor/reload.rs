//! `--reload`: restart workers when Python source files change (inotify).
//!
//! Every directory under the watched roots gets an inotify watch, except the
//! ones no application edits: virtualenvs (a `pyvenv.cfg` inside),
//! `site-packages`, `__pycache__`, `.git`, `node_modules` and hidden
//! directories. A changed `*.py` file (written, created, moved in, deleted)
//! triggers a reload; a new directory is watched as it appears. The master polls
//! the inotify descriptor each tick, so no thread is added to it.

use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};

use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask};

/// Watches source trees for changes to Python files.
#[derive(Debug)]
pub struct Reloader {
    inotify: Inotify,
    dirs: Vec<(WatchDescriptor, PathBuf)>,
    buffer: Vec<u8>,
}

fn skipped(dir: &Path) -> bool {
    let name = dir.file_name().and_then(OsStr::to_str).unwrap_or("");
    matches!(
        name,
        "__pycache__" | "site-packages" | "node_modules" | "target"
    ) || (name.starts_with('.') && name.len() > 1)
        || dir.join("pyvenv.cfg").exists()
}

fn mask() -> WatchMask {
    WatchMask::CLOSE_WRITE
        | WatchMask::MODIFY
        | WatchMask::CREATE
        | WatchMask::DELETE
        | WatchMask::MOVED_TO
        | WatchMask::MOVED_FROM
}

impl Reloader {
    /// Watch `roots` and every directory below them (module docs).
    ///
    /// # Errors
    ///
    /// The `inotify_init1(2)` error; directories that cannot be watched are skipped.
    pub fn new(roots: &[PathBuf]) -> io::Result<Reloader> {
        let mut reloader = Reloader {
            inotify: Inotify::init()?,
            dirs: Vec::new(),
            buffer: vec![0; 64 * 1024],
        };
        for root in roots {
            reloader.watch_tree(root);
        }
        Ok(reloader)
    }

    /// Directories watched.
    pub fn watched(&self) -> usize {
        self.dirs.len()
    }

    fn watch_tree(&mut self, root: &Path) {
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            if skipped(&dir) && dir != root {
                continue;
            }
            if let Ok(wd) = self.inotify.watches().add(&dir, mask()) {
                self.dirs.push((wd, dir.clone()));
            }
            if let Ok(entries) = std::fs::read_dir(&dir) {
                for entry in entries.flatten() {
                    if entry.file_type().is_ok_and(|t| t.is_dir()) {
                        stack.push(entry.path());
                    }
                }
            }
        }
    }

    /// The first changed Python file since the last call, if any; never blocks.
    pub fn changed(&mut self) -> Option<PathBuf> {
        let mut found = None;
        let mut new_dirs = Vec::new();
        loop {
            let events = match self.inotify.read_events(&mut self.buffer) {
                Ok(events) => events,
                Err(_) => break, // WouldBlock: nothing more to read
            };
            let mut any = false;
            for event in events {
                any = true;
                let Some(name) = event.name else { continue };
                let Some(dir) = self.dirs.iter().find(|(wd, _)| *wd == event.wd) else {
                    continue;
                };
                let path = dir.1.join(name);
                if event.mask.contains(EventMask::ISDIR) {
                    if event
                        .mask
                        .intersects(EventMask::CREATE | EventMask::MOVED_TO)
                    {
                        new_dirs.push(path);
                    }
                } else if path.extension() == Some(OsStr::new("py")) && found.is_none() {
                    found = Some(path);
                }
            }
            if !any {
                break;
            }
        }
        for dir in new_dirs {
            self.watch_tree(&dir);
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_changes_are_seen_and_others_ignored() {
        let root = std::env::temp_dir().join(format!("ferrule-reload-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("pkg/__pycache__")).unwrap();
        std::fs::create_dir_all(root.join("venv")).unwrap();
        std::fs::write(root.join("venv/pyvenv.cfg"), "home = /usr\n").unwrap();
        let mut reloader = Reloader::new(std::slice::from_ref(&root)).unwrap();
        assert_eq!(
            reloader.watched(),
            2,
            "root and pkg; not __pycache__ or the venv"
        );
        std::fs::write(root.join("notes.txt"), "x").unwrap();
        std::fs::write(root.join("venv/lib.py"), "x = 1\n").unwrap();
        std::fs::write(root.join("pkg/__pycache__/m.cpython-311.pyc"), "x").unwrap();
        assert_eq!(reloader.changed(), None);
        std::fs::write(root.join("pkg/views.py"), "x = 2\n").unwrap();
        assert_eq!(reloader.changed(), Some(root.join("pkg/views.py")));
        assert_eq!(reloader.changed(), None);
        std::fs::create_dir(root.join("newpkg")).unwrap();
        assert_eq!(reloader.changed(), None);
        std::fs::write(root.join("newpkg/a.py"), "").unwrap();
        assert_eq!(reloader.changed(), Some(root.join("newpkg/a.py")));
        let _ = std::fs::remove_dir_all(&root);
    }
}
