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
import hashlib
import logging
from collections.abc import AsyncIterator
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
from ..adapters.chat import tool_text
from ..adapters.responses import call_item
from . import _wire as wire
from . import _wire_responses as rwire
from ._containers import Containers, cfile_id
from ._errors import APIError, bad_request, file_not_found, not_found
from ._runs import RunEvents
from ._store import Store
from .agent.context import Unit, bounded
from .agent.model import (
    CODE_TOOL,
    CallStarted,
    CodeDelta,
    Finished,
    TextDelta,
    ToolCall,
    UpstreamError,
    chat_tool_call,
    code_arguments,
    final_code,
)
from .agent.turn import Agent, Budget, History, PromptTooLong, Settings

log = logging.getLogger("interp.server")

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
    store: bool
    settings: Settings
    budget: Budget
    history: list[str]
    """The transcripts it continues: its chain's responses, or its conversation."""
    items: list[dict[str, Any]]
    """Its input items, as stored."""
    inputs: list[Unit]
    units: list[Unit] = field(default_factory=list)
    """What it has added to the conversation so far."""
    container: dict[str, Any] | None = None
    auto: rwire.AutoContainer | None = None
    files: list[FileSaved] = field(default_factory=list)
    sequence: int = 0
    started: bool = False
    """Something was sent to the client besides the response's creation."""

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
        agent: Agent,
        containers: Containers,
        default_model: str | None,
    ) -> None:
        self._store = store
        self._engine = engine
        self._agent = agent
        self._containers = containers
        self._default_model = default_model
        self._tasks: dict[str, asyncio.Task[APIError | None]] = {}
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
    ) -> tuple[dict[str, Any], RunEvents, asyncio.Task[APIError | None]]:
        """Check the request, store the response and its input, and start it. The task
        ends with the error to answer instead when the model refused the request before
        anything of it was streamed."""
        store = body.store is not False
        if body.background and not store:
            raise bad_request("background responses need store to be true", param="background")
        if body.conversation is not None and body.previous_response_id is not None:
            raise bad_request(
                "Mutually exclusive parameters: 'previous_response_id' and 'conversation'.",
                param="conversation",
            )
        history: list[str] = []
        reused: str | None = None
        if body.previous_response_id is not None:
            chain = await self._store.chain(owner, body.previous_response_id)
            if not chain:
                raise APIError(
                    404,
                    f"Previous response with id '{body.previous_response_id[:64]}' not found.",
                    param="previous_response_id",
                    code="previous_response_not_found",
                )
            history = [found for found, _ in chain]
            reused = chain[0][1]
        elif body.conversation is not None:
            conversation = body.conversation_id()
            if await self._store.get("conversation", owner, conversation) is None:
                raise not_found("conversation", conversation)
            history = [conversation]
        tools = await self._tools(owner, body)
        model = body.model or self._default_model or ""
        response = rwire.response(body, model=model, tools=tools)
        items = [stored_item(item) for item in body.items()]
        state = _State(
            owner=owner,
            response=response,
            body=body,
            base_url=base_url,
            events=RunEvents(replay=bool(body.background)),
            store=store,
            settings=_settings(body, model),
            budget=Budget(
                max_tool_calls=body.max_tool_calls, max_completion_tokens=body.max_output_tokens
            ),
            history=history,
            items=items,
            inputs=units_of(items, {}),
        )
        if not state.settings.truncate:
            # OpenAI refuses an input over the window at once when truncation is disabled.
            try:
                await self._agent.request(
                    state.settings, state.budget, state.inputs, self._history(state), _as_is
                )
            except PromptTooLong as exc:
                raise APIError(
                    400,
                    f"The input is over the model's context window: {exc.message}. Set"
                    " truncation to 'auto' to leave earlier turns out.",
                    param="input",
                    code="context_length_exceeded",
                ) from None
        code_tool = body.code_tool()
        if code_tool is not None:
            if isinstance(code_tool.container, str):
                state.container = await self._containers.live(owner, code_tool.container)
            else:
                state.auto = code_tool.container
                if reused is not None:
                    # Gone (deleted or expired) since: the next code call makes a new one.
                    with contextlib.suppress(APIError):
                        found = await self._containers.get(owner, reused)
                        state.container = found if found["status"] == "running" else None
        if store:
            async with self._store.transaction(wait=False) as tx:
                tx.create("response", owner, dict(response))
                for item in items:
                    # Keyed by the response: a client carrying its history sends ids it got
                    # before, and one item may stand in many responses' input.
                    key = item_key(response["id"], item["id"])
                    tx.create("input_item", owner, item, parent=response["id"], key=key)
                tx.link(owner, response["id"], body.previous_response_id, reused)
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

    def _history(self, state: _State) -> History:
        keys, owner = state.history, state.owner

        async def nothing() -> AsyncIterator[Unit]:
            return
            yield

        return (lambda: self._store.tail(owner, keys)) if keys else nothing

    # The loop.

    async def _drive(self, state: _State) -> APIError | None:
        response = state.response
        cancelled = False
        try:
            state.emit_response("response.created")
            state.emit_response("response.in_progress")
            while await self._turn(state):
                pass
            await self._end(state, response["status"])
        except UpstreamError as exc:
            if (
                exc.status is not None
                and 400 <= exc.status < 500
                and exc.status != 429
                and not state.started
                and not state.body.stream
                and not state.body.background
            ):
                # Refused before anything was made: answered as the refusal, nothing kept.
                await self._forget(state)
                return APIError(400, exc.message, code=exc.code)
            await self._fail(state, exc.code, exc.message)
        except PromptTooLong as exc:
            await self._fail(
                state, "invalid_prompt", f"the input does not fit the model: {exc.message}"
            )
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
        return None

    async def _forget(self, state: _State) -> None:
        if state.store:
            owner, response_id = state.owner, state.response["id"]
            async with self._store.transaction() as tx:
                tx.delete_children(owner, [response_id])
                tx.forget(owner, [response_id])
                tx.delete("response", owner, response_id)

    async def _end_cancelled(self, state: _State) -> None:
        if state.response["id"] in self._cancelling:
            self._cancelling.discard(state.response["id"])
            # The API has no cancelled event: the stream ends with the response, cancelled.
            await self._end(state, "cancelled", event="response.incomplete")
        else:
            await self._fail(state, "server_error", "the server stopped")

    async def _fail(self, state: _State, code: str, message: str) -> None:
        state.response["error"] = {"code": code, "message": message}
        await self._end(state, "failed")

    async def _end(
        self, state: _State, status: str, reason: str | None = None, *, event: str | None = None
    ) -> None:
        """End the response; what a response that completes (or stops short of its
        limits) added is kept for the responses that continue it."""
        response = state.response
        if status == "in_progress":
            status = "completed"
        response["status"] = status
        if status in ("failed", "cancelled"):
            _stop_items(response)
        if status == "completed":
            response["completed_at"] = wire.now()
        if reason is not None:
            response["incomplete_details"] = {"reason": reason}
        if state.budget.turns:
            usage = state.budget.usage
            response["usage"] = rwire.usage(usage["prompt_tokens"], usage["completion_tokens"])
        if state.body.conversation is not None and status in ("completed", "incomplete"):
            await self._add_to_conversation(state)
        if state.store:
            async with self._store.transaction() as tx:
                if status in ("completed", "incomplete"):
                    container = state.container["id"] if state.container else None
                    added = [*state.inputs, *state.units]
                    tx.append(state.owner, response["id"], added)
                    tx.relink(state.owner, response["id"], container)
                tx.put("response", state.owner, response)
        state.emit_response(event or f"response.{status}")

    async def _add_to_conversation(self, state: _State) -> None:
        conversation = state.body.conversation_id()
        if await self._store.get("conversation", state.owner, conversation) is not None:
            items = [*state.items, *(dict(item) for item in state.response["output"])]
            await self.add_items(state.owner, conversation, items)

    async def add_items(
        self, owner: str, conversation_id: str, items: list[dict[str, Any]]
    ) -> None:
        """Store items in a conversation and add them to its transcript."""
        async with self._store.transaction() as tx:
            for item in items:
                key = item_key(conversation_id, item["id"])
                tx.create("conversation_item", owner, item, parent=conversation_id, key=key)
            tx.append(owner, conversation_id, units_of(items, {}))

    async def _save(self, state: _State) -> None:
        """Queue a write of the response (the writer keeps the order of writes)."""
        if state.store:
            async with self._store.transaction(wait=False) as tx:
                tx.put("response", state.owner, state.response)

    async def _turn(self, state: _State) -> bool:
        """One model request and what it asks for; ``True`` if the loop goes on."""
        output = state.response["output"]
        message: dict[str, Any] | None = None
        text = ""
        items: dict[int, dict[str, Any]] = {}
        """Tool call index -> its output item."""
        finished = Finished()
        turn = self._agent.turn(
            state.settings,
            state.budget,
            pinned=[*state.inputs, *state.units],
            history=self._history(state),
        )
        async for piece in turn:
            state.started = True
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
        reason = state.budget.ended(finished)
        if message is not None:
            self._close_message(state, message, text, cut=reason is not None)
        if reason is not None:
            state.response.update(
                status="incomplete",
                incomplete_details={
                    "reason": "content_filter"
                    if reason == "content_filter"
                    else "max_output_tokens"
                },
            )
            return False
        if not finished.calls:
            return False
        for call in finished.calls:
            if call.name == CODE_TOOL:
                items[call.index]["code"] = final_code(call)
            else:
                items[call.index]["arguments"] = call.arguments
        codes = [call for call in finished.calls if call.name == CODE_TOOL]
        allowed = state.budget.calls_allowed(len(codes))
        results: dict[str, str] = {}
        functions = False
        for call in finished.calls:
            item = items[call.index]
            if call.name == CODE_TOOL:
                if codes.index(call) < allowed:
                    results[item["id"]] = await self._execute(state, item)
                else:
                    limit = state.body.max_tool_calls
                    results[item["id"]] = (
                        f"Not run: this response reached max_tool_calls ({limit})."
                    )
                    self._skip(state, item)
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
        state.units += units_of([items[call.index] for call in finished.calls], results)
        if state.budget.spent and not functions:
            state.response.update(
                status="incomplete", incomplete_details={"reason": "max_output_tokens"}
            )
            return False
        await self._save(state)
        # Function calls are answered by the caller, in a request of its own.
        return not functions

    def _skip(self, state: _State, item: dict[str, Any]) -> None:
        """A code call past ``max_tool_calls``: not run, said so."""
        index = state.response["output"].index(item)
        item.update(status="incomplete", outputs=[])
        state.emit("response.output_item.done", output_index=index, item=dict(item))

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

    async def _execute(self, state: _State, item: dict[str, Any]) -> str:
        """Run a code call in the container; the item's status follows the kernel. What
        the model is shown of it."""
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
        state.emit(
            "response.code_interpreter_call.completed", output_index=index, item_id=item["id"]
        )
        shown = served({"output": [item]}, state.body.include)["output"][0]
        state.emit("response.output_item.done", output_index=index, item=shown)
        return bounded(tool_text(result))

    def _close_message(
        self, state: _State, message: dict[str, Any], text: str, *, cut: bool = False
    ) -> None:
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
        message.update(status="incomplete" if cut else "completed", content=[part])
        state.emit("response.output_item.done", output_index=index, item=dict(message))
        state.units.append(Unit([{"role": "assistant", "content": text}], message=True))


