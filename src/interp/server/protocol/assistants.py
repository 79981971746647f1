"""The bodies of the Assistants API v2: assistants, threads, messages, runs."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from ..agent.model import CODE_TOOL
from ..agent.search import SEARCH_TOOL
from .common import ID, Body, FunctionDef, Metadata, ReasoningEffort, ResponseFormat
from .vector_stores import MAX_FILES, ChunkingStrategy


class FileSearchRanking(Body):
    ranker: Literal["auto", "default_2024_08_21"] | None = None
    score_threshold: Annotated[float, Field(ge=0, le=1)]


class FileSearchOptions(Body):
    max_num_results: Annotated[int, Field(ge=1, le=50)] | None = None
    ranking_options: FileSearchRanking | None = None


class Tool(Body):
    type: Literal["code_interpreter", "function", "file_search"]
    function: FunctionDef | None = None
    file_search: FileSearchOptions | None = None

    @field_validator("function")
    @classmethod
    def _function(cls, value: FunctionDef | None) -> FunctionDef | None:
        if value is not None and value.name in (CODE_TOOL, SEARCH_TOOL):
            raise ValueError(f"the function name '{value.name}' is reserved for a built-in tool")
        return value


class CodeInterpreterResources(Body):
    file_ids: Annotated[list[ID], Field(max_length=20)] = Field(default_factory=list)


class NewVectorStore(Body):
    """A vector store made with the assistant or thread that names it."""

    file_ids: Annotated[list[ID], Field(max_length=MAX_FILES)] = Field(default_factory=list)
    chunking_strategy: ChunkingStrategy | None = None
    metadata: Metadata | None = None


class FileSearchResources(Body):
    vector_store_ids: Annotated[list[ID], Field(max_length=1)] = Field(default_factory=list)
    vector_stores: Annotated[list[NewVectorStore], Field(max_length=1)] = Field(
        default_factory=list
    )


class ToolResources(Body):
    code_interpreter: CodeInterpreterResources | None = None
    file_search: FileSearchResources | None = None


class _AssistantFields(Body):
    name: Annotated[str, Field(max_length=256)] | None = None
    description: Annotated[str, Field(max_length=512)] | None = None
    instructions: Annotated[str, Field(max_length=256_000)] | None = None
    tool_resources: ToolResources | None = None
    metadata: Metadata | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    response_format: Literal["auto"] | ResponseFormat | None = None
    reasoning_effort: ReasoningEffort | None = None


class AssistantCreate(_AssistantFields):
    model: Annotated[str, Field(min_length=1, max_length=256)]
    tools: Annotated[list[Tool], Field(max_length=128)] = Field(default_factory=list)


class AssistantModify(_AssistantFields):
    """Only what is given changes (``exclude_unset``)."""

    model: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    tools: Annotated[list[Tool], Field(max_length=128)] | None = None


class AttachmentTool(Body):
    type: Literal["code_interpreter", "file_search"]


class Attachment(Body):
    file_id: ID
    tools: Annotated[list[AttachmentTool], Field(max_length=2)] = Field(default_factory=list)


class TextPart(Body):
    type: Literal["text"]
    text: Annotated[str, Field(max_length=256_000)]


class ImageFile(Body):
    file_id: ID
    detail: Literal["low", "high", "auto"] | None = None


class ImageFilePart(Body):
    type: Literal["image_file"]
    image_file: ImageFile


class ImageUrl(Body):
    url: Annotated[str, Field(min_length=1, max_length=20_000_000)]
    detail: Literal["low", "high", "auto"] | None = None


class ImageUrlPart(Body):
    type: Literal["image_url"]
    image_url: ImageUrl


ContentPart = Annotated[TextPart | ImageFilePart | ImageUrlPart, Field(discriminator="type")]


class MessageCreate(Body):
    role: Literal["user", "assistant"]
    content: (
        Annotated[str, Field(max_length=256_000)]
        | Annotated[list[ContentPart], Field(min_length=1, max_length=64)]
    )
    attachments: Annotated[list[Attachment], Field(max_length=20)] | None = None
    metadata: Metadata | None = None


class ThreadCreate(Body):
    messages: Annotated[list[MessageCreate], Field(max_length=32)] = Field(default_factory=list)
    tool_resources: ToolResources | None = None
    metadata: Metadata | None = None


class MetadataModify(Body):
    metadata: Metadata | None = None


class ThreadModify(Body):
    tool_resources: ToolResources | None = None
    metadata: Metadata | None = None


class FunctionName(Body):
    name: Annotated[str, Field(min_length=1, max_length=64)]


class ToolChoice(Body):
    type: Literal["function", "code_interpreter", "file_search"]
    function: FunctionName | None = None


class TruncationStrategy(Body):
    type: Literal["auto", "last_messages"]
    last_messages: Annotated[int, Field(ge=1)] | None = None


class _RunFields(Body):
    model: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    instructions: Annotated[str, Field(max_length=256_000)] | None = None
    tools: Annotated[list[Tool], Field(max_length=128)] | None = None
    tool_choice: Literal["none", "auto", "required"] | ToolChoice | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    max_prompt_tokens: Annotated[int, Field(ge=1)] | None = None
    metadata: Metadata | None = None
    parallel_tool_calls: bool | None = None
    stream: bool | None = None
    truncation_strategy: TruncationStrategy | None = None
    response_format: Literal["auto"] | ResponseFormat | None = None


class RunCreate(_RunFields):
    assistant_id: ID
    additional_instructions: Annotated[str, Field(max_length=256_000)] | None = None
    additional_messages: Annotated[list[MessageCreate], Field(max_length=32)] | None = None
    reasoning_effort: ReasoningEffort | None = None


class ThreadAndRunCreate(_RunFields):
    assistant_id: ID
    thread: ThreadCreate | None = None
    tool_resources: ToolResources | None = None


class ToolOutput(Body):
    tool_call_id: ID
    output: Annotated[str, Field(max_length=1_000_000)] = ""


class SubmitToolOutputs(Body):
    tool_outputs: Annotated[list[ToolOutput], Field(min_length=1, max_length=128)]
    stream: bool | None = None
