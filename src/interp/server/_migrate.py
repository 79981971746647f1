"""Schema 1 -> 2: the transcripts of the threads and responses a schema-1 server stored,
input items keyed by their response, and the status of objects in a column.

Schema 1 rebuilt a conversation from its objects at every model turn; schema 2 keeps it as
a transcript. This builds the transcripts once, in the transaction that opens the
database, the way schema 1 rebuilt them: a thread's messages in order, each run's tool
calls with what the model was shown of them where its reply stands; a response's input,
then its output. Schema 1's objects are read leniently (as the openai SDK reads what a
service answers): they are what that server wrote.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from openai.types.beta.threads import Message
from openai.types.beta.threads.runs import RunStep
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from ._store import _Entry, _entry, _Link, _Object
from .agent.context import Unit


def transcripts(session: Session) -> None:
    from ._responses import item_key, units_of
    from ._runs import message_unit

    # Objects with a status have it in a column (what the start and the sweeps look for).
    session.execute(text("ALTER TABLE interp_objects ADD COLUMN status VARCHAR(32)"))
    session.execute(text("CREATE INDEX interp_objects_status ON interp_objects (kind, status)"))
    # A response's input items are found by a key of the response and the item (the item's
    # own id is the client's, and may stand in many responses).
    for row in session.scalars(select(_Object).where(_Object.kind == "input_item")):
        row.id = item_key(row.parent or "", row.data["id"])
    for row in session.scalars(
        select(_Object).where(_Object.kind.in_(["run", "response", "container"]))
    ):
        row.status = row.data.get("status")

    rows = session.execute(
        select(_Object.owner, _Object.kind, _Object.parent, _Object.data)
        .where(
            _Object.kind.in_(["message", "run", "step", "tool_result", "response", "input_item"])
        )
        .order_by(_Object.seq)
    )
    children: dict[tuple[str, str | None], list[dict[str, Any]]] = defaultdict(list)
    responses: list[tuple[str, dict[str, Any]]] = []
    threads: dict[str, str] = {}
    for owner, kind, parent, data in rows:
        children[(kind, parent)].append(data)
        if kind == "response":
            responses.append((owner, data))
        elif kind == "message":
            threads.setdefault(parent, owner)
    for thread_id, owner in threads.items():
        expanded: set[str] = set()
        units: list[tuple[Unit, str | None]] = []
        messages = children[("message", thread_id)]
        by_id = {m["id"]: m for m in messages}
        for message in messages:
            run_id = message.get("run_id")
            if message["role"] == "assistant" and run_id:
                if run_id not in expanded:
                    expanded.add(run_id)
                    units += _run_units(children, run_id, by_id)
                continue
            units.append((message_unit(Message.construct(**message)), message["id"]))
        session.add_all([_Entry(**_entry(owner, thread_id, unit, ref)) for unit, ref in units])
    containers: dict[str, str | None] = {}
    for owner, response in responses:
        container = next(
            (
                i["container_id"]
                for i in reversed(response["output"])
                if i["type"] == "code_interpreter_call"
            ),
            containers.get(response.get("previous_response_id") or ""),
        )
        containers[response["id"]] = container
        session.add(
            _Link(
                id=response["id"],
                owner=owner,
                previous=response.get("previous_response_id"),
                container=container,
            )
        )
        if response.get("status") not in ("completed", "incomplete"):
            continue
        results = {r["call_id"]: r["text"] for r in children[("tool_result", response["id"])]}
        items = [*children[("input_item", response["id"])], *response["output"]]
        entries = [_entry(owner, response["id"], u, None) for u in units_of(items, results)]
        session.add_all([_Entry(**entry) for entry in entries])


def _run_units(
    children: dict[tuple[str, str | None], list[dict[str, Any]]],
    run_id: str,
    messages: dict[str, dict[str, Any]],
) -> list[tuple[Unit, str | None]]:
    from ._runs import calls_unit, message_unit

    results = {r["call_id"]: r["text"] for r in children[("tool_result", run_id)]}
    units: list[tuple[Unit, str | None]] = []
    for step in children[("step", run_id)]:
        details = step["step_details"]
        if details["type"] == "message_creation":
            message = messages.get(details["message_creation"]["message_id"])
            if message is not None and message["status"] == "completed":
                units.append((message_unit(Message.construct(**message)), message["id"]))
        elif any(call["id"] in results for call in details["tool_calls"]):
            units.append((calls_unit(RunStep.construct(**step), results), step["id"]))
    return units
