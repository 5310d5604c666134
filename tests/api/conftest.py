import pytest
from django.core.cache import cache


@pytest.fixture(autouse=True)
def fresh_throttles():
    cache.clear()
