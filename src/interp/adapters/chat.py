"""Chat completions: interp as the backend of a function tool.

Offer ``tool_schema()`` in the request's ``tools``; when the model calls it, run
``code_from_tool_call(call)`` and answer with ``tool_message(call_id(call), result)``.
``handle`` does the three steps with an engine.

Tool calls are read from the JSON of a chat completion (dicts) or from the ``openai``
package's objects alike.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import TYPE_CHECKING, Any

from .._exceptions import InvalidInputError
from .._models import ExecutionResult, ExecutionStatus, ImageOutput, LogsOutput
from ._outputs import openai_outputs
from .responses import data_url

if TYPE_CHECKING:
    from .._engine import Engine

__all__ = [
    "DESCRIPTION",
    "call_id",
    "code_from_tool_call",
    "describe",
    "handle",
    "tool_message",
    "tool_schema",
    "tool_text",
]


def describe(packages: Sequence[str] = ()) -> str:
    """The code tool's description, naming the installed packages (the image's, and
    ``packages`` added to it) and that nothing can be installed (so that a model does not
    try ``pip install``)."""
    names = [*base_packages(), *(p for p in packages if p not in base_packages())]
    return (
        "Run Python code in a stateful Jupyter kernel: variables, imports and files persist"
        " between calls. Files the user gave are in /mnt/data; save files for the user there"
        " too. What the code prints and the value of its last expression are returned;"
        " matplotlib figures are shown as images. Installed: Python 3.11 with "
        + ", ".join(names)
        + ". There is no internet access: nothing else can be installed (no pip install)."
    )


@functools.cache
def base_packages() -> tuple[str, ...]:
    """What the sandbox image offers to code (its top-level pins, the engine's own, the
    kernel and the snapshots' pickler, left out)."""
    text = resources.files("interp.sandbox_image").joinpath("requirements.in").read_text()
    names = [line.split("==")[0].strip() for line in text.splitlines()]
    engines = ("ipykernel", "cloudpickle")
    return tuple(
        name for name in names if name and not name.startswith("#") and name not in engines
    )


DESCRIPTION = describe()


def tool_schema(name: str = "python", description: str = DESCRIPTION) -> dict[str, Any]:
    """The function tool to offer in a chat completion request's ``tools``."""
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {
                "type": "object",
                "properties": {"code": {"type": "string", "description": "The Python code."}},
                "required": ["code"],
                "additionalProperties": False,
            },
            "strict": True,
        },
    }


def call_id(tool_call: Mapping[str, Any] | Any) -> str:
    """The id of a tool call, to answer it with."""
    found = _field(tool_call, "id")
    if not isinstance(found, str) or not found:
        raise InvalidInputError("the tool call has no id")
    return found


def code_from_tool_call(tool_call: Mapping[str, Any] | Any) -> str:
    """The code a model's tool call asks to run.

    Its arguments are JSON ``{"code": "..."}`` as the schema asks, a JSON string, or,
    as some models send, the code itself.
    """
    arguments = _field(_field(tool_call, "function"), "arguments")
    if not isinstance(arguments, str):
        raise InvalidInputError("the tool call has no function arguments")
    try:
        parsed = json.loads(arguments)
    except ValueError:
        return arguments
    if isinstance(parsed, str):
        return parsed
    if isinstance(parsed, dict):
        code = parsed.get("code")
        if not isinstance(code, str):
            raise InvalidInputError(
                f"the tool call's arguments have no 'code' string (keys: {sorted(parsed)})"
            )
        return code
    return arguments


def tool_text(result: ExecutionResult) -> str:
    """What the model reads of an execution: its logs, then what else it should know."""
    parts = []
    for output in openai_outputs(result):
        if isinstance(output, LogsOutput):
            parts.append(output.logs)
        else:
            parts.append(f"[image {output.image.file_id}]\n")
    for saved in result.files:
        parts.append(f"[file written: {saved.path} ({saved.file.bytes} bytes)]\n")
    if result.status not in (ExecutionStatus.COMPLETED, ExecutionStatus.FAILED):
        parts.append(f"[{result.message or result.status}]\n")
    text = "".join(parts)
    return text if text else "[no output]"


def tool_message(
    tool_call_id: str, result: ExecutionResult, *, images: Mapping[str, bytes] | None = None
) -> dict[str, Any]:
    """The ``tool`` message answering a call.

    With ``images`` (file id -> bytes, from ``Engine.download``), the content is a list of
    parts: the text, then each image as an ``image_url`` part with a ``data:`` URL. Some
    APIs, OpenAI's own chat completions among them, accept only text in tool messages;
    for those, send the image parts in a user message after it.
    """
    text = tool_text(result)
    if images is None:
        return {"role": "tool", "tool_call_id": tool_call_id, "content": text}
    content: list[dict[str, Any]] = [{"type": "text", "text": text}]
    for output in result.outputs:
        if isinstance(output, ImageOutput) and output.image.file_id in images:
            url = data_url(images[output.image.file_id], output.image.mime)
            content.append({"type": "image_url", "image_url": {"url": url}})
    return {"role": "tool", "tool_call_id": tool_call_id, "content": content}


async def handle(
    engine: Engine,
    tool_call: Mapping[str, Any] | Any,
    *,
    session: str,
    timeout: float | None = None,
    images: bool = False,
) -> dict[str, Any]:
    """Run a model's tool call in ``session`` and return the tool message answering it.

    The one function here that does I/O, through the engine it is given. A malformed
    call raises ``InvalidInputError``; an error in the code is in the message.
    """
    answer_to = call_id(tool_call)
    result = await engine.execute(code_from_tool_call(tool_call), session=session, timeout=timeout)
    fetched = None
    if images:
        fetched = {image: await engine.download(image) for image in result.image_ids}
    return tool_message(answer_to, result, images=fetched)


def _field(value: Any, name: str) -> Any:
    """A key of a dict or an attribute of an SDK object; ``None`` if absent."""
    return value.get(name) if isinstance(value, Mapping) else getattr(value, name, None)
