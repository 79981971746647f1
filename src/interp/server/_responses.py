"""The Responses API's loop: input items -> the model -> code in a container -> output items.

A response is a task of its own, like an Assistants run: its events go to stream
subscribers as they happen (each with a rising ``sequence_number``) and every change is
stored (when ``store`` is not false). Events follow the work: a code call's item is added
when the model starts writing it, its code streams as the model writes it, it turns
``interpreting`` when the kernel starts running it and ``completed`` when it has finished;
``response.output_item.done`` carries the whole item, with its outputs when the request
``include``s them. The container of an ``auto`` tool is made at the first code call (never
for a response that runs none) and reused along ``previous_response_id``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

from .. import (
    Engine,
    ExecutionFinished,
    ExecutionStarted,
    FileSaved,
    ImageFile,
    ImageSaved,
    InterpError,
)
from ..adapters import assistants
from ..adapters.chat import DESCRIPTION, tool_schema, tool_text
from ..adapters.responses import call_item
from . import _wire as wire
from . import _wire_responses as rwire
from ._containers import Containers, cfile_id
from ._errors import APIError, bad_request, file_not_found
from ._model import (
    CODE_TOOL,
    CallStarted,
    CodeDelta,
    Finished,
    Model,
    TextDelta,
    ToolCall,
    UpstreamError,
    chat_tool_call,
    code_arguments,
    final_code,
)
from ._runs import MAX_MODEL_TURNS, RunEvents, bounded
from ._store import Store

log = logging.getLogger("interp.server")

MAX_CHAIN = 256
"""How far back ``previous_response_id`` is followed."""
KEPT_EVENTS_S = 600.0
"""How long a background response's events are kept for a stream to (re)join, once it
has ended. They are kept in memory: a restart of the server drops them."""


def served(response: dict[str, Any], include: list[str] | None) -> dict[str, Any]:
    """The response as a client sees it: code outputs only when ``include``d."""
    if include and rwire.INCLUDE_OUTPUTS in include:
        return response
    return {**response, "output": [_without_outputs(item) for item in response["output"]]}


def _without_outputs(item: dict[str, Any]) -> dict[str, Any]:
    return {**item, "outputs": None} if item["type"] == "code_interpreter_call" else item


@dataclass
class _State:
    owner: str
    response: dict[str, Any]
    body: rwire.ResponseCreate
    base_url: str
    events: RunEvents
    chat: list[dict[str, Any]]
    store: bool
    container: dict[str, Any] | None = None
    auto: rwire.AutoContainer | None = None
    files: list[FileSaved] = field(default_factory=list)
    sequence: int = 0
    results: dict[str, str] = field(default_factory=dict)
    """Code call item id -> what the model was shown of its execution."""

    def emit(self, type_: str, **fields: Any) -> None:
        event = {"type": type_, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        self.events.emit(type_, event)

    def emit_response(self, type_: str) -> None:
        self.emit(type_, response=served(self.response, self.body.include))


class Responder:
    def __init__(
        self,
        *,
        store: Store,
        engine: Engine,
        model: Model,
        containers: Containers,
        default_model: str | None,
    ) -> None:
        self._store = store
        self._engine = engine
        self._model = model
        self._containers = containers
        self._default_model = default_model
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._events: dict[str, RunEvents] = {}
        self._cancelling: set[str] = set()

    def events(self, response_id: str) -> RunEvents | None:
        """The response's events: while it runs, and for ``KEPT_EVENTS_S`` after a
        background one ends."""
        return self._events.get(response_id)

    def forget(self, response_id: str) -> None:
        """Drop the events kept of a (deleted) response."""
        self._events.pop(response_id, None)

    async def start(
        self, owner: str, body: rwire.ResponseCreate, *, base_url: str
    ) -> tuple[dict[str, Any], RunEvents, asyncio.Task[None]]:
        """Check the request, store the response and its input, and start it."""
        store = body.store is not False
        if body.background and not store:
            raise bad_request("background responses need store to be true", param="background")
        chain = await self._chain(owner, body.previous_response_id)
        tools = await self._tools(owner, body)
        response = rwire.response(body, model=body.model or self._default_model, tools=tools)
        items = [_stored_item(item) for item in body.items()]
        chat = [{"role": "system", "content": body.instructions}] if body.instructions else []
        for earlier in chain:
            chat += await self._chat_of(owner, earlier)
        chat += _chat_items(items, {})
        code_tool = body.code_tool()
        state = _State(
            owner=owner,
            response=response,
            body=body,
            base_url=base_url,
            events=RunEvents(replay=bool(body.background)),
            chat=chat,
            store=store,
        )
        if code_tool is not None:
            if isinstance(code_tool.container, str):
                state.container = await self._containers.live(owner, code_tool.container)
            else:
                state.auto = code_tool.container
                reused = _chain_container(chain)
                if reused is not None:
                    # Gone (deleted or expired) since: the next code call makes a new one.
                    with contextlib.suppress(APIError):
                        found = await self._containers.get(owner, reused)
                        state.container = found if found["status"] == "running" else None
        if store:
            await self._store.create("response", owner, response)
            for item in items:
                await self._store.create("input_item", owner, item, parent=response["id"])
        self._events[response["id"]] = state.events
        task = asyncio.create_task(self._drive(state), name=f"interp-{response['id']}")
        self._tasks[response["id"]] = task
        task.add_done_callback(lambda _: self._tasks.pop(response["id"], None))
        return response, state.events, task

    async def cancel(self, owner: str, response: dict[str, Any]) -> dict[str, Any]:
        task = self._tasks.get(response["id"])
        if task is None or task.done():
            if response["status"] in ("queued", "in_progress"):
                raise bad_request("This response is no longer running and cannot be cancelled.")
            return response
        self._cancelling.add(response["id"])
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        # Still there if the response ended on its own before the cancel reached it.
        self._cancelling.discard(response["id"])
        return await self._store.get("response", owner, response["id"]) or response

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # Before the loop.

    async def _chain(self, owner: str, previous: str | None) -> list[dict[str, Any]]:
        """The stored responses a request continues, oldest first."""
        chain: list[dict[str, Any]] = []
        while previous is not None and len(chain) < MAX_CHAIN:
            found = await self._store.get("response", owner, previous)
            if found is None:
                raise APIError(
                    404,
                    f"Previous response with id '{previous[:64]}' not found.",
                    param="previous_response_id",
                    code="previous_response_not_found",
                )
            chain.append(found)
            previous = found.get("previous_response_id")
        chain.reverse()
        return chain

    async def _tools(self, owner: str, body: rwire.ResponseCreate) -> list[dict[str, Any]]:
        tools: list[dict[str, Any]] = []
        names: set[str] = set()
        for tool in body.tools:
            if isinstance(tool, rwire.CodeInterpreterTool):
                if isinstance(tool.container, rwire.AutoContainer):
                    for file_id in tool.container.file_ids:
                        if await self._store.get("file", owner, file_id) is None:
                            raise file_not_found(file_id, param="tools")
                tools.append(tool.model_dump(exclude_none=True))
            else:
                if tool.name in names:
                    raise bad_request(f"Duplicate function name '{tool.name}'.", param="tools")
                names.add(tool.name)
                tools.append(tool.model_dump(exclude_none=True))
        if sum(isinstance(t, rwire.CodeInterpreterTool) for t in body.tools) > 1:
            raise bad_request("Only one code_interpreter tool is allowed.", param="tools")
        choice = body.tool_choice
        if isinstance(choice, rwire.NamedTool) and (
            (choice.type == "function" and choice.name not in names)
            or (choice.type == "code_interpreter" and body.code_tool() is None)
        ):
            raise bad_request(
                f"tool_choice names a {choice.type} tool that is not in tools.",
                param="tool_choice",
            )
        return tools

    async def _chat_of(self, owner: str, response: dict[str, Any]) -> list[dict[str, Any]]:
        """An earlier response as chat messages: its input, then its output."""
        items = await self._store.all("input_item", owner, parent=response["id"])
        results = {
            r["call_id"]: r["text"]
            for r in await self._store.all("tool_result", owner, parent=response["id"])
        }
        return _chat_items(items, results) + _chat_items(response["output"], results)

    # The loop.

    async def _drive(self, state: _State) -> None:
        response = state.response
        cancelled = False
        try:
            state.emit_response("response.created")
            state.emit_response("response.in_progress")
            for _ in range(MAX_MODEL_TURNS):
                if not await self._turn(state):
                    break
            else:
                response.update(
                    status="incomplete", incomplete_details={"reason": "max_output_tokens"}
                )
            if response["status"] == "in_progress":
                response.update(status="completed", completed_at=wire.now())
            await self._save(state)
            state.emit_response(f"response.{response['status']}")
        except UpstreamError as exc:
            await self._fail(state, exc.code, exc.message)
        except asyncio.CancelledError:
            cancelled = True
        except APIError as exc:
            await self._fail(state, "server_error", exc.message)
        except InterpError as exc:
            await self._fail(state, "server_error", f"the sandbox failed: {exc}")
        except Exception as exc:
            log.exception("response %s failed", response["id"])
            await self._fail(state, "server_error", f"the server failed: {type(exc).__name__}")
        finally:
            if cancelled:
                await asyncio.shield(self._end_cancelled(state))
            state.events.close()
            if state.body.background:
                loop = asyncio.get_running_loop()
                loop.call_later(KEPT_EVENTS_S, self.forget, response["id"])
            else:
                self.forget(response["id"])

    async def _end_cancelled(self, state: _State) -> None:
        _stop_items(state.response)
        if state.response["id"] in self._cancelling:
            self._cancelling.discard(state.response["id"])
            state.response["status"] = "cancelled"
            await self._save(state)
            # The API has no cancelled event: the stream ends with the response, cancelled.
            state.emit_response("response.incomplete")
        else:
            await self._fail(state, "server_error", "the server stopped")

    async def _fail(self, state: _State, code: str, message: str) -> None:
        _stop_items(state.response)
        state.response.update(status="failed", error={"code": code, "message": message})
        await self._save(state)
        state.emit_response("response.failed")

    async def _save(self, state: _State) -> None:
        if state.store:
            await self._store.put("response", state.owner, state.response)

    async def _turn(self, state: _State) -> bool:
        """One model request and what it asks for; ``True`` if the loop goes on."""
        output = state.response["output"]
        message: dict[str, Any] | None = None
        text = ""
        items: dict[int, dict[str, Any]] = {}
        """Tool call index -> its output item."""
        finished = Finished()
        async for piece in self._model.stream(self._request(state)):
            if isinstance(piece, TextDelta):
                if message is None:
                    message = rwire.message_item()
                    output.append(message)
                    index = len(output) - 1
                    state.emit("response.output_item.added", output_index=index, item=message)
                    state.emit(
                        "response.content_part.added",
                        output_index=index,
                        item_id=message["id"],
                        content_index=0,
                        part=rwire.output_text(""),
                    )
                text += piece.text
                state.emit(
                    "response.output_text.delta",
                    output_index=output.index(message),
                    item_id=message["id"],
                    content_index=0,
                    delta=piece.text,
                    logprobs=[],
                )
            elif isinstance(piece, CallStarted):
                if message is not None:
                    self._close_message(state, message, text)
                    message, text = None, ""
                items[piece.call.index] = await self._open_call(state, piece.call)
            elif isinstance(piece, CodeDelta) and piece.call.index in items:
                item = items[piece.call.index]
                state.emit(
                    "response.code_interpreter_call_code.delta",
                    output_index=output.index(item),
                    item_id=item["id"],
                    delta=piece.text,
                )
            elif isinstance(piece, Finished):
                finished = piece
        _add_usage(state.response, finished.usage)
        if message is not None:
            self._close_message(state, message, text)
        if not finished.calls:
            return False
        for call in finished.calls:
            if call.name == CODE_TOOL:
                items[call.index]["code"] = final_code(call)
            else:
                items[call.index]["arguments"] = call.arguments
        state.chat.append(
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [_chat_call(items[call.index]) for call in finished.calls],
            }
        )
        functions = False
        for call in finished.calls:
            item = items[call.index]
            if call.name == CODE_TOOL:
                await self._execute(state, item)
                state.chat.append(
                    {
                        "role": "tool",
                        "tool_call_id": item["id"],
                        "content": state.results[item["id"]],
                    }
                )
            else:
                functions = True
                item["status"] = "completed"
                index = output.index(item)
                state.emit(
                    "response.function_call_arguments.delta",
                    output_index=index,
                    item_id=item["id"],
                    delta=call.arguments,
                )
                state.emit(
                    "response.function_call_arguments.done",
                    output_index=index,
                    item_id=item["id"],
                    arguments=call.arguments,
                )
                state.emit("response.output_item.done", output_index=index, item=dict(item))
        await self._save(state)
        # Function calls are answered by the caller, in a request of its own.
        return not functions

    async def _open_call(self, state: _State, call: ToolCall) -> dict[str, Any]:
        output = state.response["output"]
        item: dict[str, Any]
        if call.name == CODE_TOOL:
            container = await self._container(state)
            item = {
                "id": wire.new_id("ci_"),
                "type": "code_interpreter_call",
                "status": "in_progress",
                "code": "",
                "container_id": container["id"],
                "outputs": None,
            }
        else:
            item = {
                "id": wire.new_id("fc_"),
                "type": "function_call",
                "status": "in_progress",
                "call_id": call.id,
                "name": call.name,
                "arguments": "",
            }
        output.append(item)
        index = len(output) - 1
        state.emit("response.output_item.added", output_index=index, item=dict(item))
        if call.name == CODE_TOOL:
            state.emit(
                "response.code_interpreter_call.in_progress", output_index=index, item_id=item["id"]
            )
        return item

    async def _container(self, state: _State) -> dict[str, Any]:
        """The response's container; an ``auto`` one is made at its first code call."""
        if state.container is None:
            auto = state.auto or rwire.AutoContainer(type="auto")
            state.container = await self._containers.create(
                state.owner,
                name=f"auto container of {state.response['id']}",
                file_ids=list(auto.file_ids),
                memory_limit=auto.memory_limit,
                param="tools",
            )
        return state.container

    async def _execute(self, state: _State, item: dict[str, Any]) -> None:
        """Run a code call in the container; the item's status follows the kernel."""
        output = state.response["output"]
        index = output.index(item)
        code = item["code"]
        state.emit(
            "response.code_interpreter_call_code.done",
            output_index=index,
            item_id=item["id"],
            code=code,
        )
        container = state.container
        assert container is not None
        await self._containers.live(state.owner, container["id"])
        session = await self._containers.session(state.owner, container["id"])
        result = None
        async with contextlib.aclosing(self._engine.stream(code, session=session)) as stream:
            async for event in stream:
                if isinstance(event, ExecutionStarted):
                    item["status"] = "interpreting"
                    state.emit(
                        "response.code_interpreter_call.interpreting",
                        output_index=index,
                        item_id=item["id"],
                    )
                    await self._save(state)  # a client polling a background response sees it
                elif isinstance(event, ImageSaved):
                    await self._containers.add_output(state.owner, session, event.file.id)
                elif isinstance(event, FileSaved):
                    await self._containers.add_output(state.owner, session, event.file.id)
                    state.files.append(event)
                elif isinstance(event, ExecutionFinished):
                    result = event.result
        if result is None:
            raise UpstreamError("server_error", "the execution ended without a result")
        await self._containers.touch(state.owner, session)

        def url(image: ImageFile) -> str:
            return (
                f"{state.base_url}v1/containers/{session}/files/{cfile_id(image.file_id)}/content"
            )

        done = call_item(result, image_url=url)
        item.update(status=done["status"], outputs=done["outputs"])
        text = bounded(tool_text(result))
        state.results[item["id"]] = text
        if state.store:
            await self._store.create(
                "tool_result",
                state.owner,
                {"id": wire.new_id("tr_"), "call_id": item["id"], "text": text},
                parent=state.response["id"],
            )
        state.emit(
            "response.code_interpreter_call.completed", output_index=index, item_id=item["id"]
        )
        shown = served({"output": [item]}, state.body.include)["output"][0]
        state.emit("response.output_item.done", output_index=index, item=shown)

    def _close_message(self, state: _State, message: dict[str, Any], text: str) -> None:
        index = state.response["output"].index(message)
        container_id = state.container["id"] if state.container else ""
        annotations = [
            {
                "type": "container_file_citation",
                "container_id": container_id,
                "file_id": cfile_id(a["file_path"]["file_id"]),
                "filename": a["text"].rsplit("/", 1)[-1],
                "start_index": a["start_index"],
                "end_index": a["end_index"],
            }
            for a in assistants.file_annotations(text, state.files)
        ]
        for number, annotation in enumerate(annotations):
            state.emit(
                "response.output_text.annotation.added",
                output_index=index,
                item_id=message["id"],
                content_index=0,
                annotation_index=number,
                annotation=annotation,
            )
        part = rwire.output_text(text, annotations)
        state.emit(
            "response.output_text.done",
            output_index=index,
            item_id=message["id"],
            content_index=0,
            text=text,
            logprobs=[],
        )
        state.emit(
            "response.content_part.done",
            output_index=index,
            item_id=message["id"],
            content_index=0,
            part=part,
        )
        message.update(status="completed", content=[part])
        state.emit("response.output_item.done", output_index=index, item=dict(message))
        state.chat.append({"role": "assistant", "content": text})

    def _request(self, state: _State) -> dict[str, Any]:
        body = state.body
        tools: list[dict[str, Any]] = []
        for tool in body.tools:
            if isinstance(tool, rwire.CodeInterpreterTool):
                tools.append(tool_schema(CODE_TOOL, DESCRIPTION))
            else:
                function = tool.model_dump(exclude_none=True, exclude={"type"})
                tools.append({"type": "function", "function": function})
        request: dict[str, Any] = {
            "model": state.response["model"] or self._default_model,
            "messages": state.chat,
        }
        if tools:
            request["tools"] = tools
            choice = body.tool_choice
            if isinstance(choice, str):
                request["tool_choice"] = choice
            elif choice is not None and choice.type == "code_interpreter":
                request["tool_choice"] = {"type": "function", "function": {"name": CODE_TOOL}}
            elif choice is not None:
                request["tool_choice"] = {"type": "function", "function": {"name": choice.name}}
            request["parallel_tool_calls"] = state.response["parallel_tool_calls"]
        for name in ("temperature", "top_p"):
            if getattr(body, name) is not None:
                request[name] = getattr(body, name)
        if body.max_output_tokens:
            request["max_completion_tokens"] = body.max_output_tokens
        return request


