"""HTTP service over a finished run: ``sidrec serve run_dir=runs/... [port=8000 ...]``.

Endpoints (OpenAPI docs at ``/docs``):

    POST /recommend             one history ({"history": [...]}) or many ({"histories": [[...], ...]})
    GET  /items/{item_id}       an item (by item id or ASIN) with its SID
    GET  /items/{item_id}/similar?k=10   items sharing its SID prefix, then nearest by embedding
    POST /items                 cold start: add items, recommendable at once (sidrec.cold_start)
    GET  /health                status, catalog size, micro-batching counters (no file system paths)
    GET  /                      a page to look at the run in a browser (sidrec.page: its read routes too)

Bad requests get a 4xx whose ``detail`` (a string) says what is wrong: malformed JSON (400, with its
position), a missing or wrong API key (401, 403), a body over ``max_body_bytes`` (413), a body that
is not JSON (415), fields of the wrong type or over a limit, unknown items (422), unknown item ids in
the path (404); an overloaded service answers 503 with Retry-After; never a 500. Echoed values are
cut short. Responses are ASCII JSON, so no input text can make one unencodable. The OpenAPI document
(``/openapi.json``) states every status, limit and field type that the checks enforce, except what
depends on the catalog or on several fields at once (tests/test_serve.py checks it with schemathesis).

Writes (POST /items) need ``api_key`` (or the SIDREC_API_KEY environment variable); without one
configured they are refused. ``auth=all`` requires the key for reads as well.

Micro-batching: every /recommend request goes to one asyncio queue, bounded at ``max_queue``
histories; one worker task takes the first waiting request, gathers more until ``max_batch``
histories or ``max_wait_ms`` have passed, and runs them as one ``Recommender.recommend_many`` call
(one beam search) in a dedicated thread, so the event loop keeps accepting requests meanwhile.
Requests queued while a batch runs form the next one. Requests are grouped by (k, number of
exclusions), so a request's result does not depend on what it was batched with. A request not
answered within ``timeout_s`` gets 503 and is dropped from the queue.

Adding items (POST /items) never holds the model thread: a second thread (the catalog thread)
embeds, codes and writes the new catalog generation and builds its lookups while the model thread
keeps answering from the current one; then the event loop swaps the new one in with one
assignment. A batch reads the catalog once, so it sees the old generation or the new one, whole.

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
import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Annotated, Any, Optional, Union

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictInt, StrictStr
from starlette.exceptions import HTTPException as StarletteHTTPException

from sidrec.cold_start import whole_number
from sidrec.data.dataset import MAX_ID_CHARS, MAX_ID_INT
from sidrec.errors import ConfigError, DataError, SidrecError, brief
from sidrec.recommender import Recommendation, Recommender

API_KEY_ENV = "SIDREC_API_KEY"
JSON_ROUTES = ("/recommend", "/items")  # the routes that take a JSON body (POST)


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
Integer = Annotated[StrictInt, BeforeValidator(whole_number)]  # no strings, no booleans, no fractions
ItemId = Annotated[
    # pydantic refuses lone surrogates in a StrictStr; bounded ints keep str(id) cheap
    Union[Annotated[StrictStr, Field(max_length=MAX_ID_CHARS)],
          Annotated[Integer, Field(ge=-MAX_ID_INT, le=MAX_ID_INT - 1)]],
    Field(description="item id or ASIN"),
]


# "Exactly one of history / histories", with the per-history fields of the other form absent or null.
_ONE_FORM = [
    {"title": "one history", "required": ["history"],
     "properties": {"history": {"type": "array"}, "histories": {"type": "null"}, "user_ids": {"type": "null"},
                    "excludes": {"type": "null"}}},
    {"title": "several histories", "required": ["histories"],
     "properties": {"histories": {"type": "array"}, "history": {"type": "null"}, "user_id": {"type": "null"},
                    "exclude": {"type": "null"}}},
]


class RecommendRequest(BaseModel):
    """Exactly one of `history` (with `user_id`, `exclude`) or `histories` (with `user_ids` and
    `excludes`, one entry per history). Ids must be in the catalog (else 422, or skipped with
    decode.unknown_items=skip), and `k` plus a history's distinct exclusions at most max_beams."""
    model_config = ConfigDict(extra="forbid", json_schema_extra={"oneOf": _ONE_FORM})
    history: Optional[list[ItemId]] = Field(None, description="one history, oldest first")
    histories: Optional[list[list[ItemId]]] = Field(None, description="several histories (instead of history)")
    k: Integer = Field(10, description="number of items per history (1 to max_k)")
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
    # Checked by sidrec.cold_start.check_new_item; the document's NewItem schema says the same.
    items: list[dict[str, Any]] = Field(..., description="objects with item_id and text fields (title, brand, "
                                        "categories, price, description), as in items.jsonl")


