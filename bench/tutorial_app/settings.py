"""Minimal settings for the Channels tutorial chat (bench only; binds 127.0.0.1)."""
import os

SECRET_KEY = "bench-tutorial-only"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = ["channels"]
ROOT_URLCONF = "bench.tutorial_app.urls"
ASGI_APPLICATION = "bench.tutorial_app.asgi.application"
DATABASES: dict = {}
USE_TZ = True
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": {"hosts": [os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")],
                   "prefix": os.environ.get("CHANNEL_PREFIX", "asgi")},
    },
}
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "WARNING")},
}
