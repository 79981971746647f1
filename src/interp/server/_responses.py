"""The Responses door: responses (and conversations) driven by the one agent loop.

``Responder`` keeps the door's rules: chains along ``previous_response_id`` and
conversations, ``store=false``, background responses and their cancel, ``include``, the
containers of ``auto`` tools (made at the first code call, never for a response that runs
none, and reused along the chain), a request the model refuses answered as OpenAI's 400.
``ResponseSink`` turns what the loop reports into output items and events, each with a
rising ``sequence_number``, as they happen: a code call's item is added when the model
starts writing it, its code streams as it is written, it turns ``interpreting`` when the
kernel starts running it and ``completed`` when it has finished;
``response.output_item.done`` carries the whole item, with its outputs when the request
``include``s them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any, Literal

from openai.types.responses import (
    Response,
    ResponseCodeInterpreterToolCall,
    ResponseError,
    ResponseFileSearchToolCall,
    ResponseFunctionToolCall,
    ResponseOutputItem,
    ResponseOutputMessage,
    ResponseStreamEvent,
)
from openai.types.responses.response import IncompleteDetails
from pydantic import TypeAdapter

from .. import Engine, ExecutionResult, ExecutionStarted, FileSaved, ImageFile, ImageSaved
from .._models import Event
from ..adapters import assistants
from ..adapters.responses import call_item
from . import _wire as wire
from . import _wire_responses as rwire
from ._containers import Containers, cfile_id
from ._errors import APIError, bad_request, not_found
from ._store import Store, Writes
from ._vector_stores import VECTOR_STORE
from .agent.context import Unit, outputs_text, replay
from .agent.events import BEHIND, RunEvents
from .agent.images import file_image
from .agent.loop import Ending, Runs, Status, drive
from .agent.model import CODE_TOOL, ToolCall, chat_tool_call, code_arguments
from .agent.search import DEFAULT_RESULTS, SEARCH_TOOL, Cited, Searching, passages_text
from .agent.turn import Agent, Budget, History, PromptTooLong, Settings
from .protocol.responses import (
    INCLUDE_OUTPUTS,
    INCLUDE_RESULTS,
    AutoContainer,
    CodeInterpreterTool,
    FileSearchTool,
    FunctionTool,
    ItemReference,
    MessageItem,
    NamedTool,
    ResponseCreate,
)

log = logging.getLogger("interp.server")

OutputItem = ResponseOutputItem
CallItem = ResponseCodeInterpreterToolCall | ResponseFunctionToolCall | ResponseFileSearchToolCall
_Status = Literal["completed", "incomplete", "failed", "cancelled"]
_EVENT: TypeAdapter[ResponseStreamEvent] = TypeAdapter(ResponseStreamEvent)
_STATUS: dict[Status, _Status] = {
    "completed": "completed",
    "incomplete": "incomplete",
    "failed": "failed",
    "cancelled": "cancelled",
    # Functions waiting for their outputs: the response is complete (its caller answers
    # them in a request of its own).
    "requires_action": "completed",
    "expired": "failed",  # the Responses API has no such status
}

KEPT_EVENTS_S = 600.0
"""How long a background response's events are kept for a stream to (re)join, once it
has ended. They are kept in memory: a restart of the server drops them."""


def served(response: Response, include: list[str] | None) -> Response:
    """The response as a client sees it, now: code outputs only when ``include``d."""
    output = [shown(item, include) for item in response.output]
    return response.model_copy(update={"output": output}, deep=True)


def shown(item: OutputItem, include: list[str] | None) -> OutputItem:
    """An output item as a client sees it: a code call's outputs, a search's results, when
    ``include``d."""
    if isinstance(item, ResponseCodeInterpreterToolCall) and INCLUDE_OUTPUTS not in (include or ()):
        return item.model_copy(update={"outputs": None})
    if isinstance(item, ResponseFileSearchToolCall) and INCLUDE_RESULTS not in (include or ()):
        return item.model_copy(update={"results": None})
    return item


class Responder:
    def __init__(
        self,
        *,
        store: Store,
        engine: Engine,
        agent: Agent,
        containers: Containers,
        default_model: str | None,
        run_timeout: float = 600.0,
    ) -> None:
        self.store = store
        self._engine = engine
        self._agent = agent
        self.containers = containers
        self._default_model = default_model
        self.run_timeout = run_timeout
        """Seconds a response may run."""
        self._runs = Runs()
        self._events: dict[str, RunEvents] = {}

    def events(self, response_id: str) -> RunEvents | None:
        """The response's events: while it runs, and for ``KEPT_EVENTS_S`` after a
        background one ends."""
        return self._events.get(response_id)

    def forget(self, response_id: str) -> None:
        """Drop the events kept of a (deleted) response."""
        self._events.pop(response_id, None)

    async def start(
        self, owner: str, body: ResponseCreate, *, base_url: str
    ) -> tuple[Response, RunEvents, asyncio.Task[APIError | None]]:
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
            chain = await self.store.chain(owner, body.previous_response_id)
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
            if await self.store.get(rwire.CONVERSATION, owner, conversation) is None:
                raise not_found("conversation", conversation)
            history = [conversation]
        tools = await self._tools(owner, body)
        model = body.model or self._default_model or ""
        response = rwire.response(body, model=model, tools=tools)
        items = [stored_item(item) for item in body.items()]
        distinct(items, param="input")
        await self.check_images(owner, items, param="input")
        sink = ResponseSink(
            self,
            owner=owner,
            response=response,
            body=body,
            base_url=base_url,
            history=history,
            items=items,
            budget=Budget(
                max_tool_calls=body.max_tool_calls,
                max_completion_tokens=body.max_output_tokens,
                seconds=self.run_timeout,
            ),
        )
        settings, budget = _settings(body, model, owner), sink.budget
        if not settings.truncate:
            # OpenAI refuses an input over the window at once when truncation is disabled.
            try:
                await self._agent.request(settings, budget, sink.inputs, sink.history, sink.render)
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
                sink.container = await self.containers.live(owner, code_tool.container)
            else:
                sink.auto = code_tool.container
                if reused is not None:
                    # Gone (deleted or expired) since: the next code call makes a new one.
                    with contextlib.suppress(APIError):
                        found = await self.containers.get(owner, reused)
                        sink.container = found if found.status == "running" else None
        if store:
            async with self.store.transaction(wait=False) as tx:
                tx.create("response", owner, response)
                for item in items:
                    # Keyed by the response: a client carrying its history sends ids it got
                    # before, and one item may stand in many responses' input.
                    key = item_key(response.id, item["id"])
                    tx.create("input_item", owner, item, parent=response.id, key=key)
                tx.link(owner, response.id, body.previous_response_id, reused)
        self._events[response.id] = sink.events
        task = self._runs.start(
            response.id, self._drive(sink, settings, budget), name=f"interp-{response.id}"
        )
        return response, sink.events, task

    async def _drive(
        self, sink: ResponseSink, settings: Settings, budget: Budget
    ) -> APIError | None:
        response_id = sink.response.id
        try:
            sink.emit_response("response.created")
            sink.emit_response("response.in_progress")
            await drive(
                self._agent,
                self._engine,
                settings,
                budget,
                sink,
                cancelled=lambda: self._runs.cancelling(response_id),
                started=lambda: sink.started,
            )
        finally:
            sink.events.close()
            if sink.body.background:
                loop = asyncio.get_running_loop()
                loop.call_later(KEPT_EVENTS_S, self.forget, response_id)
            else:
                self.forget(response_id)
        return sink.refusal

    async def cancel(self, owner: str, response: Response) -> Response:
        if self._runs.task(response.id) is None:
            if response.status in ("queued", "in_progress"):
                raise bad_request("This response is no longer running and cannot be cancelled.")
            return response
        await self._runs.stop(response.id)
        return await self.store.get(rwire.RESPONSE, owner, response.id) or response

    async def close(self) -> None:
        await self._runs.close()

    async def remove(self, owner: str, response_id: str) -> None:
        """Delete a stored response: its input items, its transcript and its link too."""
        async with self.store.transaction() as tx:
            tx.delete_children(owner, [response_id])
            tx.forget(owner, [response_id])
            tx.delete("response", owner, response_id)
        self.forget(response_id)

    async def check_images(self, owner: str, items: list[dict[str, Any]], *, param: str) -> None:
        """The stored files items show as images are the owner's (they go to the model)."""
        await wire.check_files(self.store, owner, _image_files(items), param)

    async def add_items(
        self, owner: str, conversation_id: str, items: list[dict[str, Any]], *, again: bool
    ) -> None:
        """Store items in a conversation and add them to its transcript. One it holds
        already is left as it is (``again``: a response's input sent with the history it
        continues), or refused."""
        keys = [item_key(conversation_id, item["id"]) for item in items]
        held = [
            item
            for item, key in zip(items, keys, strict=True)
            if await self.store.get(rwire.CONVERSATION_ITEM, owner, key) is not None
        ]
        if held and not again:
            raise bad_request(f"Duplicate item found with id {held[0]['id']}.", param="items")
        new = [item for item in items if item not in held]
        async with self.store.transaction() as tx:
            for item in new:
                key = item_key(conversation_id, item["id"])
                tx.create("conversation_item", owner, item, parent=conversation_id, key=key)
            tx.append(owner, conversation_id, units_of(new, {}))

    async def _tools(self, owner: str, body: ResponseCreate) -> list[dict[str, Any]]:
        tools: list[dict[str, Any]] = []
        names: set[str] = set()
        for tool in body.tools:
            if isinstance(tool, FileSearchTool):
                for store_id in tool.vector_store_ids:
                    if await self.store.get(VECTOR_STORE, owner, store_id) is None:
                        raise not_found("vector store", store_id)
                tools.append(tool.model_dump(exclude_none=True))
            elif isinstance(tool, CodeInterpreterTool):
                if isinstance(tool.container, AutoContainer):
                    await wire.check_files(self.store, owner, tool.container.file_ids, "tools")
                tools.append(tool.model_dump(exclude_none=True))
            else:
                if tool.name in names:
                    raise bad_request(f"Duplicate function name '{tool.name}'.", param="tools")
                names.add(tool.name)
                tools.append(tool.model_dump(exclude_none=True))
        for kind in (CodeInterpreterTool, FileSearchTool):
            if sum(isinstance(t, kind) for t in body.tools) > 1:
                name = "code_interpreter" if kind is CodeInterpreterTool else "file_search"
                raise bad_request(f"Only one {name} tool is allowed.", param="tools")
        choice = body.tool_choice
        if isinstance(choice, NamedTool) and (
            (choice.type == "function" and choice.name not in names)
            or (choice.type == "code_interpreter" and body.code_tool() is None)
            or (choice.type == "file_search" and body.search_tool() is None)
        ):
            raise bad_request(
                f"tool_choice names a {choice.type} tool that is not in tools.",
                param="tool_choice",
            )
        return tools