class AddedItems(BaseModel):
    added: list[Item]
    num_items: int
    generation: int


class ErrorMessage(BaseModel):
    detail: str = Field(..., description="what is wrong, in one line (echoed values are cut short)")


class Batching(BaseModel):
    batches: int
    requests: int
    histories: int
    max_batch_seen: int
    queued: int
    rejected: int
    timed_out: int


class Health(BaseModel):
    status: str
    num_items: int
    catalog_generation: int
    uptime_s: float
    settings: dict[str, Any] = Field(..., description="the service settings (no key)")
    batching: Batching


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
        # field names are the client's: a long one is cut short
        loc = ".".join(x if len(x) <= 40 else brief(x, 40) for x in map(str, err.get("loc", ())) if x != "body") \
            or "body"
        if err.get("type") == "missing" and loc == "body":
            parts.append("request body is missing (send a JSON object)")
            continue
        parts.append(f"{loc}: {err.get('msg')}")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return 422, "; ".join(parts) + more


_JSON_TOKEN = re.compile(rb'"(?:[^"\\]+|\\.)*"|[\[\]{}]', re.DOTALL)  # a string (skipped whole) or a bracket


def _deepest(body: bytes) -> tuple[int, int]:
    """(depth, byte offset) of the first place where ``body`` is nested deepest (brackets in strings
    do not count). Only for a body the parser gave up on: a loop per bracket and string."""
    depth = deepest = at = 0
    for match in _JSON_TOKEN.finditer(body):
        char = body[match.start()]
        if char in b"[{":
            depth += 1
            if depth > deepest:
                deepest, at = depth, match.start()
        elif char in b"]}":
            depth -= 1
    return deepest, at


def describe_parse_error(exc: BaseException, body: bytes) -> str:
    """What the JSON parser choked on, with the position, for the errors it reports without one."""
    if isinstance(exc, UnicodeDecodeError):
        return (f"malformed JSON at byte {exc.start}: not valid {exc.encoding.upper()} "
                f"({exc.reason}: {exc.object[exc.start:exc.start + 4]!r})")
    if isinstance(exc, RecursionError):
        depth, at = _deepest(body)
        return f"malformed JSON at byte {at}: nested too deeply to parse ({depth} levels)"
    digits = sys.get_int_max_str_digits()
    long_number = re.search(rb"\d{%d,}" % (digits + 1), body) if digits else None
    if isinstance(exc, ValueError) and long_number:
        return (f"malformed JSON at byte {long_number.start()}: a number of {len(long_number[0])} digits "
                f"(at most {digits})")
    return f"malformed JSON: {brief(str(exc), 200)}"


def is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


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
    """The one thread that runs the model (loading it, beam search).

    One thread on purpose: torch's OpenMP pool belongs to the thread that uses it, and on a small
    CPU a second pool (say, the model loaded in the main thread and run in a worker) made a
    single request ~1.5x slower on 2 cores. ``threads`` sets that thread's intra-op threads.
    Adding items has a thread of its own (catalog_executor), busy only while it adds."""
    import torch

    def init():
        if threads:
            torch.set_num_threads(threads)

    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="sidrec-model", initializer=init)


