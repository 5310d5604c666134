"""Django's Redis cache, sharing the broker's Redis database without ever emptying it, and
degrading to "nothing cached" while Redis is unreachable.

Login lockouts and API throttles count in the cache; with Redis every web process and host counts
together. The cache's keys carry the KEY_PREFIX, and `clear()` deletes only those: Django's own
clear() is FLUSHDB, which would also drop the Celery queues kept in the same database.

While Redis is down the portal keeps working (uploads wait in the database for the broker to come
back, and the sweep sends them): a read is a miss and a write is dropped, so throttles and
lockouts count nothing until it returns. Each such moment is logged."""

from __future__ import annotations

import logging
from typing import Any

from django.core.cache.backends.redis import RedisCache
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

logger = logging.getLogger(__name__)
UNREACHABLE = (RedisConnectionError, RedisTimeoutError)


def _unreachable(operation: str) -> None:
    logger.warning("Redis cache unreachable: %s skipped (throttles and lockouts count nothing)", operation)


class PrefixedRedisCache(RedisCache):
    def get(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        try:
            return super().get(key, default, version)
        except UNREACHABLE:
            _unreachable("get")
            return default

    def get_many(self, keys: Any, version: int | None = None) -> dict[Any, Any]:
        try:
            return super().get_many(keys, version)
        except UNREACHABLE:
            _unreachable("get_many")
            return {}

    def set(self, *args: Any, **kwargs: Any) -> None:
        try:
            super().set(*args, **kwargs)
        except UNREACHABLE:
            _unreachable("set")

    def set_many(self, *args: Any, **kwargs: Any) -> list[Any]:
        try:
            return super().set_many(*args, **kwargs)
        except UNREACHABLE:
            _unreachable("set_many")
            return []

    def add(self, *args: Any, **kwargs: Any) -> bool:
        try:
            return super().add(*args, **kwargs)
        except UNREACHABLE:
            _unreachable("add")
            return False

    def delete(self, *args: Any, **kwargs: Any) -> bool:
        try:
            return super().delete(*args, **kwargs)
        except UNREACHABLE:
            _unreachable("delete")
            return False

    def clear(self) -> None:
        try:
            client = self._cache.get_client(None, write=True)  # type: ignore[attr-defined]
            pattern = self.make_key("*").replace("[", "\\[")  # `*` matches any key; brackets literal
            keys = list(client.scan_iter(match=pattern, count=1000))
            if keys:
                client.delete(*keys)
        except UNREACHABLE:
            _unreachable("clear")
