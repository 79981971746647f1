"""Code Interpreter through the Responses API, as OpenAI's documentation writes it.

Nothing here knows about interp: point it at `interp serve` with two variables,

    OPENAI_BASE_URL=http://127.0.0.1:8000/v1 OPENAI_API_KEY=anything \\
        python examples/responses_quickstart.py

The model's code streams as it writes it, then runs in a container of interp's sandbox
(made at the first code call); the second request continues in the same container.
"""

from openai import OpenAI

client = OpenAI()  # OPENAI_BASE_URL and OPENAI_API_KEY come from the environment
tools = [{"type": "code_interpreter", "container": {"type": "auto"}}]

stream = client.responses.create(
    model="gpt-4.1",
    tools=tools,  # type: ignore[arg-type]
    include=["code_interpreter_call.outputs"],
    input="I need to solve the equation `3x + 11 = 14`. Can you help me?",
    stream=True,
)
response_id = None
for event in stream:
    if event.type == "response.output_item.added" and event.item.type == "code_interpreter_call":
        print("\ncode_interpreter >", flush=True)
    elif event.type == "response.code_interpreter_call_code.delta":
        print(event.delta, end="", flush=True)
    elif event.type == "response.code_interpreter_call.interpreting":
        print("\n(running)", flush=True)
    elif event.type == "response.output_item.done" and event.item.type == "code_interpreter_call":
        for output in event.item.outputs or []:
            print("output >", output.logs if output.type == "logs" else output.url, flush=True)
    elif event.type == "response.output_text.delta":
        print(event.delta, end="", flush=True)
    elif event.type == "response.completed":
        response_id = event.response.id
        print()

# The next request continues in the same container: the variables are still there.
follow_up = client.responses.create(
    model="gpt-4.1",
    tools=tools,  # type: ignore[arg-type]
    previous_response_id=response_id,
    input="Now check the solution by substituting it back.",
)
print(follow_up.output_text)
