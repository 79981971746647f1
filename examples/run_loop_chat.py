"""interp as the tool backend of a chat-completions run loop.

The model here is scripted: its turns come from a list, shaped as chat completion
messages, so the loop runs with no network and no API key. To drive it with a real
model, replace ``ScriptedModel.create`` by ``openai.OpenAI().chat.completions.create``
(and read ``.choices[0].message``); the loop does not change.

The user gives a CSV file; the model's code reads it, prints while it works (streamed
here as it runs), draws a chart and writes an Excel report. Charts and files are saved
to the output directory.

    python examples/run_loop_chat.py [OUTPUT_DIR]       # default: ./interp-out
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from interp import Engine, ExecutionFinished, ExecutionResult, FileSaved, ImageSaved, LogChunk
from interp.adapters import chat

SALES = b"""month,region,sales
2026-01,north,120
2026-01,south,95
2026-02,north,131
2026-02,south,102
2026-03,north,128
2026-03,south,117
"""

USER = "Here are my sales (sales.csv). How did each region do? A chart and an Excel report, please."


def tool_call(call_id: str, code: str) -> dict[str, Any]:
    function = {"name": "python", "arguments": json.dumps({"code": code})}
    return {"id": call_id, "type": "function", "function": function}


# What a model answers, turn by turn: two tool calls, then a reply citing the report.
TURNS: list[dict[str, Any]] = [
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            tool_call(
                "call_1",
                "import time\n"
                "import pandas as pd\n"
                "df = pd.read_csv('/mnt/data/sales.csv')\n"
                "for region, rows in df.groupby('region'):\n"
                "    print(f'{region}: {rows.sales.sum()} in total', flush=True)\n"
                "    time.sleep(0.3)  # stands for slow work: the output above shows at once\n"
                "df.pivot(index='month', columns='region', values='sales')",
            )
        ],
    },
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            tool_call(
                "call_2",
                "import matplotlib.pyplot as plt\n"
                "table = df.pivot(index='month', columns='region', values='sales')\n"
                "table.plot(marker='o', title='Sales by region')\n"
                "plt.show()\n"
                "table.to_excel('/mnt/data/sales_report.xlsx')\n"
                "print('growth:', (table.iloc[-1] / table.iloc[0] - 1).round(3).to_dict())",
            )
        ],
    },
    {
        "role": "assistant",
        "content": (
            "North sold 379 and south 314 over the quarter; south grew faster (+23% against"
            " +7%). The chart is above and the report is at sandbox:/mnt/data/sales_report.xlsx."
        ),
    },
]


class ScriptedModel:
    """Answers each request with the next scripted turn, as a chat completion."""

    def __init__(self, turns: list[dict[str, Any]]) -> None:
        self._turns = iter(turns)

    def create(self, *, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> Any:
        assert tools == [chat.tool_schema()]
        return {"choices": [{"index": 0, "message": next(self._turns), "finish_reason": "stop"}]}


async def run_tool_call(
    engine: Engine, session: str, call: dict[str, Any], out: Path
) -> ExecutionResult:
    """Run one tool call, showing its output as it comes and saving what it makes."""
    code = chat.code_from_tool_call(call)
    print(f"\n--- {call['id']} runs:\n{code}\n---", flush=True)
    async for event in engine.stream(code, session=session):
        if isinstance(event, LogChunk):
            stream = sys.stderr if event.stream == "stderr" else sys.stdout
            stream.write(event.text)
            stream.flush()
        elif isinstance(event, ImageSaved | FileSaved):
            target = out / (event.file.id + Path(event.file.name).suffix)
            if isinstance(event, FileSaved):
                target = out / Path(event.file.name).name
            data = await engine.download(event.file.id, session=session)
            await asyncio.to_thread(target.write_bytes, data)
            print(f"[saved {target}]", flush=True)
        elif isinstance(event, ExecutionFinished):
            return event.result
    raise RuntimeError("the stream ended without a result")


async def main(out: Path) -> None:
    model = ScriptedModel(TURNS)
    messages: list[dict[str, Any]] = [{"role": "user", "content": USER}]
    print(f"user: {USER}")
    async with Engine() as engine:
        # The user's file, as OpenAI's tool_resources.code_interpreter.file_ids.
        sales = await engine.create_file("sales.csv", SALES)
        session = await engine.create_session(file_ids=[sales.id])
        while True:
            completion = model.create(messages=messages, tools=[chat.tool_schema()])
            reply = completion["choices"][0]["message"]
            messages.append(reply)
            if not reply.get("tool_calls"):
                print(f"\nassistant: {reply['content']}")
                break
            for call in reply["tool_calls"]:
                result = await run_tool_call(engine, session, call, out)
                messages.append(chat.tool_message(call["id"], result))
        await engine.close_session(session)
    print(f"\n{len(messages)} messages; the last tool message the model read:")
    print(json.dumps(messages[-2], indent=2))


if __name__ == "__main__":
    output_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("interp-out")
    output_dir.mkdir(parents=True, exist_ok=True)
    asyncio.run(main(output_dir))
