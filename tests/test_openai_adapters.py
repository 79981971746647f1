"""The adapters' output, read by OpenAI's own client library (the `openai` package).

Assistants streams are served over HTTP from a local server to the real client, whose
``AssistantEventHandler`` accumulates them; Responses events are parsed with the
package's types.
"""

from __future__ import annotations

import base64
import threading
import warnings
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import openai
import pytest
from openai.lib.streaming import AssistantEventHandler
from openai.types.beta.threads.runs import ToolCall
from openai.types.responses import ResponseCodeInterpreterToolCall, ResponseStreamEvent
from pydantic import TypeAdapter

from interp import DisplayOutput, Engine, Event, ExecutionFinished, ExecutionResult
from interp.adapters import assistants, chat, responses

CODE = """\
import time
import matplotlib.pyplot as plt
import pandas as pd
print("first", flush=True)
time.sleep(0.05)
print("second")
plt.plot([1, 3, 2])
plt.show()
print("after the plot")
display(pd.DataFrame({"a": [1, 2]}))
1 / 0
"""

pytestmark = pytest.mark.docker

STEP: dict[str, Any] = {
    "step_id": "step_1",
    "run_id": "run_1",
    "thread_id": "thread_1",
    "assistant_id": "asst_1",
    "created_at": 1,
}