def _stored_item(item: Any) -> dict[str, Any]:
    """An input item as stored and listed by ``input_items``: an id, a status, parts."""
    data: dict[str, Any] = item.model_dump(exclude_none=True)
    if isinstance(item, rwire.MessageItem):
        content = item.content
        data["content"] = (
            [{"type": "input_text", "text": content}]
            if isinstance(content, str)
            else data["content"]
        )
        data.setdefault("id", wire.new_id("msg_"))
        data.setdefault("status", "completed")
    elif isinstance(item, rwire.ItemReference):
        raise bad_request("item_reference input items are not supported; send the items.")
    else:
        data.setdefault("id", wire.new_id("item_"))
        data.setdefault("status", "completed")
    return data


def _chat_items(items: list[dict[str, Any]], results: dict[str, str]) -> list[dict[str, Any]]:
    """Stored input or output items as chat messages; calls of a turn in one message."""
    chat: list[dict[str, Any]] = []
    for item in items:
        kind = item.get("type", "message")
        if kind == "message":
            role = {"developer": "system"}.get(item["role"], item["role"])
            chat.append({"role": role, "content": _text_of(item["content"])})
            continue
        if kind == "function_call_output":
            chat.append(
                {"role": "tool", "tool_call_id": item["call_id"], "content": item["output"]}
            )
            continue
        call = _chat_call(item)
        previous = chat[-1] if chat else None
        if previous and previous["role"] == "assistant" and previous.get("tool_calls"):
            previous["tool_calls"].append(call)
        else:
            chat.append({"role": "assistant", "content": None, "tool_calls": [call]})
        if kind == "code_interpreter_call":
            shown = results.get(item["id"]) or _logs_of(item)
            chat.append({"role": "tool", "tool_call_id": item["id"], "content": shown})
    return chat


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    parts = []
    for part in content:
        if part.get("type") in ("input_text", "output_text"):
            parts.append(part.get("text", ""))
        elif part.get("type") == "input_file":
            parts.append(f"[file {part.get('filename') or part.get('file_id')}]")
        else:
            parts.append("[image]")
    return "\n".join(parts)