class ResponseSink:
    """One response as the loop drives it: its output items, its events (each numbered),
    what it adds to its conversation."""

    def __init__(
        self,
        responder: Responder,
        *,
        owner: str,
        response: Response,
        body: ResponseCreate,
        base_url: str,
        history: list[str],
        items: list[dict[str, Any]],
        budget: Budget,
    ) -> None:
        self.responder = responder
        self.budget = budget
        self.store = responder.store
        self.owner = owner
        self.response = response
        self.body = body
        self.base_url = base_url
        self.events = RunEvents(cut=self._behind, replay=bool(body.background))
        self.keep = body.store is not False
        self.keys = history
        """The transcripts it continues: its chain's responses, or its conversation."""
        self.items = items
        """Its input items, as stored."""
        self.inputs = units_of(items, {})
        self.units: list[Unit] = []
        """What it has added to the conversation so far."""
        self.container: rwire.Container | None = None
        self.auto: AutoContainer | None = None
        self.files: list[FileSaved] = []
        self.searching = body.search_tool() is not None
        self.cited = Cited()
        """The files its searches found, by which its reply's citations are known."""
        self.sequence = 0
        self.started = False
        """Something was sent to the client besides the response's creation."""
        self.refusal: APIError | None = None
        self.message: ResponseOutputMessage | None = None
        self.text = ""
        self.calls: dict[str, CallItem] = {}
        """The model's call id -> its output item."""

    def emit(self, type_: str, **fields: Any) -> None:
        """An event, numbered, as the openai package's types have it (its objects are
        written out now: they go on changing)."""
        event = _EVENT.validate_python({"type": type_, "sequence_number": self.sequence, **fields})
        self.sequence += 1
        self.events.emit(type_, event)

    def _behind(self) -> str:
        """The stream's last event for a reader too slow to follow the response."""
        event = _EVENT.validate_python(
            {"type": "error", "code": "server_error", "message": BEHIND, "param": None,
             "sequence_number": self.sequence}
        )  # fmt: skip
        return assistants.sse("error", event.model_dump_json())

    def emit_response(self, type_: str) -> None:
        self.emit(type_, response=served(self.response, self.body.include))

    def history(self) -> AsyncIterator[Unit]:
        if not self.keys:
            return replay([])
        return self.store.tail(self.owner, self.keys)

    def save(self) -> None:
        """Queue a write of the response (the writer keeps the order of writes)."""
        if self.keep:
            writes = Writes()
            writes.put("response", self.owner, self.response)
            self.store.submit(writes)

    # The loop's reports.

    async def context(self) -> tuple[list[Unit], History]:
        return [*self.inputs, *self.units], self.history

    def render(self, unit: Unit) -> list[dict[str, Any]]:
        return unit.messages

    async def text_delta(self, text: str) -> None:
        self.started = True
        output = self.response.output
        if self.message is None:
            self.message = rwire.message_item()
            output.append(self.message)
            index = len(output) - 1
            self.emit("response.output_item.added", output_index=index, item=self.message)
            self.emit(
                "response.content_part.added",
                output_index=index,
                item_id=self.message.id,
                content_index=0,
                part=rwire.output_text(""),
            )
        self.text += text
        self.emit(
            "response.output_text.delta",
            output_index=output.index(self.message),
            item_id=self.message.id,
            content_index=0,
            delta=text,
            logprobs=[],
        )

    async def text_done(self, *, cut: bool) -> None:
        message, text = self.message, self.text
        if message is None:
            return
        index = self.response.output.index(message)
        container_id = self.container.id if self.container else ""
        annotations = [
            {
                "type": "container_file_citation",
                "container_id": container_id,
                "file_id": cfile_id(a["file_path"]["file_id"]),
                "filename": a["text"].rsplit("/", 1)[-1],
                "start_index": a["start_index"],
                "end_index": a["end_index"],
            }
            for a in assistants.file_annotations(text, self.files)
        ] + [
            {
                "type": "file_citation",
                "file_id": cited.file_id,
                "filename": cited.filename,
                "index": cited.start,
            }
            for cited in self.cited.find(text)
        ]
        annotations.sort(key=lambda a: a.get("start_index", a.get("index", 0)))
        for number, annotation in enumerate(annotations):
            self.emit(
                "response.output_text.annotation.added",
                output_index=index,
                item_id=message.id,
                content_index=0,
                annotation_index=number,
                annotation=annotation,
            )
        part = rwire.output_text(text, annotations)
        self.emit(
            "response.output_text.done",
            output_index=index,
            item_id=message.id,
            content_index=0,
            text=text,
            logprobs=[],
        )
        self.emit(
            "response.content_part.done",
            output_index=index,
            item_id=message.id,
            content_index=0,
            part=part,
        )
        message.status, message.content = "incomplete" if cut else "completed", [part]
        self.emit("response.output_item.done", output_index=index, item=message)
        self.units.append(Unit([{"role": "assistant", "content": text}], message=True))
        self.message, self.text = None, ""

    async def call_started(self, call: ToolCall) -> None:
        self.started = True
        output = self.response.output
        item: CallItem
        if call.name == SEARCH_TOOL and self.searching:
            item = ResponseFileSearchToolCall(
                id=wire.new_id("fs_"), type="file_search_call", status="in_progress",
                queries=[], results=None,
            )  # fmt: skip
        elif call.name == CODE_TOOL:
            container = await self._container()
            item = ResponseCodeInterpreterToolCall(
                id=wire.new_id("ci_"), type="code_interpreter_call", status="in_progress",
                code="", container_id=container.id, outputs=None,
            )  # fmt: skip
        else:
            item = ResponseFunctionToolCall(
                id=wire.new_id("fc_"), type="function_call", status="in_progress",
                call_id=call.id, name=call.name, arguments="",
            )  # fmt: skip
        output.append(item)
        self.calls[call.id] = item
        index = len(output) - 1
        self.emit("response.output_item.added", output_index=index, item=item)
        if call.name == CODE_TOOL:
            self.emit(
                "response.code_interpreter_call.in_progress", output_index=index, item_id=item.id
            )
        elif isinstance(item, ResponseFileSearchToolCall):
            self.emit("response.file_search_call.in_progress", output_index=index, item_id=item.id)

    async def code_delta(self, call: ToolCall, text: str) -> None:
        item = self.calls.get(call.id)
        if item is not None:
            self.emit(
                "response.code_interpreter_call_code.delta",
                output_index=self.response.output.index(item),
                item_id=item.id,
                delta=text,
            )

    async def _container(self) -> rwire.Container:
        """The response's container; an ``auto`` one is made at its first code call."""
        if self.container is None:
            auto = self.auto or AutoContainer(type="auto")
            self.container = await self.responder.containers.create(
                self.owner,
                name=f"auto container of {self.response.id}",
                file_ids=list(auto.file_ids),
                memory_limit=auto.memory_limit,
                param="tools",
            )
        return self.container

    async def session(self) -> str:
        container = await self._container()
        containers = self.responder.containers
        await containers.live(self.owner, container.id)
        return await containers.session(self.owner, container.id)

    async def code_running(self, call: ToolCall, code: str) -> None:
        item = self._code(call)
        item.code = code
        self.emit(
            "response.code_interpreter_call_code.done",
            output_index=self.response.output.index(item),
            item_id=item.id,
            code=code,
        )

    async def code_output(self, call: ToolCall, event: Event) -> None:
        item, containers = self._code(call), self.responder.containers
        assert self.container is not None
        session = self.container.id
        if isinstance(event, ExecutionStarted):
            item.status = "interpreting"
            self.emit(
                "response.code_interpreter_call.interpreting",
                output_index=self.response.output.index(item),
                item_id=item.id,
            )
            self.save()  # a client polling a background response sees it
        elif isinstance(event, ImageSaved):
            await containers.add_output(self.owner, session, event.file.id)
        elif isinstance(event, FileSaved):
            await containers.add_output(self.owner, session, event.file.id)
            self.files.append(event)

    async def code_done(self, call: ToolCall, result: ExecutionResult) -> None:
        item = self._code(call)
        assert self.container is not None
        session = self.container.id
        await self.responder.containers.touch(self.owner, session)
        base = self.base_url

        def url(image: ImageFile) -> str:
            return f"{base}v1/containers/{session}/files/{cfile_id(image.file_id)}/content"

        done = ResponseCodeInterpreterToolCall.model_validate(call_item(result, image_url=url))
        item.status, item.outputs = done.status, done.outputs
        index = self.response.output.index(item)
        self.emit("response.code_interpreter_call.completed", output_index=index, item_id=item.id)
        self.emit(
            "response.output_item.done", output_index=index, item=shown(item, self.body.include)
        )

    async def code_skipped(self, call: ToolCall, note: str) -> None:
        item = self._code(call)
        item.code, item.status, item.outputs = call.code, "incomplete", []
        index = self.response.output.index(item)
        self.emit("response.output_item.done", output_index=index, item=item)

    async def search_done(self, call: ToolCall, asked: list[str], results: list[Any]) -> None:
        item = self.calls[call.id]
        assert isinstance(item, ResponseFileSearchToolCall)
        index = self.response.output.index(item)
        self.emit("response.file_search_call.searching", output_index=index, item_id=item.id)
        self.cited.add(results)
        done = ResponseFileSearchToolCall.model_validate(
            {
                "id": item.id,
                "type": "file_search_call",
                "status": "completed",
                "queries": asked,
                "results": [
                    {
                        "file_id": found.hit.file_id,
                        "filename": found.filename,
                        "score": found.hit.score,
                        "text": found.hit.text,
                        "attributes": found.hit.attributes,
                    }
                    for found in results
                ],
            }
        )
        item.status, item.queries, item.results = done.status, done.queries, done.results
        self.emit("response.file_search_call.completed", output_index=index, item_id=item.id)
        self.emit(
            "response.output_item.done", output_index=index, item=shown(item, self.body.include)
        )

    async def calls_done(self, calls: list[ToolCall], shown: dict[str, str]) -> None:
        output = self.response.output
        for call in calls:
            item = self.calls[call.id]
            if not isinstance(item, ResponseFunctionToolCall):
                continue
            item.arguments, item.status = call.arguments, "completed"
            index = output.index(item)
            self.emit(
                "response.function_call_arguments.delta",
                output_index=index,
                item_id=item.id,
                delta=call.arguments,
            )
            self.emit(
                "response.function_call_arguments.done",
                output_index=index,
                item_id=item.id,
                name=call.name,
                arguments=call.arguments,
            )
            self.emit("response.output_item.done", output_index=index, item=item)
        # A code item is its own call's id for the model (its output says so).
        results = {_item_id(self.calls[c]): text for c, text in shown.items()}
        self.units += units_of([self.calls[call.id].model_dump() for call in calls], results)
        self.save()

    def _code(self, call: ToolCall) -> ResponseCodeInterpreterToolCall:
        item = self.calls[call.id]
        assert isinstance(item, ResponseCodeInterpreterToolCall)
        return item

    async def functions_pending(self, calls: list[ToolCall]) -> None:
        """Function calls are answered by the caller, in a request of its own."""

    async def ended(self, ending: Ending) -> None:
        answered = not self.body.stream and not self.body.background
        if ending.status == "failed" and ending.refused and answered:
            # Refused before anything was made: answered as the refusal, nothing kept.
            self.refusal = APIError(400, ending.message or "", code=ending.code)
            await self._forget()
            return
        if ending.reason == "prompt":
            message = f"the input does not fit the model: {ending.message}"
            ending = Ending("failed", code="invalid_prompt", message=message)
        response = self.response
        status = _STATUS[ending.status]
        if status == "failed":
            response.error = ResponseError.model_validate(
                {"code": _error_code(ending.code), "message": ending.message or ""}
            )
        if ending.status == "incomplete":
            reason = "content_filter" if ending.reason == "content_filter" else "max_output_tokens"
            response.incomplete_details = IncompleteDetails(reason=reason)
        await self._end(status)

    async def _end(self, status: _Status) -> None:
        """End the response; what a response that completes (or stops short of its
        limits) added is kept for the responses that continue it."""
        response = self.response
        response.status = status
        if status in ("failed", "cancelled"):
            _stop_items(response)
        if status == "completed":
            response.completed_at = wire.now()
        if self.budget.turns:
            usage = self.budget.usage
            response.usage = rwire.usage(usage["prompt_tokens"], usage["completion_tokens"])
        if self.body.conversation is not None and status in ("completed", "incomplete"):
            conversation = self.body.conversation_id()
            if await self.store.get(rwire.CONVERSATION, self.owner, conversation) is not None:
                items = [*self.items, *(item.model_dump() for item in response.output)]
                await self.responder.add_items(self.owner, conversation, items, again=True)
        if self.keep:
            async with self.store.transaction() as tx:
                if status in ("completed", "incomplete"):
                    container = self.container.id if self.container else None
                    tx.append(self.owner, response.id, [*self.inputs, *self.units])
                    tx.relink(self.owner, response.id, container)
                tx.put("response", self.owner, response)
        # The API has no cancelled event: the stream ends with the response, cancelled.
        self.emit_response("response.incomplete" if status == "cancelled" else f"response.{status}")

    async def _forget(self) -> None:
        if self.keep:
            await self.responder.remove(self.owner, self.response.id)


