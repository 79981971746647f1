"""Every body field the server takes is one of the ``openai`` package's params for that
request, and every param the package sends is either taken or named here as refused: a
new param in a new SDK fails this test until it is decided on."""

from __future__ import annotations

from typing import Any

import pytest
from openai.types import (
    container_create_params,
    vector_store_create_params,
    vector_store_search_params,
    vector_store_update_params,
)
from openai.types.beta import (
    assistant_create_params,
    assistant_update_params,
    thread_create_and_run_params,
    thread_create_params,
    thread_update_params,
)
from openai.types.beta.threads import (
    message_create_params,
    message_update_params,
    run_create_params,
    run_submit_tool_outputs_params,
    run_update_params,
)
from openai.types.containers import file_create_params
from openai.types.conversations import (
    conversation_create_params,
    conversation_update_params,
    item_create_params,
)
from openai.types.responses import (
    response_create_params,
    response_input_file_param,
    response_input_image_param,
    response_input_text_param,
)
from openai.types.vector_stores import file_batch_create_params, file_update_params
from openai.types.vector_stores import file_create_params as store_file_create_params
from pydantic import BaseModel, ValidationError

from interp.server.protocol import assistants, responses, vector_stores

PATH = {"thread_id", "vector_store_id"}
"""Params the SDK puts in the URL, not the body."""

CASES: list[tuple[type[BaseModel], Any, set[str]]] = [
    (assistants.AssistantCreate, assistant_create_params.AssistantCreateParams, set()),
    (assistants.AssistantModify, assistant_update_params.AssistantUpdateParams, set()),
    (assistants.ThreadCreate, thread_create_params.ThreadCreateParams, set()),
    (assistants.ThreadModify, thread_update_params.ThreadUpdateParams, set()),
    (assistants.MessageCreate, message_create_params.MessageCreateParams, set()),
    (assistants.MetadataModify, message_update_params.MessageUpdateParams, set()),
    (assistants.MetadataModify, run_update_params.RunUpdateParams, set()),
    # `include` (file_search result content) is a query parameter of file search.
    (assistants.RunCreate, run_create_params.RunCreateParamsStreaming, {"include"}),
    (
        assistants.ThreadAndRunCreate,
        thread_create_and_run_params.ThreadCreateAndRunParamsStreaming,
        set(),
    ),
    (
        assistants.SubmitToolOutputs,
        run_submit_tool_outputs_params.RunSubmitToolOutputsParamsStreaming,
        set(),
    ),
    (responses.ResponseCreate, response_create_params.ResponseCreateParamsStreaming, set()),
    (responses.ConversationCreate, conversation_create_params.ConversationCreateParams, set()),
    (responses.ConversationUpdate, conversation_update_params.ConversationUpdateParams, set()),
    # `include` is a query parameter of the items' list.
    (responses.ConversationItemsCreate, item_create_params.ItemCreateParams, {"include"}),
    # Skills are OpenAI's hosted bundles, which a local sandbox has none of.
    (responses.ContainerCreate, container_create_params.ContainerCreateParams, {"skills"}),
    # `file` is the multipart upload, which the route reads as a form.
    (responses.ContainerFileFromId, file_create_params.FileCreateParams, {"file"}),
    (vector_stores.VectorStoreCreate, vector_store_create_params.VectorStoreCreateParams, set()),
    (vector_stores.VectorStoreModify, vector_store_update_params.VectorStoreUpdateParams, set()),
    (vector_stores.FileCreate, store_file_create_params.FileCreateParams, set()),
    (vector_stores.FileModify, file_update_params.FileUpdateParams, set()),
    (vector_stores.BatchCreate, file_batch_create_params.FileBatchCreateParams, set()),
    (vector_stores.BatchFile, file_batch_create_params.File, set()),
    (vector_stores.SearchBody, vector_store_search_params.VectorStoreSearchParams, set()),
    # The parts of an input message.
    (responses.InputText, response_input_text_param.ResponseInputTextParam, set()),
    (responses.InputImage, response_input_image_param.ResponseInputImageParam, set()),
    (responses.InputFile, response_input_file_param.ResponseInputFileParam, set()),
]


def params(typed_dict: Any) -> set[str]:
    return set(typed_dict.__required_keys__ | typed_dict.__optional_keys__) - PATH


@pytest.mark.parametrize(
    ("model", "sdk", "refused"), CASES, ids=lambda c: getattr(c, "__name__", "")
)
def test_fields_are_the_sdks_params(model: type[BaseModel], sdk: Any, refused: set[str]) -> None:
    taken = {field.alias or name for name, field in model.model_fields.items()}
    assert taken - params(sdk) == set(), "fields the SDK does not send"
    assert params(sdk) - taken == refused, "params the SDK sends that are not decided on"


def test_loose_options_are_checked() -> None:
    """Options the review found typed as Any now refuse what OpenAI refuses."""
    base = {"assistant_id": "asst_1"}
    for bad in (
        {"tool_choice": "sometimes"},
        {"tool_choice": {"type": "function"} | {"function": {"name": ""}}},
        {"truncation_strategy": {"type": "last_messages", "last_messages": 0}},
        {"truncation_strategy": {"type": "first_messages"}},
        {"response_format": {"type": "json_schema"}},
        {"response_format": "json"},
        {"reasoning_effort": "extreme"},
        {"tools": [{"type": "file_search", "file_search": {"max_num_results": 51}}]},
        {"tools": [{"type": "function", "function": {"name": "file_search"}}]},
    ):
        with pytest.raises(ValidationError):
            assistants.RunCreate.model_validate(base | bad)
    run = assistants.RunCreate.model_validate(
        base
        | {
            "tool_choice": {"type": "function", "function": {"name": "lookup"}},
            "truncation_strategy": {"type": "last_messages", "last_messages": 2},
            "response_format": {"type": "json_schema", "json_schema": {"name": "t", "schema": {}}},
        }
    )
    assert run.response_format is not None and not isinstance(run.response_format, str)
    assert run.response_format.model_dump(exclude_none=True) == {
        "type": "json_schema",
        "json_schema": {"name": "t", "schema": {}},
    }
    for bad_text in ({"format": {"type": "json_schema"}}, {"format": {"type": "yaml"}}):
        with pytest.raises(ValidationError):
            responses.ResponseCreate.model_validate({"input": "hi", "text": bad_text})