class _Server(ThreadingHTTPServer):
    body = b""


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Content-Length", str(len(self.server.body)))
        self.end_headers()
        self.wfile.write(self.server.body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def sse_server() -> Iterator[_Server]:
    server = _Server(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


async def stream_all(engine: Engine, code: str) -> tuple[list[Event], ExecutionResult]:
    session = await engine.create_session()
    events = [event async for event in engine.stream(code, session=session)]
    final = events[-1]
    assert isinstance(final, ExecutionFinished)
    return events, final.result


def assistants_sse(events: list[Event], result: ExecutionResult) -> str:
    """A whole run with one code-interpreter step, in the contract's order."""
    run = {
        "id": "run_1",
        "object": "thread.run",
        "thread_id": "thread_1",
        "assistant_id": "asst_1",
        "created_at": 1,
    }
    sse = assistants.sse
    deltas = assistants.step_deltas(events, step_id="step_1")
    parts = [
        sse("thread.run.created", {**run, "status": "queued"}),
        sse("thread.run.queued", {**run, "status": "queued"}),
        sse("thread.run.in_progress", {**run, "status": "in_progress"}),
        sse("thread.run.step.created", assistants.run_step(**STEP)),
        sse("thread.run.step.in_progress", assistants.run_step(**STEP)),
        *(sse("thread.run.step.delta", delta) for delta in deltas),
        sse("thread.run.step.completed", assistants.run_step(**STEP, result=result, ended_at=2)),
        sse("thread.run.completed", {**run, "status": "completed"}),
        sse("done", "[DONE]"),
    ]
    return "".join(parts)


class Recorder(AssistantEventHandler):
    def __init__(self) -> None:
        super().__init__()
        self.created: list[ToolCall] = []
        self.done: list[ToolCall] = []
        self.delta_count = 0

    def on_tool_call_created(self, tool_call: ToolCall) -> None:
        self.created.append(tool_call)

    def on_tool_call_delta(self, delta: Any, snapshot: ToolCall) -> None:
        self.delta_count += 1

    def on_tool_call_done(self, tool_call: ToolCall) -> None:
        self.done.append(tool_call)


def without_index(outputs: list[Any]) -> list[dict[str, Any]]:
    return [
        {k: v for k, v in o.model_dump(exclude_none=True).items() if k != "index"} for o in outputs
    ]


async def test_the_sdks_event_handler_accumulates_the_streamed_outputs_of_the_result(
    engine: Engine, sse_server: _Server
) -> None:
    events, result = await stream_all(engine, CODE)
    assert [o.type for o in result.outputs] == ["logs", "image", "logs", "display", "logs"]
    sse_server.body = assistants_sse(events, result).encode()
    client = openai.OpenAI(
        api_key="test",
        base_url=f"http://127.0.0.1:{sse_server.server_address[1]}/v1",
        max_retries=0,
    )
    recorder = Recorder()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the Assistants API's sunset
        with client.beta.threads.runs.stream(
            thread_id="thread_1", assistant_id="asst_1", event_handler=recorder
        ) as stream:
            stream.until_done()

    (created,) = recorder.created
    assert created.id == result.id and created.type == "code_interpreter"
    # The SDK reports a finished tool call at the step's end and again at the run's.
    done = recorder.done[0]
    assert all(other == done for other in recorder.done)
    assert done.type == "code_interpreter"
    assert done.code_interpreter.input == CODE
    expected = assistants.tool_call(result)["code_interpreter"]["outputs"]
    assert without_index(done.code_interpreter.outputs) == expected
    # The display is left out; the logs on both sides of it are one output.
    assert [o["type"] for o in expected] == ["logs", "image", "logs"]
    assert expected[2]["logs"].startswith("after the plot\n")
    assert "ZeroDivisionError" in expected[2]["logs"]
    assert recorder.delta_count >= 4


async def test_a_dataframes_html_is_kept_in_the_result(engine: Engine) -> None:
    _, result = await stream_all(engine, CODE)
    (display,) = [o for o in result.outputs if isinstance(o, DisplayOutput)]
    assert display.html is not None and "<table" in display.html
    assert display.text is not None and "a" in display.text


async def test_the_responses_stream_parses_with_the_sdks_types(engine: Engine) -> None:
    events, result = await stream_all(engine, CODE)
    images = {i: await engine.download(i) for i in result.image_ids}
    (png,) = images.values()

    def url(image: Any) -> str:
        return responses.data_url(images[image.file_id], image.mime)

    produced = list(responses.stream_events(events, image_url=url, first_sequence_number=7))
    parse = TypeAdapter(ResponseStreamEvent)
    parsed = [parse.validate_python(event) for event in produced]
    assert [p.sequence_number for p in parsed] == list(range(7, 7 + len(parsed)))
    assert [p.type for p in parsed] == [
        "response.output_item.added",
        "response.code_interpreter_call.in_progress",
        "response.code_interpreter_call_code.delta",
        "response.code_interpreter_call_code.done",
        "response.code_interpreter_call.interpreting",
        "response.code_interpreter_call.completed",
        "response.output_item.done",
    ]
    item = parsed[-1].item  # type: ignore[union-attr]
    assert isinstance(item, ResponseCodeInterpreterToolCall)
    assert item.status == "completed" and item.code == CODE and item.container_id == result.session
    assert item.outputs is not None
    assert [o.type for o in item.outputs] == ["logs", "image", "logs"]
    image = item.outputs[1]
    assert image.type == "image" and image.url.startswith("data:image/png;base64,")
    assert base64.b64decode(image.url.split(",", 1)[1]) == png
    assert (
        item.model_dump()
        == ResponseCodeInterpreterToolCall.model_validate(
            responses.call_item(result, image_url=url)
        ).model_dump()
    )


async def test_the_chat_handler_answers_a_tool_call_with_text_and_image_parts(
    engine: Engine,
) -> None:
    session = await engine.create_session()
    call = {
        "id": "call_9",
        "type": "function",
        "function": {
            "name": "python",
            "arguments": '{"code": "import matplotlib.pyplot as plt\\nplt.plot([1, 2])\\n'
            "plt.show()\\nopen('/mnt/data/out.csv', 'w').write('a\\\\n1\\\\n')\"}",
        },
    }
    message = await chat.handle(engine, call, session=session, images=True)
    assert message["role"] == "tool" and message["tool_call_id"] == "call_9"
    text, image = message["content"]
    assert "[file written: sandbox:/mnt/data/out.csv (4 bytes)]" in text["text"]
    assert text["text"].startswith("[image file-")
    assert image["type"] == "image_url"
    assert image["image_url"]["url"].startswith("data:image/png;base64,")
