"""``persona serve``: an OpenAI-compatible HTTP server over one continuous-batching engine.

``engine.py`` owns the model (one thread); ``batch.py`` holds the running batch's KV cache;
``app.py`` is the FastAPI factory with ``chat.py`` and ``users.py`` routes; ``keys.py`` and
``auth.py`` decide who may ask; ``errors.py`` gives every failure OpenAI's error shape.
"""
