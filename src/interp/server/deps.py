"""What a route depends on, as ``Annotated`` dependencies: the owner its key names, and the
services of the running app (built by the lifespan of ``create_app``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import Depends, Query, Request

from .. import Config, Engine
from ._containers import Containers
from ._places import Places
from ._quotas import Quotas
from ._responses import Responder
from ._runs import Runner
from ._store import Store
from ._vector_stores import VectorStores
from .agent.model import Model

ListOrder = Annotated[Literal["asc", "desc"], Query()]
Limit = Annotated[int, Query(ge=1, le=100)]
Cursor = Annotated[str | None, Query(max_length=64)]
"""The query parameters of every list route."""


@dataclass
class Services:
    config: Config
    store: Store
    engine: Engine
    places: Places
    model: Model
    runner: Runner
    containers: Containers
    responder: Responder
    quotas: Quotas
    vector_stores: VectorStores


# Every dependency is a coroutine: FastAPI calls a plain function on a worker thread.


async def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


async def owner(request: Request) -> str:
    """The owner the request's key names (``APIError`` 401 without a valid one)."""
    found: str = request.app.state.owner_of(request)
    return found


async def include(request: Request) -> list[str]:
    """``include`` of a query, as ``include=…`` or as the ``openai`` SDK sends it,
    ``include[]=…``."""
    params = request.query_params
    return [*params.getlist("include"), *params.getlist("include[]")][:16]


ServicesDep = Annotated[Services, Depends(services)]
Owner = Annotated[str, Depends(owner)]
Include = Annotated[list[str], Depends(include)]


@dataclass
class PageQuery:
    """The query of every list route, OpenAI's: ``limit``, ``order``, ``after``, ``before``."""

    limit: Limit = 20
    order: ListOrder = "desc"
    after: Cursor = None
    before: Cursor = None


async def page(
    limit: Limit = 20, order: ListOrder = "desc", after: Cursor = None, before: Cursor = None
) -> PageQuery:
    return PageQuery(limit, order, after, before)


Page = Annotated[PageQuery, Depends(page)]
