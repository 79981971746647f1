"""``interp serve``: OpenAI's Assistants v2 and Responses HTTP APIs, and MCP, over the engine.

Programs written against the Assistants API run here by changing ``OPENAI_BASE_URL``: the
server is the run loop between an OpenAI-compatible chat-completions model and the
engine's sandboxed sessions. Layers, each its own module:

    _api.py     FastAPI routes: validate, authorise (key -> owner), OpenAI JSON and SSE
    _runs.py    the run loop: thread -> chat request -> tool calls -> engine -> events
    _api_responses.py, _responses.py, _wire_responses.py
                the Responses API: its routes, its loop (input items -> model -> code in
                a container -> output items and events), its bodies and objects
    _containers.py  containers: engine sessions whose files the store keeps
    _mcp.py     the MCP server (stdio for ``interp mcp``, streamable HTTP at /mcp)
    _model.py   the upstream chat-completions client (the ``openai`` package), streaming
    _store.py   SQLAlchemy 2 (async): every object, by owner; SQLite or any async URL
    _wire.py    request bodies and the objects the API returns

Needs the ``server`` extra: ``pip install 'interp[server]'``.
"""

from __future__ import annotations

from ._api import asgi_app, create_app, db_url, preflight

__all__ = ["asgi_app", "create_app", "db_url", "preflight"]
