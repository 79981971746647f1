"""Adapters from interp's results and events to the shapes of OpenAI's APIs.

Pure functions, no state and no I/O: each maps engine models to plain dicts that OpenAI's
client libraries parse, as specified in the project's OpenAI contract.

- ``assistants``: the ``code_interpreter`` tool call, its run step, the run-step deltas
  of a stream, and server-sent events.
- ``responses``: the ``code_interpreter_call`` output item and its stream events.
- ``chat``: a function tool for chat completions, reading a model's tool call, and the
  tool message that answers it.

OpenAI's shapes carry logs and images only; ``display`` outputs (HTML, SVG, JSON, LaTeX)
are left out of them, their plain text being in the logs already.
"""

from . import assistants, chat, responses

__all__ = ["assistants", "chat", "responses"]
