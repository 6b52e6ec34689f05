"""HTTP service over a finished run: ``sidrec serve run_dir=runs/... [port=8000 ...]``.

Endpoints (OpenAPI docs at ``/docs``):

    POST /recommend             one history ({"history": [...]}) or many ({"histories": [[...], ...]})
    GET  /items/{item_id}       an item (by item id or ASIN) with its SID
    GET  /items/{item_id}/similar?k=10   items sharing its SID prefix, then nearest by embedding
    POST /items                 cold start: add items, recommendable at once (sidrec.cold_start)
    GET  /health                status, catalog size, micro-batching counters (no file system paths)

Bad requests get a 4xx whose ``detail`` says what is wrong: malformed JSON (400), a missing or wrong
API key (401, 403), a body over ``max_body_bytes`` (413), fields of the wrong type or over a limit,
unknown items (422), unknown item ids in the path (404); an overloaded service answers 503 with
Retry-After; never a 500. Responses are ASCII JSON, so no input text can make one unencodable.

Writes (POST /items) need ``api_key`` (or the SIDREC_API_KEY environment variable); without one
configured they are refused. ``auth=all`` requires the key for reads as well.

Micro-batching: every /recommend request goes to one asyncio queue, bounded at ``max_queue``
histories; one worker task takes the first waiting request, gathers more until ``max_batch``
histories or ``max_wait_ms`` have passed, and runs them as one ``Recommender.recommend_many`` call
(one beam search) in a dedicated thread, so the event loop keeps accepting requests meanwhile.
Requests queued while a batch runs form the next one. Requests are grouped by (k, number of
exclusions), so a request's result does not depend on what it was batched with. A request not
answered within ``timeout_s`` gets 503 and is dropped from the queue.

Imports no training code (sidrec.train, lightning).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import json
import math
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Annotated, Any, Optional, Union

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from sidrec.errors import ConfigError, DataError, SidrecError
from sidrec.recommender import Recommendation, Recommender

API_KEY_ENV = "SIDREC_API_KEY"
MAX_ID_CHARS = 256  # item and user ids in requests


@dataclass
class ServeSettings:
    max_batch: int = 64  # histories per beam search
    max_wait_ms: float = 1.0  # how long the worker waits for more requests once one is queued
    max_k: int = 100  # largest k a request may ask for
    max_beams: int = 200  # widest beam search a request may cause (k + its exclusions; decode.num_beams)
    max_history_len: int = 1000  # longest history accepted (the model reads the last model.max_history)
    max_histories: int = 256  # histories per /recommend request
    max_new_items: int = 1000  # items per POST /items
    max_field_chars: int = 20000  # characters of one text field of a new item
    max_body_bytes: int = 1048576  # request body size (413 above)
    max_queue: int = 1024  # histories waiting for the model; more get 503 + Retry-After
    timeout_s: float = 30.0  # a /recommend not answered by then gets 503
    threads: int = 0  # torch intra-op threads (0 = torch's default)
    api_key: str = ""  # required for POST /items (default: the SIDREC_API_KEY environment variable)
    auth: str = "writes"  # writes | all (the key is required for reads as well)

    @classmethod
    def from_pairs(cls, pairs: dict[str, str]) -> "ServeSettings":
        """Takes the ServeSettings keys out of ``pairs`` (key=value strings)."""
        kwargs = {}
        for f in fields(cls):
            if f.name in pairs:
                raw = pairs.pop(f.name)
                typ = {"int": int, "float": float, "str": str}.get(f.type, f.type)
                try:
                    kwargs[f.name] = typ(raw)
                except ValueError:
                    raise ConfigError(f"{f.name}={raw!r}: expected {'an integer' if typ is int else 'a number'}") from None
        kwargs.setdefault("api_key", os.environ.get(API_KEY_ENV, ""))
        return cls(**kwargs).checked()

    def checked(self) -> "ServeSettings":
        for name in ("max_batch", "max_k", "max_beams", "max_history_len", "max_histories", "max_new_items",
                     "max_field_chars", "max_body_bytes", "max_queue"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)}: must be >= 1")
        if not (self.max_wait_ms >= 0 and self.threads >= 0 and self.timeout_s > 0):
            raise ConfigError("max_wait_ms and threads must be >= 0, timeout_s > 0")
        if self.max_k > self.max_beams:
            raise ConfigError(f"max_k={self.max_k} exceeds max_beams={self.max_beams}")
        if self.auth not in ("writes", "all"):
            raise ConfigError(f"auth={self.auth!r}: expected writes or all")
        if self.auth == "all" and not self.api_key:
            raise ConfigError(f"auth=all needs api_key=... (or the {API_KEY_ENV} environment variable)")
        return self

    def public(self) -> dict:
        """The settings /health shows: no secret."""
        return {k: v for k, v in asdict(self).items() if k != "api_key"}


# --- request and response schemas ---------------------------------------------------------------
ItemId = Annotated[
    # pydantic refuses lone surrogates in a StrictStr; bounded ints keep str(id) cheap
    Union[Annotated[StrictStr, Field(max_length=MAX_ID_CHARS)],
          Annotated[StrictInt, Field(ge=-(2**63), lt=2**63)]],
    Field(description="item id or ASIN"),
]


class RecommendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    history: Optional[list[ItemId]] = Field(None, description="one history, oldest first")
    histories: Optional[list[list[ItemId]]] = Field(None, description="several histories (instead of history)")
    k: StrictInt = Field(10, description="number of items per history")
    user_id: Optional[ItemId] = Field(None, description="user of `history` (models with user tokens)")
    user_ids: Optional[list[Optional[ItemId]]] = Field(None, description="users of `histories`")
    exclude: Optional[list[ItemId]] = Field(None, description="items never to return for `history`")
    excludes: Optional[list[list[ItemId]]] = Field(None, description="per-history exclusions for `histories`")


class Item(BaseModel):
    index: int
    item_id: str
    asin: Optional[str] = None
    title: Optional[str] = None
    sid: list[int]
    score: Optional[float] = Field(None, description="log-probability of the SID (recommend), "
                                   "cosine similarity (similar), null otherwise")


class Ranked(BaseModel):
    items: list[Item]
    skipped: list[str] = Field(default_factory=list, description="unknown items dropped (decode.unknown_items=skip)")


class RecommendResponse(BaseModel):
    items: Optional[list[Item]] = Field(None, description="for `history`")
    skipped: Optional[list[str]] = None
    results: Optional[list[Ranked]] = Field(None, description="for `histories`, in order")


class NewItems(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: list[dict[str, Any]] = Field(..., description="objects with item_id and text fields (title, brand, "
                                        "categories, price, description), as in items.jsonl")


class AddedItems(BaseModel):
    added: list[Item]
    num_items: int
    generation: int


def item_json(r: Recommendation) -> dict:
    score = None if r.score is None or math.isnan(r.score) or math.isinf(r.score) else r.score
    return {"index": r.index, "item_id": r.item_id, "asin": r.asin, "title": r.title, "sid": r.sid, "score": score}


class AsciiJSONResponse(JSONResponse):
    """JSON with non-ASCII escaped: an echoed lone surrogate cannot fail the encoding."""

    def render(self, content) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")


def _error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return AsciiJSONResponse({"detail": message}, status_code=status, headers=headers)


def _describe_validation(exc: RequestValidationError) -> tuple[int, str]:
    errors = exc.errors()
    for err in errors:
        if err.get("type") == "json_invalid":
            ctx = err.get("ctx") or {}
            reason = ctx.get("error", err.get("msg", ""))
            loc = err.get("loc", ())
            where = f" at position {loc[1]}" if len(loc) > 1 and isinstance(loc[1], int) else ""
            return 400, f"malformed JSON{where}: {reason}"
    parts = []
    for err in errors[:5]:
        loc = ".".join(str(x) for x in err.get("loc", ()) if x != "body") or "body"
        if err.get("type") == "missing" and loc == "body":
            parts.append("request body is missing (send a JSON object)")
            continue
        parts.append(f"{loc}: {err.get('msg')}")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return 422, "; ".join(parts) + more


# --- micro-batching -----------------------------------------------------------------------------
class Overloaded(Exception):
    """The queue is full or the request waited too long: 503 with Retry-After."""


@dataclass
class Job:
    histories: list[list[str]]
    k: int
    user_ids: list
    excludes: list[list[str]]
    future: asyncio.Future

    @property
    def key(self) -> tuple[int, int]:
        return self.k, max((len(e) for e in self.excludes), default=0)


def model_executor(threads: int = 0) -> ThreadPoolExecutor:
    """The one thread that runs all torch work of the service (loading, beam search, cold start).

    One thread on purpose: torch's OpenMP pool belongs to the thread that uses it, and on a small
    CPU a second pool (say, the model loaded in the main thread and run in a worker) made a
    single request ~1.5x slower on 2 cores. ``threads`` sets that thread's intra-op threads."""
    import torch

    def init():
        if threads:
            torch.set_num_threads(threads)

    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="sidrec-model", initializer=init)


