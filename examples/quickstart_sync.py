"""The OpenAI Assistants quickstart's flow, with interp as the code interpreter.

A synchronous run loop: open a session (the thread), run the model's first tool call,
then a second one that uses the state the first left behind. Each result is printed in
the Assistants tool-call shape a run step carries.

    python examples/quickstart_sync.py
"""

import json

from interp import SyncEngine
from interp.adapters import assistants

# What a model writes for "I need to solve the equation 3x + 11 = 14. Can you help me?"
FIRST_CALL = """\
from sympy import Eq, solve, symbols
x = symbols("x")
solution = solve(Eq(3 * x + 11, 14), x)
solution
"""
SECOND_CALL = 'print(f"x = {solution[0]}. The answer is {solution[0] * 42}")'

with SyncEngine() as engine:
    thread = engine.create_session()
    for code in (FIRST_CALL, SECOND_CALL):
        result = engine.execute(code, session=thread, timeout=60)
        print(f"status: {result.status.value}, {result.duration_s * 1000:.0f} ms")
        print(json.dumps(assistants.tool_call(result), indent=2))
    engine.close_session(thread)
