"""Nothing the portal answers may be kept by a browser or proxy cache: pages, API answers and
files carry patient data. (Static files are answered by WhiteNoise before this runs.)"""

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.utils.cache import add_never_cache_headers


class NoStoreMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        # Replace, not add to, whatever a view set (files used to allow an hour of caching).
        if "Cache-Control" in response:
            del response["Cache-Control"]
        add_never_cache_headers(response)
        return response
