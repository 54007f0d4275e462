"""A poison record for the worker's batch tests: one completion whose decision raises."""
from web.services.completions import processing


def poison(monkeypatch, completion_id: int, exc: BaseException) -> None:
    """Make deciding ``completion_id`` raise ``exc``; every other completion decides as usual."""
    real = processing._decide

    def decide(c, *args):
        if c.id == completion_id:
            raise exc
        return real(c, *args)
    monkeypatch.setattr(processing, "_decide", decide)
