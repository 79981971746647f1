"""The adapters on hand-made results, checked against the `openai` package's types. No Docker."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from openai.types.beta.threads import FilePathAnnotation, Text
from openai.types.beta.threads.runs import RunStep
from openai.types.chat import ChatCompletionMessageToolCall, ChatCompletionToolParam
from openai.types.responses import ResponseCodeInterpreterToolCall
from pydantic import TypeAdapter

from interp import (
    DisplayOutput,
    ExecutionResult,
    ExecutionStatus,
    FileInfo,
    FileSaved,
    ImageFile,
    ImageOutput,
    InvalidInputError,
    LogsOutput,
)
from interp.adapters import assistants, chat, responses


def result(status: ExecutionStatus = ExecutionStatus.COMPLETED, **fields: Any) -> ExecutionResult:
    settings: dict[str, Any] = {
        "id": "call_abc",
        "session": "s1",
        "code": "print(1)",
        "status": status,
        "outputs": [
            LogsOutput(logs="a\n"),
            DisplayOutput(data={"text/html": "<b>x</b>"}, text="x"),
            LogsOutput(logs="x\n"),
            ImageOutput(image=ImageFile(file_id="file-1", mime="image/jpeg")),
        ],
        "duration_s": 0.1,
    }
    settings.update(fields)
    return ExecutionResult(**settings)


def test_tool_call_has_the_assistants_shape_with_displays_left_out() -> None:
    assert assistants.tool_call(result()) == {
        "id": "call_abc",
        "type": "code_interpreter",
        "code_interpreter": {
            "input": "print(1)",
            "outputs": [
                {"type": "logs", "logs": "a\nx\n"},
                {"type": "image", "image": {"file_id": "file-1"}},
            ],
        },
    }


@pytest.mark.parametrize(
    ("status", "step_status"),
    [
        (ExecutionStatus.COMPLETED, "completed"),
        (ExecutionStatus.FAILED, "completed"),
        (ExecutionStatus.TIMEOUT, "failed"),
        (ExecutionStatus.OOM, "failed"),
    ],
)
def test_run_steps_parse_as_the_sdks_run_step(status: ExecutionStatus, step_status: str) -> None:
    ids: dict[str, Any] = {
        "step_id": "step_1",
        "run_id": "run_1",
        "thread_id": "t",
        "assistant_id": "a",
    }
    created = RunStep.model_validate(assistants.run_step(**ids, created_at=1))
    assert created.status == "in_progress"
    ended = assistants.run_step(
        **ids, created_at=1, result=result(status, message="timed out"), ended_at=2
    )
    step = RunStep.model_validate(ended)
    assert step.status == step_status
    assert (step.last_error is None) == (step_status == "completed")


@pytest.mark.parametrize(
    ("status", "call_status"),
    [
        (ExecutionStatus.COMPLETED, "completed"),
        (ExecutionStatus.FAILED, "completed"),
        (ExecutionStatus.TIMEOUT, "incomplete"),
        (ExecutionStatus.KERNEL_DIED, "failed"),
    ],
)
def test_the_responses_item_parses_and_maps_the_status(
    status: ExecutionStatus, call_status: str
) -> None:
    item = responses.call_item(result(status), image_url=lambda i: f"https://x/{i.file_id}")
    parsed = ResponseCodeInterpreterToolCall.model_validate(item)
    assert parsed.id == "ci_abc" and parsed.status == call_status
    assert [o.model_dump() for o in parsed.outputs or []] == [
        {"type": "logs", "logs": "a\nx\n"},
        {"type": "image", "url": "https://x/file-1"},
    ]


def test_the_chat_tool_schema_is_a_valid_function_tool() -> None:
    schema = chat.tool_schema()
    TypeAdapter(ChatCompletionToolParam).validate_python(schema)
    assert schema["function"]["parameters"]["required"] == ["code"]


def call(arguments: str) -> dict[str, Any]:
    function = {"name": "python", "arguments": arguments}
    return {"id": "call_1", "type": "function", "function": function}


@pytest.mark.parametrize(
    ("arguments", "code"),
    [
        ('{"code": "print(1)"}', "print(1)"),
        ('"print(2)"', "print(2)"),
        ("print(3)\nx = {1: 2}", "print(3)\nx = {1: 2}"),
        ("42", "42"),
    ],
)
def test_code_is_read_from_json_arguments_or_raw_code(arguments: str, code: str) -> None:
    assert chat.code_from_tool_call(call(arguments)) == code


def test_code_is_read_from_the_sdks_tool_call_objects() -> None:
    sdk_call = ChatCompletionMessageToolCall.model_validate(call('{"code": "1 + 1"}'))
    assert chat.code_from_tool_call(sdk_call) == "1 + 1"
    assert chat.call_id(sdk_call) == "call_1"


@pytest.mark.parametrize(
    "bad", [call('{"source": "1"}'), call('{"code": 5}'), {"id": "x"}, {"function": None}]
)
def test_malformed_tool_calls_get_a_clear_error(bad: dict[str, Any]) -> None:
    with pytest.raises(InvalidInputError, match="tool call"):
        chat.code_from_tool_call(bad)


def saved_file(file_id: str, name: str, size: int = 12) -> FileSaved:
    info = FileInfo(
        id=file_id,
        name=name,
        bytes=size,
        mime="text/csv",
        created_at=datetime.now(UTC),
        session="s1",
    )
    return FileSaved(file=info, path=f"sandbox:/mnt/data/{name}")


def test_a_reply_citing_produced_files_gets_file_path_annotations() -> None:
    files = [saved_file("file-a", "a.csv"), saved_file("file-b", "b.csv")]
    text = "sandbox:/mnt/data/b.csv, then sandbox:/mnt/data/a.csv; again sandbox:/mnt/data/b.csv"
    annotations = assistants.file_annotations(text, files)
    content = Text.model_validate({"value": text, "annotations": annotations})
    cited = [
        (a.file_path.file_id, text[a.start_index : a.end_index])
        for a in content.annotations
        if isinstance(a, FilePathAnnotation)
    ]
    assert cited == [
        ("file-b", "sandbox:/mnt/data/b.csv"),
        ("file-a", "sandbox:/mnt/data/a.csv"),
        ("file-b", "sandbox:/mnt/data/b.csv"),
    ]


def test_the_tool_message_tells_the_model_of_files_and_failures() -> None:
    saved = saved_file("file-2", "out.csv")
    timed_out = result(ExecutionStatus.TIMEOUT, message="execution timed out", files=[saved])
    message = chat.tool_message("call_1", timed_out)
    assert message == {
        "role": "tool",
        "tool_call_id": "call_1",
        "content": "a\nx\n[image file-1]\n"
        "[file written: sandbox:/mnt/data/out.csv (12 bytes)]\n"
        "[execution timed out]\n",
    }
    with_images = chat.tool_message("call_1", timed_out, images={"file-1": b"\xff\xd8"})
    assert with_images["content"][1] == {
        "type": "image_url",
        "image_url": {"url": "data:image/jpeg;base64,/9g="},
    }
    empty = result(outputs=[])
    assert chat.tool_message("c", empty)["content"] == "[no output]"
