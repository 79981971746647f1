"""``/`` and ``/playground``: the Playground page, and its script and style sheet.

The page is static and holds nothing secret: it loads without a key, and talks to the same
public API as any client (a key, when the server wants one, is asked for in the page and
kept in the browser's session). Everything it shows that a model or code produced is put
in the page as text, never as markup, and its Content-Security-Policy allows scripts and
styles from this server only (no inline script): a payload that got past the first would
still not run.
"""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from fastapi.responses import Response

from .._errors import not_found

router = APIRouter()

_FILES = {
    "app.js": "text/javascript; charset=utf-8",
    "markdown.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}
_PAGE = "index.html"

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:;"
    " connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
}


def _read(name: str) -> bytes:
    return resources.files("interp.server.playground").joinpath(name).read_bytes()


_CONTENT = {name: _read(name) for name in (_PAGE, *_FILES)}


@router.get("/", include_in_schema=False)
@router.get("/playground", include_in_schema=False)
async def page() -> Response:
    return Response(_CONTENT[_PAGE], media_type="text/html; charset=utf-8", headers=_HEADERS)


@router.get("/playground/{name}", include_in_schema=False)
async def asset(name: str) -> Response:
    if name not in _FILES:
        raise not_found("file", name)
    return Response(_CONTENT[name], media_type=_FILES[name], headers=_HEADERS)