def _settings(body: ResponseCreate, model: str, owner: str) -> Settings:
    choice = body.tool_choice
    text_format = body.text.format if body.text is not None else None
    response_format: Any = None
    if text_format is not None and text_format.type == "json_object":
        response_format = {"type": "json_object"}
    elif text_format is not None and text_format.type == "json_schema":
        schema = text_format.model_dump(exclude_none=True, exclude={"type"})
        response_format = {"type": "json_schema", "json_schema": schema}
    functions = [
        tool.model_dump(exclude_none=True, exclude={"type"})
        for tool in body.tools
        if isinstance(tool, FunctionTool)
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
        search=_searching(body, owner),
        functions=functions,
        tool_choice=choice.model_dump(exclude_none=True)
        if isinstance(choice, NamedTool)
        else choice,
        parallel_tool_calls=body.parallel_tool_calls,
        temperature=body.temperature,
        top_p=body.top_p,
        response_format=response_format,
        reasoning_effort=body.reasoning.effort if body.reasoning is not None else None,
        extra=extra,
        truncate=body.truncation == "auto",
    )


def _searching(body: ResponseCreate, owner: str) -> Searching | None:
    tool = body.search_tool()
    if tool is None:
        return None
    ranking = tool.ranking_options
    return Searching(
        owner=owner,
        store_ids=list(tool.vector_store_ids),
        max_num_results=tool.max_num_results or DEFAULT_RESULTS,
        filters=tool.filters,
        score_threshold=ranking.score_threshold if ranking is not None else None,
    )


