"""What runs inside a kernel to save its user namespace to a file, and to load it back.

The engine never imports this module: it sends its source to the kernel (see
``interp._snapshots``), where it runs in a namespace of its own, so the user's sees no
new name. The host only moves the file's bytes; unpickling happens here, in the sandbox,
because the file is the code's to write.

A snapshot file is a magic line, a JSON line (the modules to import again, the names not
kept, when it was taken) and one pickle of a dict: one pickle, so that two names for one
object are still one object once loaded.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import pickle
import re
import time
import types
from collections.abc import Iterator
from typing import Any, BinaryIO

from IPython import get_ipython

MAGIC = b"interp-snapshot 1\n"

# What IPython keeps in the namespace for itself: its output cache and input history.
_IPYTHON_NAMES = re.compile(r"_+|_i+|_i?\d+|_[ido]h|__\w+__|In|Out|exit|quit|get_ipython")


class _Over(Exception):
    """The snapshot outgrew its cap."""


class _Capped:
    """A file that refuses to grow past ``cap`` bytes (a probe when ``file`` is None)."""

    def __init__(self, file: BinaryIO | None, cap: int) -> None:
        self.file, self.cap, self.size = file, cap, 0

    def write(self, data: bytes | memoryview) -> None:
        # Large pieces come as memoryviews or pickle buffers: count their bytes.
        self.size += memoryview(data).nbytes
        if self.size > self.cap:
            raise _Over()
        if self.file is not None:
            self.file.write(data)


def _user_names(shell: Any) -> Iterator[tuple[str, object]]:
    hidden = shell.user_ns_hidden
    for name, value in list(shell.user_ns.items()):
        if _IPYTHON_NAMES.fullmatch(name) or (name in hidden and hidden[name] is value):
            continue
        yield name, value


def _type_name(value: object) -> str:
    kind = type(value)
    module = kind.__module__
    if module in ("builtins", "__main__"):
        return kind.__qualname__
    return f"{module}.{kind.__qualname__}"


def hibernate(path: str, cap: int) -> str:
    """Save the namespace at ``path``; a JSON summary, never an exception."""
    try:
        import cloudpickle

        shell = get_ipython()
        modules, kept, skipped = {}, {}, []
        for name, value in _user_names(shell):
            if isinstance(value, types.ModuleType):
                modules[name] = value.__name__
                continue
            try:
                cloudpickle.dump(value, _Capped(None, cap), protocol=5)
            except _Over:
                return json.dumps({"ok": False, "over": True, "name": name})
            except Exception:  # noqa: BLE001 (any object's own reason not to be pickled)
                skipped.append([name, _type_name(value)])
                continue
            kept[name] = value
        head = {"modules": modules, "skipped": skipped, "taken_at": time.time()}
        # Whatever the code left at the name (a link, say) is replaced, not written through.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        with open(os.open(path, flags, 0o600), "wb") as raw:
            capped = _Capped(raw, cap)
            capped.write(MAGIC)
            capped.write(json.dumps(head).encode() + b"\n")
            try:
                cloudpickle.dump(kept, capped, protocol=5)
            except _Over:
                raw.close()
                os.unlink(path)
                return json.dumps({"ok": False, "over": True, "name": None})
        return json.dumps(
            {
                "ok": True,
                "bytes": capped.size,
                "kept": len(kept),
                "modules": modules,
                "skipped": skipped,
            }
        )
    except Exception as exc:  # noqa: BLE001 (reported to the engine, which says it)
        return json.dumps({"ok": False, "error": f"{type(exc).__name__}: {exc}"[:500]})


def restore(path: str) -> str:
    """Load the snapshot at ``path`` into the namespace, all of it or nothing; delete the
    file; a JSON summary, never an exception."""
    try:
        with open(path, "rb") as file:
            if file.readline() != MAGIC:
                raise ValueError("not a snapshot")
            head = json.loads(file.readline())
            missing = []
            for name, module in head["modules"].items():
                try:
                    head["modules"][name] = importlib.import_module(module)
                except Exception:  # noqa: BLE001
                    missing.append([name, module])
            names = pickle.load(file)  # noqa: S301 (in the sandbox: the code's own file)
        if not isinstance(names, dict) or not all(isinstance(n, str) for n in names):
            raise TypeError("its namespace is not a dict of names")
        shell = get_ipython()
        shell.user_ns.update(names)
        shell.user_ns.update(
            {n: m for n, m in head["modules"].items() if isinstance(m, types.ModuleType)}
        )
        return json.dumps({"ok": True, "kept": len(names), "missing_modules": missing})
    except Exception as exc:  # noqa: BLE001 (a snapshot is the code's: anything may be wrong)
        return json.dumps({"ok": False, "error": f"{type(exc).__name__}: {exc}"[:500]})
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
