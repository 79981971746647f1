"""``interp serve``: OpenAI's Assistants v2 and Responses HTTP APIs, and MCP, over the engine.

Programs written against the Assistants API run here by changing ``OPENAI_BASE_URL``: the
server is the run loop between an OpenAI-compatible chat-completions model and the
engine's sandboxed sessions. Its layers (``docs/architecture.md`` draws them):

    _api.py         the app: the lifespan builds the services; errors as OpenAI's JSON;
                    the body limit; MCP at /mcp
    routes/         one router per part of the API (models and assistants, threads with
                    their messages, runs and steps, files, responses and containers,
                    conversations); deps.py: the owner and the services as dependencies
    _runs.py        the Assistants door: its rules (Runner) and its sink (RunSink)
    _responses.py   the Responses door: its rules (Responder) and its sink (ResponseSink)
    agent/          the one agent loop both doors run: the model client, context fitted
                    to the window, a turn and the run's budget, the loop, SSE fan-out
    _containers.py  containers: engine sessions whose files the store keeps
    _mcp.py         the MCP server (stdio for ``interp mcp``, streamable HTTP at /mcp)
    _store.py       SQLAlchemy 2: objects by owner, transcripts, one batching
                    writer; SQLite or PostgreSQL (``_migrate.py``: from schema 1)
    protocol/       what clients send: each door's request bodies, each field one of the
                    ``openai`` package's params (no FastAPI)
    _wire.py, _wire_responses.py   the objects each door returns

Needs the ``server`` extra: ``pip install 'interp[server]'``.
"""

from __future__ import annotations

from ._api import asgi_app, create_app, db_url, preflight

__all__ = ["asgi_app", "create_app", "db_url", "preflight"]
