"""A text cut into overlapping chunks of a token budget, as OpenAI's chunking strategies
describe them: ``auto`` is 800 tokens with 400 of overlap; ``static`` names its own.

Tokens are estimated from UTF-8 bytes, as the agent's context is (no tokenizer is at hand
for an arbitrary model), and cuts fall between words: a chunk never splits a word unless
the word alone is over the budget.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..agent.context import BYTES_PER_TOKEN

AUTO_MAX_TOKENS = 800
AUTO_OVERLAP_TOKENS = 400


@dataclass(frozen=True)
class Strategy:
    """OpenAI's ``static`` chunking: 100 to 4096 tokens, an overlap of at most half."""

    max_tokens: int = AUTO_MAX_TOKENS
    overlap_tokens: int = AUTO_OVERLAP_TOKENS

    def __post_init__(self) -> None:
        if not 100 <= self.max_tokens <= 4096:
            raise ValueError("max_chunk_size_tokens must be between 100 and 4096")
        if not 0 <= self.overlap_tokens <= self.max_tokens // 2:
            raise ValueError("chunk_overlap_tokens must be between 0 and half of the chunk")


_WORD = re.compile(r"\S+\s*")


def split(text: str, strategy: Strategy = Strategy()) -> list[str]:
    """``text`` as chunks of at most ``strategy.max_tokens`` (estimated), each starting
    ``overlap_tokens`` before the previous one ended; ``[]`` for blank text."""
    budget = int(strategy.max_tokens * BYTES_PER_TOKEN)
    overlap = int(strategy.overlap_tokens * BYTES_PER_TOKEN)
    words: list[tuple[int, int, int]] = []  # each word's start, end (with its space), bytes
    for match in _WORD.finditer(text):
        start, end = match.span()
        # A word over the budget on its own (a long line of base64, say) is cut in pieces.
        while (size := len(text[start:end].encode())) > budget:
            cut = start + _chars_within(text[start:end], budget)
            words.append((start, cut, len(text[start:cut].encode())))
            start = cut
        words.append((start, end, size))
    chunks: list[str] = []
    first = 0
    while first < len(words):
        size, last = 0, first
        while last < len(words) and (size + words[last][2] <= budget or last == first):
            size += words[last][2]
            last += 1
        chunks.append(text[words[first][0] : words[last - 1][1]].strip())
        if last == len(words):
            break
        # The next chunk starts far enough back to repeat ``overlap`` bytes, but always
        # after this one's start, so that the text advances.
        back, kept = last, 0
        while back - 1 > first and kept + words[back - 1][2] <= overlap:
            back -= 1
            kept += words[back][2]
        first = back
    return [chunk for chunk in chunks if chunk]


def _chars_within(word: str, budget: int) -> int:
    """How many of ``word``'s characters fit in ``budget`` UTF-8 bytes (at least one)."""
    return max(1, len(word.encode()[:budget].decode(errors="ignore")))