def _as_is(unit: Unit) -> list[dict[str, Any]]:
    return unit.messages


def _settings(body: rwire.ResponseCreate, model: str) -> Settings:
    choice = body.tool_choice
    text_format = (body.text or {}).get("format") or {}
    response_format: Any = None
    if text_format.get("type") == "json_object":
        response_format = {"type": "json_object"}
    elif text_format.get("type") == "json_schema":
        schema = {k: v for k, v in text_format.items() if k != "type"}
        response_format = {"type": "json_schema", "json_schema": schema}
    functions = [
        tool.model_dump(exclude_none=True, exclude={"type"})
        for tool in body.tools
        if isinstance(tool, rwire.FunctionTool)
    ]
    extra: dict[str, Any] = {}
    if body.user is not None:
        extra["user"] = body.user
    if body.top_logprobs:
        extra.update(logprobs=True, top_logprobs=body.top_logprobs)
    return Settings(
        model=model,
        instructions=body.instructions,
        code=body.code_tool() is not None,
        functions=functions,
        tool_choice=choice.model_dump(exclude_none=True)
        if isinstance(choice, rwire.NamedTool)
        else choice,
        parallel_tool_calls=body.parallel_tool_calls,
        temperature=body.temperature,
        top_p=body.top_p,
        response_format=response_format,
        reasoning_effort=(body.reasoning or {}).get("effort"),
        extra=extra,
        truncate=body.truncation == "auto",
    )


