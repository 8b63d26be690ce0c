"""Fakes of the services the bot talks to, real servers on 127.0.0.1: Discord (REST and the
gateway websocket) and the OpenAI Images API, plus the driver that runs the real bot against them.

They live in the package, not in ``tests/``, so one copy serves the test suite, ``python -m bot
demo`` (the bot seen working before any account exists) and ``python -m bot.testing.images_api``
(a fake image API to try the one-shot CLI against). Only ``bot.cli`` imports them, for
``demo``; nothing in the running bot does.
"""
