"""gunicorn settings the web app relies on: ``gunicorn -c python:web.gunicorn_conf …``.

The hook lets the app have a connection closed, with ``Connection: close`` in the answer, when it
refused a request whose body it will not read (see web/bodies.py).
"""
from web.bodies import gunicorn_pre_request as pre_request  # noqa: F401  (read by gunicorn)
