"""File Search's embedded embedding model: WordLlama's ``l2_supercat`` (256 dimensions),
whose weights and tokenizer ship inside the ``wordllama`` package, so semantic ranking
works with nothing to download or run beside the server.

It is a static model (token embeddings pooled), cheap enough for 2 CPU cores: it reads
about 0.6 MB of text a second, in a worker thread, loaded once at its first use.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

BUILTIN = "builtin"
"""The ``embedding_model`` that names this model."""
NONE = "none"
"""The ``embedding_model`` that ranks by keywords alone."""


class Builtin:
    def __init__(self) -> None:
        self._model: Any = None
        self._loading = threading.Lock()

    async def __call__(self, texts: list[str]) -> list[list[float]]:
        return await asyncio.to_thread(self._embed, texts)

    def _embed(self, texts: list[str]) -> list[list[float]]:
        found = self._loaded().embed(texts, norm=True)
        return [row.tolist() for row in found]

    def _loaded(self) -> Any:
        with self._loading:
            if self._model is None:
                import wordllama

                # Its own files, found where the package keeps them (it would otherwise
                # look for its tokenizer in a cache and fetch it from the network).
                here = Path(wordllama.__file__).parent
                self._model = wordllama.WordLlama.load(cache_dir=here, disable_download=True)
            return self._model
