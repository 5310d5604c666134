"""Django's Redis cache, sharing the broker's Redis database without ever emptying it.

Login lockouts and API throttles count in the cache; with Redis every web process and host counts
together. The cache's keys carry the KEY_PREFIX, and `clear()` deletes only those: Django's own
clear() is FLUSHDB, which would also drop the Celery queues kept in the same database."""

from __future__ import annotations

from django.core.cache.backends.redis import RedisCache


class PrefixedRedisCache(RedisCache):
    def clear(self) -> None:
        client = self._cache.get_client(None, write=True)  # type: ignore[attr-defined]
        pattern = self.make_key("*").replace("[", "\\[")  # `*` matches any key; brackets literal
        keys = list(client.scan_iter(match=pattern, count=1000))
        if keys:
            client.delete(*keys)
