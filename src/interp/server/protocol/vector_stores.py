"""The bodies of the vector stores API (File Search's collections of files)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from ..search.chunks import Strategy
from .common import ID, Attributes, Body, Filter, Metadata, RankingOptions

MAX_FILES = 500
"""Files named in one request (OpenAI's bound for a batch)."""


class StaticChunking(Body):
    max_chunk_size_tokens: Annotated[int, Field(ge=100, le=4096)]
    chunk_overlap_tokens: Annotated[int, Field(ge=0)]

    @model_validator(mode="after")
    def _half(self) -> StaticChunking:
        if self.chunk_overlap_tokens > self.max_chunk_size_tokens // 2:
            raise ValueError("chunk_overlap_tokens may be at most half of max_chunk_size_tokens")
        return self


class ChunkingStrategy(Body):
    type: Literal["auto", "static"]
    static: StaticChunking | None = None

    @model_validator(mode="after")
    def _static(self) -> ChunkingStrategy:
        if (self.type == "static") != (self.static is not None):
            raise ValueError("'static' is given with type 'static', and only then")
        return self

    def strategy(self) -> Strategy:
        if self.static is None:
            return Strategy()
        return Strategy(self.static.max_chunk_size_tokens, self.static.chunk_overlap_tokens)


class ExpiresAfter(Body):
    anchor: Literal["last_active_at"]
    days: Annotated[int, Field(ge=1, le=365)]


class VectorStoreCreate(Body):
    name: Annotated[str, Field(max_length=256)] | None = None
    description: Annotated[str, Field(max_length=512)] | None = None
    file_ids: Annotated[list[ID], Field(max_length=MAX_FILES)] = Field(default_factory=list)
    chunking_strategy: ChunkingStrategy | None = None
    expires_after: ExpiresAfter | None = None
    metadata: Metadata | None = None


class VectorStoreModify(Body):
    """Only what is given changes; ``expires_after: null`` takes the expiry away."""

    name: Annotated[str, Field(max_length=256)] | None = None
    expires_after: ExpiresAfter | None = None
    metadata: Metadata | None = None


class FileCreate(Body):
    file_id: ID
    attributes: Attributes | None = None
    chunking_strategy: ChunkingStrategy | None = None


class FileModify(Body):
    attributes: Attributes | None


class BatchFile(Body):
    file_id: ID
    attributes: Attributes | None = None
    chunking_strategy: ChunkingStrategy | None = None


class BatchCreate(Body):
    """``file_ids`` (with the batch's ``attributes`` and ``chunking_strategy``) or
    ``files``, each with its own."""

    file_ids: Annotated[list[ID], Field(max_length=MAX_FILES)] | None = None
    files: Annotated[list[BatchFile], Field(max_length=MAX_FILES)] | None = None
    attributes: Attributes | None = None
    chunking_strategy: ChunkingStrategy | None = None

    @model_validator(mode="after")
    def _one(self) -> BatchCreate:
        if (self.file_ids is None) == (self.files is None):
            raise ValueError("give 'file_ids' or 'files', one of them")
        return self

    def each(self) -> list[BatchFile]:
        if self.files is not None:
            return self.files
        return [
            BatchFile(
                file_id=file_id,
                attributes=self.attributes,
                chunking_strategy=self.chunking_strategy,
            )
            for file_id in self.file_ids or ()
        ]


Query = Annotated[str, Field(min_length=1, max_length=4096)]


class SearchBody(Body):
    query: Query | Annotated[list[Query], Field(min_length=1, max_length=16)]
    max_num_results: Annotated[int, Field(ge=1, le=50)] = 10
    filters: Filter | None = None
    ranking_options: RankingOptions | None = None
    rewrite_query: bool | None = None
    """Taken; the query is searched as it is written."""

    def queries(self) -> list[str]:
        return [self.query] if isinstance(self.query, str) else list(self.query)
