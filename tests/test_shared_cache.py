"""With REDIS_URL, lockouts and throttles count in Redis, and clearing the cache spares the queues."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.core.cache import cache

ROOT = Path(__file__).resolve().parent.parent


def configured(redis_url: str, name: str) -> str:
    """A setting as a fresh process computes it from the environment."""
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"} | {
        "DJANGO_SETTINGS_MODULE": "lungportal.settings"
    }
    if redis_url:
        env["REDIS_URL"] = redis_url
    code = f"from django.conf import settings; import json; print(json.dumps(getattr(settings, {name!r})))"
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout


def test_redis_url_moves_lockouts_and_throttles_into_redis():
    assert "PrefixedRedisCache" in configured("redis://127.0.0.1:6379/3", "CACHES")
    assert "AxesCacheHandler" in configured("redis://127.0.0.1:6379/3", "AXES_HANDLER")
    assert "FileBasedCache" in configured("", "CACHES")
    assert "AxesDatabaseHandler" in configured("", "AXES_HANDLER")


@pytest.mark.skipif(not settings.REDIS_URL, reason="runs where the tests use Redis")
def test_clearing_the_cache_keeps_the_brokers_keys():
    client = cache._cache.get_client(None, write=True)  # type: ignore[attr-defined]
    client.set("not-the-cache", "a queued task's neighbour")
    cache.set("throttle", 3)
    try:
        cache.clear()
        assert cache.get("throttle") is None
        assert client.get("not-the-cache") == b"a queued task's neighbour"
    finally:
        client.delete("not-the-cache")


def test_an_unreachable_redis_is_a_miss_not_an_error(caplog):
    from lungportal.cache import PrefixedRedisCache

    gone = PrefixedRedisCache("redis://127.0.0.1:1/0", {"OPTIONS": {"socket_connect_timeout": 1}})
    gone.set("throttle", 3)
    assert gone.get("throttle", "missing") == "missing" and gone.get_many(["a"]) == {}
    assert gone.add("k", 1) is False and gone.delete("k") is False
    gone.clear()
    assert "Redis cache unreachable" in caplog.text
