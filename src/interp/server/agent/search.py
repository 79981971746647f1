"""The ``file_search`` tool as the model sees it: a function it calls with a query, whose
result is the passages found, each with a marker to cite it by; and the citations found
in the answer it writes, which both doors turn into ``file_citation`` annotations.

The marker is OpenAI's own form (``【3†report.pdf】``); a citation is known by the file
name in it, among the files this run's searches returned.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ..protocol.common import Filter

SEARCH_TOOL = "file_search"
DEFAULT_RESULTS = 20
"""Passages a search gives the model unless the tool says (OpenAI's default)."""

DESCRIPTION = (
    "Search the files the user has provided (their text, split into passages) by keywords."
    " Returns the best passages, each after a marker such as 【0†report.pdf】. Use it when"
    " the answer may be in the user's files. Cite each passage you use by writing its"
    " marker, exactly as given, right after the sentence it supports."
)


def schema() -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": SEARCH_TOOL,
            "description": DESCRIPTION,
            "parameters": {
                "type": "object",
                "properties": {
                    "query": {
                        "type": "string",
                        "description": "Keywords, or a short question, to search for.",
                    }
                },
                "required": ["query"],
            },
        },
    }


@dataclass(frozen=True)
class Searching:
    """What a run may search: its owner's vector stores, and how."""

    owner: str
    store_ids: list[str]
    max_num_results: int = DEFAULT_RESULTS
    filters: Filter | None = None
    score_threshold: float | None = None
    ranker: str = "auto"


Searcher = Callable[[Searching, list[str]], Awaitable[list[Any]]]
"""Searches for a run: the passages found, each with ``filename`` and ``hit`` (its file
id, text and score)."""


def queries(arguments: str) -> list[str]:
    """The queries of a call's arguments: ``{"query": …}`` (or ``queries``), else the
    arguments as they are (a model that wrote plain text)."""
    try:
        given = json.loads(arguments)
    except ValueError:
        given = arguments
    if isinstance(given, dict):
        found = given.get("queries") or given.get("query") or ""
        given = found
    listed = given if isinstance(given, list) else [given]
    return [str(q)[:4096] for q in listed if str(q).strip()][:16] or [""]


def shown(asked: list[str], results: list[Any]) -> str:
    """What the model is told of a search."""
    return passages_text(asked, [(r.filename, r.hit.score, r.hit.text) for r in results])


def passages_text(asked: list[str], passages: list[tuple[str, float, str]]) -> str:
    """What the model is told of a search's passages: (file name, score, text) each."""
    said = " | ".join(asked)
    if not passages:
        return f"No passages of the files match {said!r}."
    lines = [f"Passages for {said!r}, best first:"]
    for number, (filename, score, passage) in enumerate(passages):
        lines.append(f"\n【{number}†{filename}】 (score {score:.2f})")
        lines.append(passage)
    return "\n".join(lines)


_MARKER = re.compile(r"【(\d+)(?::\d+)?†([^】\n]{1,256})】")


@dataclass(frozen=True)
class Citation:
    start: int
    end: int
    text: str
    file_id: str
    filename: str


@dataclass
class Cited:
    """The files a run's searches returned, by name, to know its answer's citations by."""

    files: dict[str, str] = field(default_factory=dict)

    def add(self, results: list[Any]) -> None:
        for result in results:
            self.files.setdefault(result.filename, result.hit.file_id)

    def find(self, text: str) -> list[Citation]:
        if not self.files:
            return []
        found = []
        for match in _MARKER.finditer(text):
            name = match.group(2).strip()
            file_id = self.files.get(name)
            if file_id is not None:
                found.append(Citation(match.start(), match.end(), match.group(0), file_id, name))
        return found


__all__ = [
    "SEARCH_TOOL", "Cited", "Searcher", "Searching", "passages_text", "queries", "schema", "shown"
]  # fmt: skip
