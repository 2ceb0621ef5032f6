"""The labeling web app (FastAPI): a 2AFC page per annotator, a small JSON API and the images.

Routes (``TOKEN`` identifies the annotator; an unknown token gets 403):

- ``GET  /label/TOKEN``               the page
- ``GET  /api/TOKEN/next``            the next item to judge and the annotator's progress
- ``POST /api/TOKEN/votes``           ``{"vote_id", "triplet_id", "presentation", "choice", "elapsed_ms"}``;
                                      ``choice`` is the image clicked: ``left``, ``right`` or ``skip``
- ``GET  /api/TOKEN/images/PATH``     an image of the plan, by its path under the image root
- ``GET  /health``                    liveness and counts

Every refusal is a 4xx with ``{"detail": "..."}`` saying why, and changes nothing. The
:class:`~ctxsim.labeling.guard.RequestGuard` wraps the whole app: unknown tokens and oversized
bodies are refused before a body is read, and every response carries the security headers.
Images are opened through :class:`~ctxsim.labeling.image_root.ImageRoot` (real paths only).
"""
from __future__ import annotations

import logging
import mimetypes
import os
import posixpath
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Literal
from urllib.parse import quote

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    StreamingResponse,
)
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field

from ctxsim.labeling.guard import UNKNOWN_TOKEN_MESSAGE, RequestGuard
from ctxsim.labeling.image_root import ImageRoot
from ctxsim.labeling.vote_queue import (
    Item,
    Progress,
    Queue,
    QueueSettings,
    answer_for,
    is_control,
    is_swapped,
)
from ctxsim.labeling.session import open_session
from ctxsim.labeling.store import Vote, VoteConflict

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
#: Largest request body accepted (a vote is ~150 bytes).
MAX_BODY_BYTES = 4096
#: Longest a vote may claim to have taken (one day), to keep nonsense out of the timings.
MAX_ELAPSED_MS = 86_400_000
VOTE_ID_PATTERN = r"^[A-Za-z0-9_-]{8,64}$"
#: How long browsers may cache an image (the plan's images do not change during a session).
IMAGE_MAX_AGE_S = 3600
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # the token is in the URL: never pass it on
    "Content-Security-Policy": "default-src 'self'; img-src 'self'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
}


class VoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    vote_id: str = Field(pattern=VOTE_ID_PATTERN, description="made by the client; resending it is harmless")
    triplet_id: str = Field(min_length=1, max_length=200)
    presentation: Literal[0, 1] = 0
    choice: Literal["left", "right", "skip"]
    elapsed_ms: int | None = Field(default=None, ge=0, le=MAX_ELAPSED_MS)


class LabelingApp(FastAPI):
    """FastAPI with the :class:`RequestGuard` outside everything, even the 500 handler."""

    def build_middleware_stack(self):
        session = self.state.session
        return RequestGuard(super().build_middleware_stack(), is_known_token=lambda t: session.annotator_for(t) is not None,
                            max_body_bytes=MAX_BODY_BYTES, headers=SECURITY_HEADERS)


