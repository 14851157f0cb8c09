"""Fetch a user-supplied web page from a background job without becoming a proxy into our own network.

A URL chosen by a user must never make the server talk to itself, to the private network, or to the
cloud metadata service (SSRF). The guard works at three levels:

* ``check_url`` (urls.py) refuses what can be judged from the text alone: other schemes, credentials,
  odd ports, and IP literals (in every spelling the C resolver accepts) that are not public.
* The network backend (network.py) resolves the host name itself, refuses if ANY address is not
  public, and then connects to one of exactly those checked addresses. There is no second lookup, so
  DNS rebinding (public answer for the check, 127.0.0.1 for the connect) cannot work. TLS SNI,
  certificate checks and the Host header still use the name.
* Redirects are followed by hand (fetch.py), and every hop goes through both checks again.

The whole fetch runs against one wall-clock deadline (every socket operation gets at most the time
left), and the body is capped while it streams, including after decompression. Plain blocking sockets
are used on purpose: the Celery worker runs on a gevent pool with monkey-patching.

This package takes every limit as an argument and imports nothing from Django: the caller passes settings.
"""

from basic.core.fetch.errors import FetchFailed, FetchRefused
from basic.core.fetch.fetch import FetchResult, fetch_public
from basic.core.fetch.urls import check_url, normalise_url

__all__ = ["FetchFailed", "FetchRefused", "FetchResult", "check_url", "fetch_public", "normalise_url"]
