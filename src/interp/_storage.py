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
import threading
from pathlib import Path

from ._exceptions import SandboxError
from ._owner import stale_dirs
from ._sandbox_files import (
    SandboxFileError,
    create_new,
    open_regular_nofollow,
    opened_dir,
    remove_tree,
)

log = logging.getLogger("interp.storage")


def _image(directory: Path) -> Path:
    return directory.with_name(directory.name + ".img")


def _run(*command: str) -> None:
    """Run a storage command; its failure is a ``SandboxError`` with the tool's own words."""
    try:
        subprocess.run(command, check=True, capture_output=True, text=True)
    except subprocess.CalledProcessError as exc:
        said = (exc.stderr or exc.stdout or "").strip().splitlines()
        raise SandboxError(
            f"{command[0]} failed (exit {exc.returncode})" + (f": {said[-1]}" if said else "")
        ) from None
    except OSError as exc:
        raise SandboxError(f"cannot run {command[0]}: {exc.strerror}") from None


def _mount(image: Path, directory: Path) -> None:
    """Mount a session's filesystem image: no set-uid file, no device node works there."""
    _run("mount", "-o", "loop,nosuid,nodev", str(image), str(directory))


def _copy_file(name: str, source_dir: int, target_dir: int) -> None:
    """Copy a regular file between two open directories, following no link on either side."""
    src = open_regular_nofollow(name, dir_fd=source_dir)
    with (
        os.fdopen(src, "rb") as source,
        os.fdopen(create_new(name, dir_fd=target_dir), "wb") as target,
    ):
        shutil.copyfileobj(source, target)


class Storage:
    """Makes, moves and removes /mnt/data directories. Blocking: call from a thread."""

    def __init__(self, cap_bytes: int | None) -> None:
        self.cap_bytes = cap_bytes if cap_bytes and self._can_cap() else None
        self._mounts = threading.Lock()
        """Held while parking or unparking, so that no image is ever mounted twice."""
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
        """A new, empty directory: capped when a cap is configured and possible.

        Raises ``SandboxError`` when it cannot be made (a full disk, no loop device left).
        """
        try:
            directory.mkdir(parents=True)
        except OSError as exc:
            raise SandboxError(f"cannot make {directory}: {exc.strerror}") from None
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
            _mount(image, directory)
            (directory / "lost+found").rmdir()
        except OSError as exc:
            self.remove(directory)
            raise SandboxError(f"cannot make a capped /mnt/data: {exc.strerror}") from None
        except SandboxError:
            self.remove(directory)
            raise

    def move(self, source: Path, target: Path) -> None:
        """Give ``source`` (a pooled kernel's directory) the path ``target``.

        Files already at ``target`` (uploaded before the session had a kernel, or left by
        its dead kernel) go along: renamed on one filesystem; copied, if regular files, onto
        a capped one.
        """
        if target.exists():
            cross = self.capped(source)
            with opened_dir(target) as old, opened_dir(source) as new:
                for name in os.listdir(old):
                    if not cross:
                        os.rename(name, name, src_dir_fd=old, dst_dir_fd=new)
                        continue
                    with contextlib.suppress(SandboxFileError, FileExistsError):
                        _copy_file(name, old, new)
            remove_tree(target)
        if not self.capped(source):
            os.rename(source, target)
            return
        target.mkdir()
        _run("mount", "--move", str(source), str(target))
        os.rename(_image(source), _image(target))
        source.rmdir()

    def park(self, directory: Path, to: Path) -> Path | None:
        """Keep the files of ``directory`` at ``to`` while no kernel needs them (its
        session hibernates), where the engine's own directories' clean-up does not reach;
        ``None`` if it held nothing to keep (it is removed). A capped one is unmounted
        first, its image going along: a host holds only so many loop mounts."""
        with self._mounts:
            if not directory.is_dir():
                return None
            with opened_dir(directory) as fd:
                empty = not os.listdir(fd)
            if empty:
                self.remove(directory)
                return None
            capped = self.capped(directory)
            if capped:
                try:
                    _run("umount", str(directory))
                except SandboxError as exc:  # still in use: it stays, mounted, nothing lost
                    log.warning("could not unmount %s: %s", directory, exc.message)
                    return None
            to.parent.mkdir(parents=True, exist_ok=True)
            os.rename(directory, to)
            if capped:
                os.rename(_image(directory), _image(to))
            return to

    def unpark(self, parked: Path, directory: Path) -> None:
        """Put files kept by ``park`` back at ``directory`` (mounted again if capped)."""
        with self._mounts:
            if directory.exists():
                self.remove(directory)
            os.rename(parked, directory)
            image = _image(parked)
            if image.exists():
                os.rename(image, _image(directory))
                _mount(_image(directory), directory)

    @staticmethod
    def parked(root: Path) -> set[str]:
        """The names of the directories ``park`` left under ``root`` (or their images)."""
        if not root.is_dir():
            return set()
        return {path.name.removesuffix(".img") for path in root.iterdir()}

    def remove(self, directory: Path) -> None:
        """Unmount if capped, and delete the directory, its files and its image.

        What the code left there is removed without recursion or following links (see
        ``interp._sandbox_files.remove_tree``); what cannot be removed is logged, not raised.
        """
        if directory.is_mount():
            with contextlib.suppress(SandboxError):
                # Lazy: a container being removed may still hold it for a moment.
                _run("umount", "-l", str(directory))
        try:
            remove_tree(directory)
        except (SandboxFileError, OSError) as exc:
            log.warning("could not remove %s: %s", directory, str(exc))
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
        try:
            remove_tree(root)
        except (SandboxFileError, OSError) as exc:
            log.warning("could not remove %s: %s", root, str(exc))
