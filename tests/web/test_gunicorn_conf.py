"""The gunicorn hooks of web/gunicorn_conf.py that are not covered by the server tests."""
import gc

from web import gunicorn_conf, sqlite


def test_worker_freezes_the_loaded_app_out_of_garbage_collection():
    gc.unfreeze()
    role = sqlite._role[0]
    try:
        gunicorn_conf.post_worker_init(worker=None)
        assert gc.get_freeze_count() > 10_000  # the app and its imports, not a handful
        # and a web worker tries for the embedded database's write lock before the background
        assert sqlite._role[0] == "foreground"
    finally:
        gc.unfreeze()
        sqlite._role[0] = role