def catalog_executor(threads: int = 0) -> ThreadPoolExecutor:
    """The thread that prepares a new catalog generation for POST /items (embedding, codes, files,
    lookups) beside the model thread, so that adding items never holds recommendations back. Its
    torch pool has half the model thread's threads (at least one): the two share the cores."""
    import torch

    def init():
        torch.set_num_threads(max(1, (threads or torch.get_num_threads()) // 2))

    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="sidrec-catalog", initializer=init)


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
        self.catalog_executor = catalog_executor(settings.threads)
        self.add_lock = asyncio.Lock()  # one POST /items at a time
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


BODY_KEY = "sidrec.body"  # the request body, kept in the ASGI scope for the parse-error handler


class BodyCheck:
    """ASGI middleware: a body over ``limit`` bytes gets 413 before anything parses it, whether
    announced by Content-Length or streamed in chunks; a body for a JSON route that is not declared
    JSON (Content-Type application/json or application/*+json) gets 415."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length", b"0")
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
        content_type = headers.get(b"content-type", b"").decode("latin-1")
        if scope["method"] == "POST" and scope["path"] in JSON_ROUTES and (body or content_type) \
                and not is_json(content_type):
            said = f"Content-Type {brief(content_type, 60)}" if content_type else "no Content-Type"
            return await _error(415, f"the body must be JSON, sent with Content-Type: application/json "
                                     f"(got {said})")(scope, receive, send)
        scope[BODY_KEY] = body

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
        shown = ", ".join(brief(x) for x in unknown[:10]) + (", ..." if len(unknown) > 10 else "")
        raise HTTPException(422, f"{row}: {len(unknown)} item(s) not in the catalog: {shown}")
    kept = [x for x in items if x in rec.item_index]
    if not kept:
        raise HTTPException(422, f"{row}: none of its items is in the catalog (all were skipped)")
    return kept, unknown


def check_exclude(rec: Recommender, settings: ServeSettings, exclude: list | None, k: int, row: str) -> list[str]:
    items = list(dict.fromkeys(str(x) for x in exclude or []))
    if len(items) > settings.max_history_len:
        raise HTTPException(422, f"exclusions of {row}: {len(items)} distinct items; "
                                 f"at most {settings.max_history_len}")
    if k + len(items) > settings.max_beams:
        raise HTTPException(422, f"{row}: k={k} plus {len(items)} exclusions needs a beam of {k + len(items)}; "
                                 f"at most max_beams={settings.max_beams}")
    unknown = [x for x in items if x not in rec.item_index]
    if unknown:
        raise HTTPException(422, f"exclusions of {row}: item(s) not in the catalog: "
                                 + ", ".join(brief(x) for x in unknown[:10]))
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

_ERRORS = {
    400: "malformed JSON; the detail gives the position",
    401: "missing or wrong API key (X-API-Key: <key> or Authorization: Bearer <key>)",
    403: "writes are disabled: the service was started without an API key",
    404: "the item is not in the catalog",
    409: "an id is already in the catalog, or the service has no run directory to add items to",
    413: "request body over max_body_bytes",
    415: "the body is not JSON (send Content-Type: application/json)",
    422: "invalid request: the detail names the field and what is wrong with it",
    503: "overloaded: retry after Retry-After seconds",
}
_ERROR_HEADERS = {
    401: {"WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}},
    503: {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}},
}


def error_responses(*codes: int) -> dict:
    """The error responses of a route: each has a one-line ``detail`` (ErrorMessage)."""
    return {code: {"model": ErrorMessage, "description": _ERRORS[code],
                   **({"headers": _ERROR_HEADERS[code]} if code in _ERROR_HEADERS else {})} for code in codes}


@router.post("/recommend", response_model=RecommendResponse, response_model_exclude_none=True,
             dependencies=[Depends(reader)],
             responses=error_responses(400, 413, 415, 422, 503))
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


def check_known(rec: Recommender, item_id: str) -> None:
    if item_id not in rec.item_index:
        raise HTTPException(404, f"item {brief(item_id)} is not in the catalog")


@router.get("/items/{item_id}", response_model=Item, dependencies=[Depends(reader)], responses=error_responses(404))
async def get_item(item_id: str, request: Request):
    """An item of the catalog by item id or ASIN, with its SID (score is null)."""
    rec = server_state(request).rec
    check_known(rec, item_id)
    return AsciiJSONResponse(item_json(rec.describe(item_id)))


@router.get("/items/{item_id}/similar", response_model=Ranked, dependencies=[Depends(reader)],
            responses=error_responses(404, 422))
async def similar(item_id: str, request: Request,
                  k: Annotated[int, Query(description="number of items (1 to max_k)")] = 10):
    """Items sharing the longest SID prefix with the item, then nearest by text embedding."""
    s = server_state(request)
    check_known(s.rec, item_id)
    check_k(k, s.settings)
    items = await asyncio.to_thread(s.rec.similar_items, item_id, k)
    return AsciiJSONResponse({"items": [item_json(x) for x in items], "skipped": []})


@router.post("/items", response_model=AddedItems, status_code=201, dependencies=[Depends(writer)],
             responses=error_responses(400, 401, 403, 409, 413, 415, 422))
async def add_items(body: NewItems, request: Request):
    """Cold start: embeds the items with the run's encoder, codes them with the frozen tokenizer,
    extends the SID table atomically and rebuilds the trie; they are recommendable at once.
    Recommendations go on meanwhile, from the catalog as it was until the new one is ready."""
    from sidrec.cold_start import check_new_item

    s = server_state(request)
    if not body.items:
        raise HTTPException(422, "`items` is empty: give at least one item")
    if len(body.items) > s.settings.max_new_items:
        raise HTTPException(422, f"{len(body.items)} items in one request; at most {s.settings.max_new_items}")
    for n, item in enumerate(body.items):
        check_new_item(item, f"new item {n}", s.settings.max_field_chars)  # DataError -> 422
    if s.rec.run_dir is None:
        raise HTTPException(409, "this service was not started from a run directory; cannot add items")
    # Shielded: a client that hangs up does not stop the swap once the catalog on disk has changed.
    try:
        new, result = await asyncio.shield(asyncio.ensure_future(_add_and_swap(s, body.items)))
    except DataError as exc:
        return _error(409 if "already in the catalog" in str(exc) else 422, str(exc))
    added = [item_json(new._describe(i, float("nan"))) for i in result.added]
    return AsciiJSONResponse({"added": added, "num_items": new.dataset.num_items, "generation": result.generation},
                             status_code=201)


async def _add_and_swap(s: "ServerState", items: list[dict]):
    async with s.add_lock:
        loop = asyncio.get_running_loop()
        new, result = await loop.run_in_executor(s.catalog_executor, s.rec.with_added_items, items)
        s.rec, s.generation = new, result.generation  # the swap: batches gathered from now on see the new items
        return new, result


@router.get("/health", response_model=Health)
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


async def _on_http_error(request: Request, exc: StarletteHTTPException):
    cause = exc.__cause__
    if exc.status_code == 400 and cause is not None and exc.detail == "There was an error parsing the body":
        # FastAPI's answer to what json.loads raised other than a JSONDecodeError: say what and where
        return _error(400, describe_parse_error(cause, request.scope.get(BODY_KEY, b"")))
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
            state.catalog_executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="sidrec", version="0.1.0", lifespan=lifespan, default_response_class=AsciiJSONResponse,
                  description="Generative recommendation with semantic IDs: recommendations from a trained run.")
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(SidrecError, _on_sidrec_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(Overloaded, _on_overloaded)
    app.add_middleware(BodyCheck, limit=settings.max_body_bytes)
    app.include_router(router)
    from sidrec.page.routes import router as page_router  # imported here: it builds on this module

    app.include_router(page_router)
    app.openapi = lambda: openapi_document(app, settings)
    return app


# --- the OpenAPI document -----------------------------------------------------------------------
def _array_branch(schema: dict) -> dict:
    """The array schema of a property that may also be null."""
    return next(b for b in schema.get("anyOf", [schema]) if b.get("type") == "array")


def _string(max_chars: int, **extra) -> dict:
    return {"type": "string", "maxLength": max_chars, **extra}


def new_item_schemas(max_chars: int) -> dict[str, dict]:
    """JSON schemas of a new item (NewItem) and of the values of its other fields (ItemValue1..8,
    by nesting depth): what sidrec.cold_start.check_new_item accepts, with ``max_chars`` the
    service's max_field_chars."""
    from sidrec.cold_start import MAX_DEPTH, NON_BLANK

    text = {"anyOf": [_string(max_chars), {"type": "null"}]}
    ident = min(MAX_ID_CHARS, max_chars)
    ref = "#/components/schemas/"
    schemas = {"NewItem": {
        "type": "object", "title": "NewItem", "required": ["item_id"],
        "description": "An item as in items.jsonl. Its ids (item_id, asin) must not be in the catalog yet (409) "
                       "nor given twice, and the run's data.text_template must find some text in it (422). "
                       "Other fields are kept as given.",
        "properties": {
            "item_id": {"anyOf": [_string(ident, minLength=1, pattern=NON_BLANK),
                                  {"type": "integer", "minimum": -MAX_ID_INT, "maximum": MAX_ID_INT - 1}],
                        "description": f"not blank, at most {ident} characters, or a 64-bit integer"},
            "asin": {"anyOf": [_string(ident), {"type": "null"}], "description": "a second id (optional)"},
            "title": text, "brand": text, "description": text,
            "price": {"anyOf": [{"type": "number"}, _string(max_chars), {"type": "null"}]},
            "categories": {"anyOf": [{"type": "array", "items": {"anyOf": [
                _string(max_chars), {"type": "array", "items": _string(max_chars)}]}}, {"type": "null"}],
                "description": "category paths, each a list of names (or a name)"},
        },
        "propertyNames": {"maxLength": max_chars},
        "additionalProperties": {"$ref": f"{ref}ItemValue1"},
    }}
    scalars = [_string(max_chars), {"type": "number"}, {"type": "boolean"}, {"type": "null"}]
    for depth in range(1, MAX_DEPTH + 1):
        if depth == MAX_DEPTH:  # what it holds would be nested too deeply
            containers = [{"type": "array", "maxItems": 0}, {"type": "object", "maxProperties": 0}]
        else:
            child = {"$ref": f"{ref}ItemValue{depth + 1}"}
            containers = [{"type": "array", "items": child},
                          {"type": "object", "additionalProperties": child, "propertyNames": {"maxLength": max_chars}}]
        schemas[f"ItemValue{depth}"] = {"title": f"ItemValue{depth}", "anyOf": scalars + containers,
                                        "description": f"a field value nested {depth} level(s) deep "
                                                       f"(at most {MAX_DEPTH})"}
    return schemas


def openapi_document(app: FastAPI, settings: ServeSettings) -> dict:
    """FastAPI's document, completed with what the request checks enforce beyond the models' types:
    the settings' limits, the new items' fields, access, examples from the catalog. What depends
    on the catalog (unknown or taken ids, text for the template, the de-dup digit) or on several
    fields at once (k plus exclusions within max_beams, one user id and exclusion list per history)
    is said in descriptions only."""
    if app.openapi_schema:
        return app.openapi_schema
    from fastapi.openapi.utils import get_openapi

    doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    schemas, paths = doc["components"]["schemas"], doc["paths"]
    # FastAPI's own 422 schema (a list of errors) is not what this service answers: ErrorMessage is.
    for operation in (op for path in paths.values() for op in path.values()):
        if "HTTPValidationError" in json.dumps(operation["responses"].get("422", {})):
            del operation["responses"]["422"]
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)

    request = schemas["RecommendRequest"]["properties"]
    _array_branch(request["history"]).update(minItems=1, maxItems=settings.max_history_len)
    histories = _array_branch(request["histories"])
    histories.update(minItems=1, maxItems=settings.max_histories)
    histories["items"].update(minItems=1, maxItems=settings.max_history_len)
    request["k"].update(minimum=1, maximum=settings.max_k)
    similar = paths["/items/{item_id}/similar"]["get"]
    next(p for p in similar["parameters"] if p["name"] == "k")["schema"].update(minimum=1, maximum=settings.max_k)
    schemas.update(new_item_schemas(settings.max_field_chars))
    schemas["NewItems"]["properties"]["items"] = {
        "type": "array", "minItems": 1, "maxItems": settings.max_new_items,
        "items": {"$ref": "#/components/schemas/NewItem"}, "title": "Items"}

    doc["components"]["securitySchemes"] = {"ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                                            "Bearer": {"type": "http", "scheme": "bearer"}}
    keyed = [paths["/items"]["post"]]
    if settings.auth == "all":
        keyed += [paths["/recommend"]["post"], paths["/items/{item_id}"]["get"], similar]
    for operation in keyed:
        operation["security"] = [{"ApiKey": []}, {"Bearer": []}]
        operation["responses"].update({str(k): v for k, v in openapi_errors(401).items()})

    from sidrec.page.routes import complete_document

    complete_document(doc, settings)

    state = getattr(app.state, "sidrec", None)
    if state is not None and state.rec.dataset.num_items:
        ids = [item["item_id"] for item in state.rec.dataset.items[:3]]
        paths["/recommend"]["post"]["requestBody"]["content"]["application/json"]["example"] = \
            {"history": ids, "k": min(5, settings.max_k)}
        for operation in (paths["/items/{item_id}"]["get"], similar):
            next(p for p in operation["parameters"] if p["name"] == "item_id")["example"] = ids[0]
    app.openapi_schema = doc
    return doc


def openapi_errors(*codes: int) -> dict:
    """OpenAPI response objects of ``codes`` as the routes' ``responses=error_responses(...)`` give them."""
    ref = {"$ref": "#/components/schemas/ErrorMessage"}
    return {code: {"description": _ERRORS[code], "content": {"application/json": {"schema": ref}},
                   **({"headers": _ERROR_HEADERS[code]} if code in _ERROR_HEADERS else {})} for code in codes}


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
          f"(the page at /, docs at /docs; auth: {auth})", file=sys.stderr, flush=True)
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
    port = pairs.pop("port", "8000")
    if not (port.isdigit() and 1 <= int(port) <= 65535):
        raise ConfigError(f"port={port!r}: expected an integer from 1 to 65535")
    port = int(port)
    device = pairs.pop("device", "cpu")
    settings = ServeSettings.from_pairs(pairs)
    serve(run_dir, host, port, settings, [f"{k}={v}" for k, v in pairs.items()], device)
