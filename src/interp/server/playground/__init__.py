"""The Playground: a page that drives the server's own public API from a browser (static
files, no build step; see ``routes/playground.py``)."""