def create_app(
    plan_csv: str | os.PathLike,
    db_path: str | os.PathLike,
    *,
    images: str | os.PathLike | None = None,
    tokens: dict[str, str] | None = None,
    annotators: int = 0,
    settings: QueueSettings = QueueSettings(),
) -> FastAPI:
    """The app for one plan and vote database (see :func:`ctxsim.labeling.session.open_session`).

    ``tokens`` maps annotator names to their URL tokens; ``annotators`` makes sure at least that
    many exist (new ones get tokens derived from the database's secret).
    ``app.state.session.tokens()`` gives the links' tokens.
    """
    session = open_session(plan_csv, db_path, images=images, tokens=tokens, annotators=annotators)
    queue = Queue(session.store, session.triplets, settings)
    allowed_images = session.image_paths
    image_root = ImageRoot(session.images_root)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        session.store.close()
        image_root.close()

    app = LabelingApp(title="ctxsim labeling", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.session, app.state.queue = session, queue
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, err: RequestValidationError):
        details = "; ".join(_describe(e) for e in err.errors())
        return JSONResponse({"detail": f"invalid request: {details}"}, status_code=422)

    def annotator(token: str) -> str:
        name = session.annotator_for(token)
        if name is None:
            raise HTTPException(403, UNKNOWN_TOKEN_MESSAGE)
        return name

    def item_json(token: str, item: Item | None, progress: Progress) -> dict:
        body = {"done": item is None, "progress": {"done": progress.done, "total": progress.total}, "item": None}
        if item is not None:
            url = lambda path: f"/api/{token}/images/{quote(path, safe='/')}"  # noqa: E731
            body["item"] = {
                "triplet_id": item.triplet.id,
                "presentation": item.presentation,
                "ref": url(item.triplet.ref),
                "left": url(item.left),
                "right": url(item.right),
            }
        return body

    @app.get("/", response_class=HTMLResponse)
    def home():
        return "<!doctype html><title>ctxsim labeling</title><p>ctxsim labeling server: open the link you were given.</p>"

    @app.get("/health")
    def health():
        return {"status": "ok", "triplets": len(session.triplets), "votes": session.store.count_votes()}

    @app.get("/label/{token}")
    def page(token: str):
        if session.annotator_for(token) is None:
            return HTMLResponse("<!doctype html><title>ctxsim labeling</title><p>Unknown annotator link: "
                                "use the link you were given.</p>", status_code=403)
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-store"})

    @app.get("/api/{token}/next")
    def next_item(token: str, name: str = Depends(annotator)):
        item, progress = queue.view(name)
        return item_json(token, item, progress)

    @app.post("/api/{token}/votes")
    def vote(token: str, body: VoteIn, name: str = Depends(annotator)):
        triplet = queue.triplets.get(body.triplet_id)
        if triplet is None:
            raise HTTPException(404, f"unknown triplet id {body.triplet_id!r}")
        if body.presentation == 1 and not is_control(name, triplet.id, settings.control_rate):
            raise HTTPException(409, f"triplet {triplet.id!r} is not one of your repeated controls")
        swapped = is_swapped(name, triplet.id, body.presentation)
        record = Vote(body.vote_id, name, triplet.id, body.presentation, answer_for(body.choice, swapped), swapped, body.elapsed_ms)
        try:
            stored = session.store.record_vote(record)
        except VoteConflict as err:
            raise HTTPException(409, str(err)) from None
        log.debug("vote %s by %s on %s: %s (%s)", record.vote_id, name, triplet.id, record.answer, "stored" if stored else "duplicate")
        item, progress = queue.view(name)
        reply = {"status": "stored" if stored else "duplicate", "vote_id": record.vote_id, **item_json(token, item, progress)}
        return JSONResponse(reply, status_code=201 if stored else 200)

    @app.get("/api/{token}/images/{path:path}")
    def image(path: str, name: str = Depends(annotator)):
        rel = _checked_image_path(path)
        if rel not in allowed_images:
            raise HTTPException(404, f"{path!r} is not an image of this plan")
        opened = image_root.open(rel)  # real path checked on every request: links may change
        if opened is None:
            raise HTTPException(404, f"image {path!r} is no longer on disk under the image root")
        media_type = mimetypes.guess_type(rel)[0] or "application/octet-stream"
        return StreamingResponse(opened.chunks(), media_type=media_type, headers={
            "Content-Length": str(opened.size), "Cache-Control": f"private, max-age={IMAGE_MAX_AGE_S}"})

    return app


def _checked_image_path(path: str) -> str:
    """``path`` if it is a plain relative path under the root; 400 for anything that could escape it."""
    parts = path.split("/")
    if (
        not path
        or path.startswith("/")
        or "\\" in path
        or "\0" in path
        or any(p in ("", ".", "..") for p in parts)
        or posixpath.normpath(path) != path
    ):
        raise HTTPException(400, f"invalid image path {path!r}: expected a path under the image root, without '..'")
    return path


def _describe(error: dict) -> str:
    if error.get("type") == "json_invalid":
        return "the body is not valid JSON"
    where = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "body"
    return f"{where}: {error.get('msg', 'invalid')}"