def item_key(holder_id: str, item_id: str) -> str:
    """The store id of an item of a response's input or of a conversation: an item's own
    id is the client's to choose, and the same item may be in many of them."""
    digest = hashlib.sha256(f"{holder_id}\0{item_id}".encode()).hexdigest()[:32]
    return f"citem_{digest}"


def stored_item(item: Any) -> dict[str, Any]:
    """An input item as stored and listed by ``input_items``: an id, a status, parts."""
    data: dict[str, Any] = item.model_dump(exclude_none=True)
    if isinstance(item, MessageItem):
        content = item.content
        data["content"] = (
            [{"type": "input_text", "text": content}]
            if isinstance(content, str)
            else data["content"]
        )
        data.setdefault("id", wire.new_id("msg_"))
        data.setdefault("status", "completed")
    elif isinstance(item, ItemReference):
        raise bad_request("item_reference input items are not supported; send the items.")
    else:
        data.setdefault("id", wire.new_id("item_"))
        data.setdefault("status", "completed")
    return data


def distinct(items: list[dict[str, Any]], *, param: str) -> None:
    """Items of one request have distinct ids (OpenAI's 400 else)."""
    seen: set[str] = set()
    for item in items:
        if item["id"] in seen:
            raise bad_request(f"Duplicate item found with id {item['id']}.", param=param)
        seen.add(item["id"])


