"""Settings of the minimal Django Channels chat leakrun's Django examples run under daphne.

The channel layer comes from the environment, so one project serves every example:
  CHAT_LAYER = "core"    channels_redis' core layer (RedisChannelLayer), the one django/channels#1683
                         is about; REDIS_URL names the Redis (leakrun starts a private one)
  CHAT_LAYER = "pubsub"  channels_redis' pub/sub layer (RedisPubSubChannelLayer, channels_redis 3.3+)
  CHAT_LAYER = "memory"  channels' InMemoryChannelLayer
CHAT_CAPACITY sets the layer's channel capacity (default 1000, as in the #1683 report).
"""

import os

SECRET_KEY = "leakrun-example-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = ["channels", "chat"]
ROOT_URLCONF = "django_chat.urls"
ASGI_APPLICATION = "django_chat.asgi.application"
DATABASES = {}
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"

_layer = os.environ.get("CHAT_LAYER", "core")
_capacity = int(os.environ.get("CHAT_CAPACITY", "1000"))
_redis = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
if _layer == "memory":
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer", "CONFIG": {"capacity": _capacity}}}
elif _layer == "pubsub":
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [_redis]},
        }
    }
elif _layer == "core":
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [_redis], "capacity": _capacity},
        }
    }
else:
    raise SystemExit(f"CHAT_LAYER={_layer!r}: valid: core, pubsub, memory")
