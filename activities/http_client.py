"""The HTTP clients of `tool:` and `http:` steps: cheap to make, and one per step.

Building an SSL context (loading the CA bundle) is nearly all of what a new httpx client
costs: about 32 ms of the worker's CPU, against 0.2 ms with a context made once per process.
So the context is shared and the client is not: a step's connections and cookies never
serve another step, whose environment (and credentials) may differ.
"""

from __future__ import annotations

import ssl
from functools import cache

import httpx


@cache
def _ssl_context() -> ssl.SSLContext:
    # What httpx builds for every client by default (certifi's CA bundle), built once.
    return httpx.create_ssl_context()


def step_client(timeout: float) -> httpx.AsyncClient:
    """A client for one step: redirects are not followed (a receiver's redirect would carry
    the step's credentials to wherever it points)."""
    return httpx.AsyncClient(timeout=timeout, verify=_ssl_context(), follow_redirects=False)
