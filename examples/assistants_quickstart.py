"""OpenAI's Assistants quickstart with Code Interpreter, as people wrote it for OpenAI.

Nothing here knows about interp: point it at `interp serve` with two variables,

    OPENAI_BASE_URL=http://127.0.0.1:8000/v1 OPENAI_API_KEY=anything \\
        python examples/assistants_quickstart.py

and the code the model writes runs in interp's sandbox, its output streaming back.
"""

from openai import AssistantEventHandler, OpenAI
from typing_extensions import override

client = OpenAI()  # OPENAI_BASE_URL and OPENAI_API_KEY come from the environment

assistant = client.beta.assistants.create(
    name="Math Tutor",
    instructions="You are a personal math tutor. Write and run code to answer math questions.",
    tools=[{"type": "code_interpreter"}],
    model="gpt-4o",
)
thread = client.beta.threads.create()
client.beta.threads.messages.create(
    thread_id=thread.id,
    role="user",
    content="I need to solve the equation `3x + 11 = 14`. Can you help me?",
)


class EventHandler(AssistantEventHandler):
    """Prints the reply as it is written, and the code and its logs as they run."""

    @override
    def on_text_created(self, text) -> None:  # type: ignore[no-untyped-def]
        print("\nassistant > ", end="", flush=True)

    @override
    def on_text_delta(self, delta, snapshot) -> None:  # type: ignore[no-untyped-def]
        print(delta.value, end="", flush=True)

    @override
    def on_tool_call_created(self, tool_call) -> None:  # type: ignore[no-untyped-def]
        print(f"\nassistant > {tool_call.type}\n", flush=True)

    @override
    def on_tool_call_delta(self, delta, snapshot) -> None:  # type: ignore[no-untyped-def]
        if delta.type == "code_interpreter" and delta.code_interpreter is not None:
            if delta.code_interpreter.input:
                print(delta.code_interpreter.input, end="", flush=True)
            if delta.code_interpreter.outputs:
                print("\n\noutput >", flush=True)
                for output in delta.code_interpreter.outputs:
                    if output.type == "logs":
                        print(f"\n{output.logs}", flush=True)


with client.beta.threads.runs.stream(
    thread_id=thread.id,
    assistant_id=assistant.id,
    instructions="Please address the user as Jane Doe. The user has a premium account.",
    event_handler=EventHandler(),
) as stream:
    stream.until_done()
