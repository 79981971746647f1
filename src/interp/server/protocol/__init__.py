"""What clients send: the request bodies of both doors, validated as OpenAI validates them
(an unknown field is refused). Each field is one of the ``openai`` package's params for that
request (``tests/server/test_protocol.py`` checks them against its types). No FastAPI here:
the routes take these models as their bodies."""
