"""Host directories that kernels see as /mnt/data, with a size cap where the host allows.

With a cap (root on Linux, a loop device and mkfs.ext4 at hand), each directory is its
own small ext4 filesystem in a sparse image file, loop-mounted at the directory's path:
code that fills /mnt/data gets ENOSPC inside and the host loses at most the cap. Without
those, directories are plain and uncapped, and the engine says so once.

Directories move from the warm pool to a session with ``move``: a rename for plain ones,
``mount --move`` for capped ones. Either way the kernel's bind mount follows.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
from pathlib import Path

from ._owner import stale_dirs

log = logging.getLogger("interp.storage")


def _image(directory: Path) -> Path:
    return directory.with_name(directory.name + ".img")


def _run(*command: str) -> None:
    subprocess.run(command, check=True, capture_output=True, text=True)


class Storage:
    """Makes, moves and removes /mnt/data directories. Blocking: call from a thread."""

    def __init__(self, cap_bytes: int | None) -> None:
        self.cap_bytes = cap_bytes if cap_bytes and self._can_cap() else None
        if cap_bytes and self.cap_bytes is None:
            log.warning("no size cap on /mnt/data: capping needs root, a loop device and mkfs.ext4")

    @staticmethod
    def _can_cap() -> bool:
        return (
            os.geteuid() == 0
            and Path("/dev/loop-control").exists()
            and shutil.which("mkfs.ext4") is not None
            and shutil.which("mount") is not None
        )

    def capped(self, directory: Path) -> bool:
        return directory.is_mount()

    def create(self, directory: Path) -> None:
        """A new, empty directory: capped when a cap is configured and possible."""
        directory.mkdir(parents=True)
        if self.cap_bytes is None:
            return
        image = _image(directory)
        try:
            with image.open("xb") as sparse:
                sparse.truncate(self.cap_bytes)
            # Owned by the engine's user; the backend hands it to the kernel's user.
            _run(
                "mkfs.ext4", "-q", "-F", "-m", "0", "-O", "^has_journal",
                "-E", f"root_owner={os.getuid()}:{os.getgid()},nodiscard", str(image),
            )  # fmt: skip
            _run("mount", "-o", "loop,nosuid,nodev", str(image), str(directory))
            (directory / "lost+found").rmdir()
        except (OSError, subprocess.CalledProcessError):
            self.remove(directory)
            raise

    def move(self, source: Path, target: Path) -> None:
        """Give ``source`` (a pooled kernel's directory) the path ``target``.

        Files already at ``target`` (uploaded before the session had a kernel) go along.
        """
        if target.exists():
            with os.scandir(target) as entries:
                for entry in entries:
                    moved = source / entry.name
                    if self.capped(source):
                        shutil.move(entry.path, moved)
                    else:
                        os.rename(entry.path, moved)
            target.rmdir()
        if not self.capped(source):
            os.rename(source, target)
            return
        target.mkdir()
        _run("mount", "--move", str(source), str(target))
        os.rename(_image(source), _image(target))
        source.rmdir()

    def remove(self, directory: Path) -> None:
        """Unmount if capped, and delete the directory, its files and its image."""
        if directory.is_mount():
            with contextlib.suppress(subprocess.CalledProcessError):
                # Lazy: a container being removed may still hold it for a moment.
                _run("umount", "-l", str(directory))
        shutil.rmtree(directory, ignore_errors=True)
        _image(directory).unlink(missing_ok=True)

    def remove_stale(self, parent: Path) -> None:
        """Remove the directories under ``parent`` of engines whose process is gone."""
        for directory in stale_dirs(parent):
            self.remove_tree(directory)

    def remove_tree(self, root: Path) -> None:
        """Remove every directory under ``root`` (unmounting the capped ones), then ``root``."""
        if not root.is_dir():
            return
        for child in root.iterdir():
            if child.is_dir():
                self.remove(child)
        shutil.rmtree(root, ignore_errors=True)