def _chat_items(
    items: list[dict[str, Any]], results: dict[str, str]
) -> list[tuple[dict[str, Any], str | None]]:
    """Stored input or output items as chat messages (calls of a turn in one message), each
    with the id of the message item it is, if it is one (by which a deleted conversation
    item leaves the transcript)."""
    chat: list[tuple[dict[str, Any], str | None]] = []
    for item in items:
        kind = item.get("type", "message")
        if kind == "message":
            role = {"developer": "system"}.get(item["role"], item["role"])
            chat.append(({"role": role, "content": _content_of(item["content"])}, item.get("id")))
            continue
        if kind == "function_call_output":
            output = {"role": "tool", "tool_call_id": item["call_id"], "content": item["output"]}
            chat.append((output, None))
            continue
        call = _chat_call(item)
        previous = chat[-1][0] if chat else None
        if previous and previous["role"] == "assistant" and previous.get("tool_calls"):
            previous["tool_calls"].append(call)
        else:
            chat.append(({"role": "assistant", "content": None, "tool_calls": [call]}, None))
        if kind == "code_interpreter_call":
            shown = results.get(item["id"]) or outputs_text(item.get("outputs"))
            chat.append(({"role": "tool", "tool_call_id": item["id"], "content": shown}, None))
        elif kind == "file_search_call":
            shown = results.get(item["id"]) or _search_text(item)
            chat.append(({"role": "tool", "tool_call_id": item["id"], "content": shown}, None))
    return chat


