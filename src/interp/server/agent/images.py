"""Images a user gave by file id, sent to the model as image content.

A transcript keeps such an image as an ``image_url`` part whose URL names the stored file
(``interp-file:<id>``); a request gets its bytes as a ``data:`` URL when it is sent, so a
transcript holds no image bytes and a file deleted since is named instead."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable
from typing import Any

from ... import Engine, NoSuchFileError

FILE_URL = "interp-file:"
MAX_IMAGE_BYTES = 20 * 1024**2
"""The largest image sent (OpenAI's limit for an image input)."""

Reader = Callable[[str], Awaitable[tuple[bytes, str] | None]]
"""A stored file's bytes and media type, ``None`` when it is gone or too large."""


def file_image(file_id: str, detail: str | None = None) -> dict[str, Any]:
    """The part that stands for a stored image in a transcript."""
    return {
        "type": "image_url",
        "image_url": {"url": FILE_URL + file_id, "detail": detail or "auto"},
    }


def engine_files(engine: Engine) -> Reader:
    async def read(file_id: str) -> tuple[bytes, str] | None:
        try:
            info, path = engine.file(file_id), engine.file_path(file_id)
        except NoSuchFileError:
            return None
        if info.bytes > MAX_IMAGE_BYTES:
            return None
        try:
            return await asyncio.to_thread(path.read_bytes), info.mime
        except OSError:  # deleted meanwhile
            return None

    return read


async def inlined(messages: list[dict[str, Any]], read: Reader) -> list[dict[str, Any]]:
    """``messages`` with the stored images they name as ``data:`` URLs (one that is gone,
    named in text)."""
    out = []
    for message in messages:
        content = message.get("content")
        if not isinstance(content, list) or not any(_stored(part) for part in content):
            out.append(message)
            continue
        parts = []
        for part in content:
            if not _stored(part):
                parts.append(part)
                continue
            file_id = part["image_url"]["url"][len(FILE_URL) :]
            found = await read(file_id)
            if found is None:
                parts.append({"type": "text", "text": f"[image {file_id}: no longer stored]"})
                continue
            data, mime = found
            url = f"data:{mime};base64,{base64.b64encode(data).decode()}"
            parts.append({"type": "image_url", "image_url": {**part["image_url"], "url": url}})
        out.append({**message, "content": parts})
    return out


def _stored(part: Any) -> bool:
    return (
        isinstance(part, dict)
        and part.get("type") == "image_url"
        and str((part.get("image_url") or {}).get("url", "")).startswith(FILE_URL)
    )
