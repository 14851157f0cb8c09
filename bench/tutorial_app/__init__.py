"""The Channels tutorial's chat (async version), as written there, for bench_fanout's comparison:
its ChatConsumer on the stock pub/sub channel layer under Daphne, with no auth middleware and no
origin validator. Run: `DJANGO_SETTINGS_MODULE=bench.tutorial_app.settings python -m daphne
bench.tutorial_app.asgi:application` with REDIS_URL set."""
