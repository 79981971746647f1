"""The HTTP routes, one ``APIRouter`` per part of the API (the rest still in ``_api``)."""