class MicroBatcher:
    def __init__(self, state: "ServerState", settings: ServeSettings, executor: ThreadPoolExecutor):
        self.state, self.settings = state, settings
        self.queue: asyncio.Queue[Job] = asyncio.Queue()
        self.queued = 0  # histories waiting in the queue (bounded by settings.max_queue)
        self.executor = executor
        self.batches = self.requests = self.histories = self.max_batch_seen = 0
        self.rejected = self.timed_out = 0
        self._carry: Job | None = None
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def submit(self, job: Job):
        if self.queued + len(job.histories) > self.settings.max_queue:
            self.rejected += 1
            raise Overloaded(f"{self.queued} histories are waiting for the model (max_queue="
                             f"{self.settings.max_queue}); retry shortly")
        self.queued += len(job.histories)
        self.queue.put_nowait(job)
        try:
            return await asyncio.wait_for(asyncio.shield(job.future), self.settings.timeout_s)
        except asyncio.TimeoutError:
            self.timed_out += 1
            raise Overloaded(f"no answer within timeout_s={self.settings.timeout_s:g} s; retry shortly") from None
        finally:
            job.future.cancel()  # no-op once answered; otherwise the worker skips it

    def _take(self, job: Job) -> Job | None:
        self.queued -= len(job.histories)
        return None if job.future.done() else job  # timed out or client gone: not worth a beam search

    async def _gather(self) -> list[Job]:
        loop = asyncio.get_running_loop()
        first = self._carry
        self._carry = None
        while first is None:
            first = self._take(await self.queue.get())
        batch, size = [first], len(first.histories)
        deadline = loop.time() + self.settings.max_wait_ms / 1000
        while size < self.settings.max_batch:
            try:
                job = self._take(self.queue.get_nowait())
            except asyncio.QueueEmpty:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                await asyncio.sleep(min(remaining, 0.0005))
                continue
            if job is None:
                continue
            if size + len(job.histories) > self.settings.max_batch:
                self._carry = job  # starts the next batch
                break
            batch.append(job)
            size += len(job.histories)
        return batch

    async def _run(self) -> None:
        while True:
            batch = await self._gather()
            try:
                await self._process(batch)
            except Exception as exc:  # noqa: BLE001 - never let the worker die; fail this batch's requests
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(exc)

    async def _process(self, batch: list[Job]) -> None:
        loop = asyncio.get_running_loop()
        rec = self.state.rec  # one catalog for the whole batch (POST /items swaps it between batches)
        groups: dict[tuple[int, int], list[Job]] = {}
        for job in batch:
            groups.setdefault(job.key, []).append(job)
        self.batches += 1
        self.requests += len(batch)
        self.histories += sum(len(j.histories) for j in batch)
        self.max_batch_seen = max(self.max_batch_seen, sum(len(j.histories) for j in batch))
        for (k, _), jobs in groups.items():
            histories = [h for j in jobs for h in j.histories]
            users = [u for j in jobs for u in j.user_ids]
            excludes = [e for j in jobs for e in j.excludes]
            try:
                results = await loop.run_in_executor(
                    self.executor, functools.partial(rec.recommend_many, histories, k, users, excludes))
            except Exception as exc:  # noqa: BLE001 - handed to the waiting requests
                for j in jobs:
                    if not j.future.done():
                        j.future.set_exception(exc)
                continue
            start = 0
            for j in jobs:
                part = results[start:start + len(j.histories)]
                start += len(j.histories)
                if not j.future.done():  # the client may have gone away
                    j.future.set_result(part)