def item_key(holder_id: str, item_id: str) -> str:
    """The store id of an item of a response's input or of a conversation: an item's own
    id is the client's to choose, and the same item may be in many of them."""
    digest = hashlib.sha256(f"{holder_id}\0{item_id}".encode()).hexdigest()[:32]
    return f"citem_{digest}"


def stored_item(item: Any) -> dict[str, Any]:
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
            content = _content_of(item["content"])
            chat.append({"role": role, "content": content, "_ref": item.get("id")})
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


def _content_of(content: Any) -> str | list[dict[str, Any]]:
    """A message's content for the chat request: its text, and images given by URL as
    image parts (a model that takes images sees them; one given by file id is named)."""
    if isinstance(content, str):
        return content
    parts: list[str] = []
    images: list[dict[str, Any]] = []
    for part in content:
        if part.get("type") in ("input_text", "output_text"):
            parts.append(part.get("text", ""))
        elif part.get("type") == "input_file":
            parts.append(f"[file {part.get('filename') or part.get('file_id')}]")
        elif part.get("image_url"):
            image = {"url": part["image_url"], "detail": part.get("detail") or "auto"}
            images.append({"type": "image_url", "image_url": image})
        else:
            parts.append(f"[image {part.get('file_id') or ''}]".replace(" ]", "]"))
    text = "\n".join(parts)
    if not images:
        return text
    return [{"type": "text", "text": text}, *images] if text else images


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


def units_of(items: list[dict[str, Any]], results: dict[str, str]) -> list[Unit]:
    """Stored input or output items as transcript units: each message one, the calls of a
    turn with their outputs one."""
    units: list[Unit] = []
    calls: list[dict[str, Any]] = []
    for message in _chat_items(items, results):
        if message["role"] == "tool" or message.get("tool_calls"):
            calls.append(message)
            continue
        if calls:
            units.append(Unit(calls))
            calls = []
        units.append(Unit([message], message=True, ref=message.pop("_ref", None)))
    if calls:
        units.append(Unit(calls))
    return units


__all__ = ["Responder", "item_key", "served", "stored_item", "units_of"]