def _logs_of(item: dict[str, Any]) -> str:
    outputs = item.get("outputs") or []
    return "\n".join(o.get("logs", "[image]") for o in outputs) or "(no output)"


def _chat_call(item: dict[str, Any]) -> dict[str, Any]:
    """A code or function call item as the chat request's tool call."""
    if item["type"] == "code_interpreter_call":
        return chat_tool_call(item["id"], CODE_TOOL, code_arguments(item["code"]))
    return chat_tool_call(item["call_id"], item["name"], item["arguments"])


def _stop_items(response: dict[str, Any]) -> None:
    """Items a stopped response leaves unfinished say so."""
    for item in response["output"]:
        if item.get("status") in ("in_progress", "interpreting"):
            item["status"] = "incomplete"


def _chain_container(chain: list[dict[str, Any]]) -> str | None:
    """The container the latest code call of the chain ran in."""
    for response in reversed(chain):
        for item in reversed(response["output"]):
            if item["type"] == "code_interpreter_call":
                return str(item["container_id"])
    return None


def _add_usage(response: dict[str, Any], usage: dict[str, int] | None) -> None:
    if usage is None:
        return
    total = response.get("usage") or rwire.usage()
    response["usage"] = rwire.usage(
        total["input_tokens"] + usage.get("prompt_tokens", 0),
        total["output_tokens"] + usage.get("completion_tokens", 0),
    )


__all__ = ["Responder", "served"]