def _image_files(items: list[dict[str, Any]]) -> list[str]:
    """The stored files input items show as images."""
    return [
        str(part["file_id"])
        for item in items
        if item.get("type", "message") == "message" and not isinstance(item["content"], str)
        for part in item["content"]
        if part.get("type") == "input_image" and part.get("file_id")
    ]


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
        elif part.get("file_id"):
            images.append(file_image(part["file_id"], part.get("detail")))
        else:
            parts.append("[image]")
    text = "\n".join(parts)
    if not images:
        return text
    return [{"type": "text", "text": text}, *images] if text else images


def _chat_call(item: dict[str, Any]) -> dict[str, Any]:
    """A code, search or function call item as the chat request's tool call."""
    if item["type"] == "code_interpreter_call":
        return chat_tool_call(item["id"], CODE_TOOL, code_arguments(item["code"]))
    if item["type"] == "file_search_call":
        query = " | ".join(item.get("queries") or [])
        return chat_tool_call(item["id"], SEARCH_TOOL, json.dumps({"query": query}))
    return chat_tool_call(item["call_id"], item["name"], item["arguments"])


def _search_text(item: dict[str, Any]) -> str:
    """What the model was shown of a search item given back as input."""
    passages = [
        (r.get("filename") or r.get("file_id") or "", r.get("score") or 0.0, r.get("text") or "")
        for r in item.get("results") or []
    ]
    return passages_text(item.get("queries") or [], passages)


def _stop_items(response: Response) -> None:
    """Items a stopped response leaves unfinished say so."""
    for item in response.output:
        if isinstance(item, CallItem | ResponseOutputMessage) and item.status in (
            "in_progress",
            "interpreting",
            "searching",
        ):
            item.status = "incomplete"


def _item_id(item: CallItem) -> str:
    return item.id or ""


def _error_code(code: str | None) -> str:
    """An error code the Responses API has: the upstream's own is in the message."""
    known = {"server_error", "rate_limit_exceeded", "invalid_prompt"}
    return code if code in known else "server_error"


def units_of(items: list[dict[str, Any]], results: dict[str, str]) -> list[Unit]:
    """Stored input or output items as transcript units: each message one, the calls of a
    turn with their outputs one."""
    units: list[Unit] = []
    calls: list[dict[str, Any]] = []
    for message, ref in _chat_items(items, results):
        if message["role"] == "tool" or message.get("tool_calls"):
            calls.append(message)
            continue
        if calls:
            units.append(Unit(calls))
            calls = []
        units.append(Unit([message], message=True, ref=ref))
    if calls:
        units.append(Unit(calls))
    return units


__all__ = ["Responder", "ResponseSink", "item_key", "served", "stored_item", "units_of"]
