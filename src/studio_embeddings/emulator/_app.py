"""The ASGI glue: a Starlette app that hands requests to :class:`EmulatorCore`.

Imported only when a server or an app is actually built, so that the core package and
:func:`~studio_embeddings.emulator.embed_text` work without the ``emulator`` extra.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from studio_embeddings.emulator._core import Answer, EmulatorCore, Incoming
from studio_embeddings.providers import NEBIUS, YANDEX

__all__ = ["build_app"]

# A dropped connection is an ASGI app that starts a response and returns without its
# body; uvicorn then closes the socket and logs an error. The cell below marks the
# requests we dropped on purpose so that log line is filtered for them only.
_DROPPED: contextvars.ContextVar[list[bool]] = contextvars.ContextVar("_emulator_dropped")
_DROP_LOG_MARKER = "without completing response"


class _QuietIntentionalDrops(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        cell = _DROPPED.get(None)
        return not (cell and cell[0] and _DROP_LOG_MARKER in str(record.msg))


def install_log_filter() -> None:
    """Hide uvicorn's complaint about the connections we drop on purpose (idempotent)."""
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _QuietIntentionalDrops) for f in logger.filters):
        logger.addFilter(_QuietIntentionalDrops())


class _DropResponse(Response):
    """Headers promising a body, then nothing: clients see a broken connection."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        cell = _DROPPED.get(None)
        if cell is not None:
            cell[0] = True
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"4096")],
            }
        )


class _MarkDrops:
    """Outermost ASGI layer: gives each request a fresh drop marker."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        _DROPPED.set([False])
        await self.app(scope, receive, send)


def _to_response(answer: Answer) -> Response:
    if answer.drop:
        return _DropResponse()
    # orjson: compact UTF-8 JSON, like json.dumps(separators=(",", ":"), ensure_ascii=False),
    # about 10x faster on 4096-dim answers, so the server's own CPU stays out of the latency.
    content = orjson.dumps(answer.body)
    return Response(content, answer.status, answer.headers, media_type="application/json")


async def _incoming(request: Request, provider: str) -> Incoming | None:
    """The request as the core sees it, or None if the client left before its body."""
    headers: dict[str, str] = {}
    for name, value in request.headers.items():
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    try:
        body = await request.body()
    except ClientDisconnect:
        # A client that timed out or was cancelled: nobody to answer, nothing to record.
        return None
    return Incoming(
        provider=provider,
        method=request.method,
        path=request.url.path,
        query=dict(request.query_params),
        headers=headers,
        body=body,
    )


def _gone() -> Response:
    return Response(status_code=400)  # never delivered: the client has disconnected


def build_app(core: EmulatorCore) -> ASGIApp:
    """The emulator's ASGI app, serving both dialects from ``core``."""

    def embeddings(provider: str) -> Any:
        async def endpoint(request: Request) -> Response:
            arrival = time.monotonic()
            incoming = await _incoming(request, provider)
            if incoming is None:
                return _gone()
            answer = core.handle_embeddings(incoming)
            response = _to_response(answer)
            # The latency knobs are the time from arrival to answer, the server's own work
            # included, as a client sees a provider's latency.
            wait = answer.delay - (time.monotonic() - arrival)
            if wait > 0:
                await asyncio.sleep(wait)
            return response

        return endpoint

    async def models(request: Request) -> Response:
        incoming = await _incoming(request, NEBIUS.name)
        return _gone() if incoming is None else _to_response(core.handle_models(incoming))

    routes = [
        Route(f"/{NEBIUS.name}/v1/embeddings", embeddings(NEBIUS.name), methods=["POST"]),
        Route(f"/{YANDEX.name}/v1/embeddings", embeddings(YANDEX.name), methods=["POST"]),
        Route(f"/{NEBIUS.name}/v1/models", models, methods=["GET"]),
    ]
    return _MarkDrops(Starlette(routes=routes))