class ServerState:
    def __init__(self, rec: Recommender, settings: ServeSettings, executor: ThreadPoolExecutor):
        self.rec, self.settings, self.executor = rec, settings, executor
        self.batcher = MicroBatcher(self, settings, executor)
        self.add_lock = asyncio.Lock()
        self.started = time.time()
        self.generation = 0


def server_state(request: Request) -> ServerState:
    return request.app.state.sidrec


# --- access -------------------------------------------------------------------------------------
def _check_key(request: Request, required: bool) -> None:
    settings = server_state(request).settings
    if not required:
        return
    if not settings.api_key:
        raise HTTPException(403, f"writes are disabled: start the service with api_key=... (or {API_KEY_ENV})")
    given = request.headers.get("x-api-key") or ""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if not given and scheme.lower() == "bearer":
        given = token.strip()
    if not hmac.compare_digest(given.encode("utf-8", "replace"), settings.api_key.encode("utf-8")):
        raise HTTPException(401, "missing or wrong API key (send X-API-Key: <key> or Authorization: Bearer <key>)",
                            headers={"WWW-Authenticate": "Bearer"})


def reader(request: Request) -> None:
    _check_key(request, server_state(request).settings.auth == "all")


def writer(request: Request) -> None:
    _check_key(request, True)


class BodyLimit:
    """ASGI middleware: a body over ``limit`` bytes gets 413 before anything parses it, whether
    announced by Content-Length or streamed in chunks."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length", b"0")
        too_big = not declared.isdigit() or int(declared) > self.limit
        chunks, size, more = [], 0, not too_big
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            too_big = size > self.limit
            if too_big:
                break
        if too_big:
            response = _error(413, f"request body over max_body_bytes={self.limit}", {"Connection": "close"})
            return await response(scope, receive, send)
        body, sent = b"".join(chunks), False

        async def replay():
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


# --- request checks -----------------------------------------------------------------------------
def check_history(rec: Recommender, settings: ServeSettings, history: list, row: str) -> tuple[list[str], list[str]]:
    if not history:
        raise HTTPException(422, f"{row} is empty: give at least one item id (the model conditions on the history)")
    if len(history) > settings.max_history_len:
        raise HTTPException(422, f"{row} has {len(history)} items; at most {settings.max_history_len} are "
                                 f"accepted (the model reads the last {rec.cfg.model.max_history})")
    items = [str(x) for x in history]
    unknown = [x for x in items if x not in rec.item_index]
    if not unknown:
        return items, []
    if rec.cfg.decode.unknown_items != "skip":
        shown = ", ".join(repr(x) for x in unknown[:10]) + (", ..." if len(unknown) > 10 else "")
        raise HTTPException(422, f"{row}: {len(unknown)} item(s) not in the catalog: {shown}")
    kept = [x for x in items if x in rec.item_index]
    if not kept:
        raise HTTPException(422, f"{row}: none of its items is in the catalog (all were skipped)")
    return kept, unknown


def check_exclude(rec: Recommender, settings: ServeSettings, exclude: list | None, k: int, row: str) -> list[str]:
    items = list(dict.fromkeys(str(x) for x in exclude or []))
    if len(items) > settings.max_history_len:
        raise HTTPException(422, f"exclusions of {row}: {len(items)} items; at most {settings.max_history_len}")
    if k + len(items) > settings.max_beams:
        raise HTTPException(422, f"{row}: k={k} plus {len(items)} exclusions needs a beam of {k + len(items)}; "
                                 f"at most max_beams={settings.max_beams}")
    unknown = [x for x in items if x not in rec.item_index]
    if unknown:
        raise HTTPException(422, f"exclusions of {row}: item(s) not in the catalog: "
                                 + ", ".join(repr(x) for x in unknown[:10]))
    return items


def check_k(k: int, settings: ServeSettings) -> None:
    if not 1 <= k <= settings.max_k:
        raise HTTPException(422, f"k={k} is out of range: must be between 1 and {settings.max_k}")


def _requests_of(body: RecommendRequest, settings: ServeSettings) -> tuple[bool, list, list, list]:
    """(single, histories, user ids, exclusions) of a /recommend body, its shape checked."""
    if (body.history is None) == (body.histories is None):
        raise HTTPException(422, "give exactly one of `history` (one list of item ids) or `histories` (a list of lists)")
    if body.history is not None:
        if body.user_ids is not None or body.excludes is not None:
            raise HTTPException(422, "with `history`, use `user_id` and `exclude` (not `user_ids`/`excludes`)")
        return True, [body.history], [body.user_id], [body.exclude]
    if body.user_id is not None or body.exclude is not None:
        raise HTTPException(422, "with `histories`, use `user_ids` and `excludes` (not `user_id`/`exclude`)")
    raw = body.histories
    if not raw:
        raise HTTPException(422, "`histories` is empty: give at least one history")
    if len(raw) > settings.max_histories:
        raise HTTPException(422, f"{len(raw)} histories in one request; at most {settings.max_histories}")
    users = body.user_ids if body.user_ids is not None else [None] * len(raw)
    excludes = body.excludes if body.excludes is not None else [None] * len(raw)
    for name, values in (("user_ids", users), ("excludes", excludes)):
        if len(values) != len(raw):
            raise HTTPException(422, f"`{name}` has {len(values)} entries for {len(raw)} histories")
    return False, raw, users, excludes


# --- routes -------------------------------------------------------------------------------------
router = APIRouter(default_response_class=AsciiJSONResponse)


@router.post("/recommend", response_model=RecommendResponse, response_model_exclude_none=True,
             dependencies=[Depends(reader)],
             responses={400: {"description": "malformed JSON"}, 422: {"description": "invalid request"},
                        503: {"description": "overloaded; retry after Retry-After seconds"}})
async def recommend(body: RecommendRequest, request: Request):
    """Top-k items for one history (`history`) or several (`histories`), by item id or ASIN."""
    s = server_state(request)
    rec, settings = s.rec, s.settings
    check_k(body.k, settings)
    single, raw, users, excludes = _requests_of(body, settings)
    histories, skipped, exclusions = [], [], []
    for r, history in enumerate(raw):
        row = "history" if single else f"histories[{r}]"
        kept, unknown = check_history(rec, settings, history, row)
        histories.append(kept)
        skipped.append(unknown)
        exclusions.append(check_exclude(rec, settings, excludes[r], body.k, row))
    job = Job(histories, body.k, [None if u is None else str(u) for u in users], exclusions,
              asyncio.get_running_loop().create_future())
    results = await s.batcher.submit(job)
    ranked = [{"items": [item_json(x) for x in res], "skipped": sk} for res, sk in zip(results, skipped)]
    if single:
        out = {"items": ranked[0]["items"]}
        if skipped[0]:
            out["skipped"] = skipped[0]
        return AsciiJSONResponse(out)
    return AsciiJSONResponse({"results": ranked})


def _known(rec: Recommender, item_id: str) -> None:
    if item_id not in rec.item_index:
        raise HTTPException(404, f"item {item_id!r} is not in the catalog")


@router.get("/items/{item_id}", response_model=Item, dependencies=[Depends(reader)],
            responses={404: {"description": "unknown item"}})
async def get_item(item_id: str, request: Request):
    """An item of the catalog by item id or ASIN, with its SID (score is null)."""
    rec = server_state(request).rec
    _known(rec, item_id)
    return AsciiJSONResponse(item_json(rec.describe(item_id)))


@router.get("/items/{item_id}/similar", response_model=Ranked, dependencies=[Depends(reader)],
            responses={404: {"description": "unknown item"}})
async def similar(item_id: str, request: Request, k: Annotated[int, Query()] = 10):
    """Items sharing the longest SID prefix with the item, then nearest by text embedding."""
    s = server_state(request)
    _known(s.rec, item_id)
    check_k(k, s.settings)
    items = await asyncio.to_thread(s.rec.similar_items, item_id, k)
    return AsciiJSONResponse({"items": [item_json(x) for x in items], "skipped": []})


@router.post("/items", response_model=AddedItems, status_code=201, dependencies=[Depends(writer)],
             responses={401: {"description": "missing or wrong API key"}, 403: {"description": "writes disabled"},
                        409: {"description": "id already in the catalog"}, 422: {"description": "invalid items"}})
async def add_items(body: NewItems, request: Request):
    """Cold start: embeds the items with the run's encoder, codes them with the frozen tokenizer,
    extends the SID table atomically and rebuilds the trie; they are recommendable at once."""
    from sidrec.cold_start import add_items as add, check_item_value

    s = server_state(request)
    if not body.items:
        raise HTTPException(422, "`items` is empty: give at least one item")
    if len(body.items) > s.settings.max_new_items:
        raise HTTPException(422, f"{len(body.items)} items in one request; at most {s.settings.max_new_items}")
    for n, item in enumerate(body.items):
        check_item_value(item, f"new item {n}", s.settings.max_field_chars)  # DataError -> 422
    if s.rec.run_dir is None:
        raise HTTPException(409, "this service was not started from a run directory; cannot add items")
    loop = asyncio.get_running_loop()
    async with s.add_lock:
        rec = s.rec
        # In the model thread (all torch work stays on one thread); recommendations wait meanwhile.
        try:
            result = await loop.run_in_executor(s.executor, add, rec.run_dir, body.items, rec.cfg)
        except DataError as exc:
            return _error(409 if "already in the catalog" in str(exc) else 422, str(exc))
        new = await loop.run_in_executor(s.executor, rec.with_catalog, result.dataset, result.sid_table,
                                         result.embeddings)
        s.rec, s.generation = new, result.generation  # requests batched from now on see the new items
    added = [item_json(new._describe(i, float("nan"))) for i in result.added]
    return AsciiJSONResponse({"added": added, "num_items": new.dataset.num_items, "generation": result.generation},
                             status_code=201)


@router.get("/health")
async def health(request: Request):
    """Liveness, catalog size and micro-batching counters (open to all: no paths, no secrets)."""
    s = server_state(request)
    b = s.batcher
    return {"status": "ok", "num_items": s.rec.dataset.num_items, "catalog_generation": s.generation,
            "uptime_s": round(time.time() - s.started, 1), "settings": s.settings.public(),
            "batching": {"batches": b.batches, "requests": b.requests, "histories": b.histories,
                         "max_batch_seen": b.max_batch_seen, "queued": b.queued, "rejected": b.rejected,
                         "timed_out": b.timed_out}}


# --- the app ------------------------------------------------------------------------------------
async def _on_validation_error(request: Request, exc: RequestValidationError):
    return _error(*_describe_validation(exc))


async def _on_sidrec_error(request: Request, exc: SidrecError):
    return _error(422, str(exc))


async def _on_http_error(request: Request, exc: HTTPException):
    return _error(exc.status_code, str(exc.detail), exc.headers)


async def _on_overloaded(request: Request, exc: Overloaded):
    return _error(503, str(exc), {"Retry-After": "1"})


def create_app(rec: Recommender, settings: ServeSettings | None = None,
               executor: ThreadPoolExecutor | None = None) -> FastAPI:
    """The app over ``rec``. ``executor``: the thread that loaded ``rec`` (see model_executor)."""
    settings = (settings or ServeSettings()).checked()
    if rec.cfg.decode.num_beams > settings.max_beams:
        raise ConfigError(f"decode.num_beams={rec.cfg.decode.num_beams} exceeds max_beams={settings.max_beams}")

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        state = ServerState(rec, settings, executor or model_executor(settings.threads))
        if rec.run_dir is not None:
            from sidrec.cold_start import current_generation

            state.generation = current_generation(rec.run_dir)
        state.batcher.start()
        app.state.sidrec = state
        try:
            yield
        finally:
            await state.batcher.stop()

    app = FastAPI(title="sidrec", version="0.1.0", lifespan=lifespan, default_response_class=AsciiJSONResponse,
                  description="Generative recommendation with semantic IDs: recommendations from a trained run.")
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(SidrecError, _on_sidrec_error)
    app.add_exception_handler(HTTPException, _on_http_error)
    app.add_exception_handler(Overloaded, _on_overloaded)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.include_router(router)
    return app


def serve(run_dir: str | Path, host: str = "127.0.0.1", port: int = 8000, settings: ServeSettings | None = None,
          overrides: list[str] | None = None, device: str = "cpu") -> None:
    import uvicorn

    settings = settings or ServeSettings()
    executor = model_executor(settings.threads)
    rec = executor.submit(Recommender.load, run_dir, device, overrides).result()
    app = create_app(rec, settings, executor)
    auth = "off for reads, " if settings.auth == "writes" else ""
    auth += "key set" if settings.api_key else "writes disabled (no api_key)"
    print(f"sidrec: serving {run_dir} ({rec.dataset.num_items} items) on http://{host}:{port} "
          f"(docs at /docs; auth: {auth})", file=sys.stderr, flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)


def serve_keys() -> list[str]:
    from sidrec.config import describe_keys

    return ["  run_dir=<a finished run directory>", "  host=127.0.0.1", "  port=8000", "  device=cpu",
            *describe_keys(ServeSettings)]


def main(args: list[str]) -> None:
    """``sidrec serve run_dir=... [host=127.0.0.1] [port=8000] [device=cpu] [service keys] [decode.*=...]``"""
    from sidrec.config import parse_overrides, user_path

    pairs = dict(parse_overrides(args))
    if "run_dir" not in pairs:
        raise ConfigError("sidrec serve needs run_dir=<a finished run directory>")
    run_dir = user_path(pairs.pop("run_dir"))
    host = pairs.pop("host", "127.0.0.1")
    try:
        port = int(pairs.pop("port", "8000"))
    except ValueError:
        raise ConfigError("port must be an integer") from None
    device = pairs.pop("device", "cpu")
    settings = ServeSettings.from_pairs(pairs)
    serve(run_dir, host, port, settings, [f"{k}={v}" for k, v in pairs.items()], device)
