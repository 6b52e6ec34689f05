"""The page at ``/`` and the read-only routes it needs, on the service of ``sidrec serve``.

    GET /                          the page (static/index.html, with page.js and page.css)
    GET /run                       about the run: dataset, model, SID layout, decode settings, limits
    GET /search?q=...&limit=20     items by id, ASIN or title words
    GET /items/{id}/tree           the SID tree around an item: items sharing each prefix, collisions
    GET /items/{id}/neighbours?k=  nearest items by text embedding
    GET /users?split=test          a split's users with history lengths and targets (paged)
    GET /users/{user_id}?split=    a user's history and held-out target
    GET /codebook                  per-level utilisation, perplexity and usage; largest collision groups
    GET /map?limit=                the items on two principal components, with their first-level code

The data routes are reads behind the service's ``reader`` dependency (open unless ``auth=all``)
and answer errors as the other routes do: a one-line ``detail``, 404 for an unknown item or user in
the path, 422 for a bad parameter. The page and its two files are open and hold no data; the page
sends the API key only when one is typed in, for POST /items (and for reads under ``auth=all``).
Everything the page shows from the catalog is put into the page as text (``textContent``),
never as markup; a Content-Security-Policy allows scripts from this service only.
"""

from __future__ import annotations

import asyncio
from importlib import resources
from typing import Annotated, Literal, Optional

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from sidrec.errors import brief
from sidrec.page.explore import CatalogView
from sidrec.serve import (AsciiJSONResponse, Item, ServeSettings, error_responses, check_known, openapi_errors, check_k,
                          reader, server_state)

MAX_QUERY_CHARS = 200
MAX_LIST = 100  # items per list of /search, /items/{id}/tree, /users
DEFAULT_MAP_POINTS = 20000  # the map of a 10^5-item catalog shows every fifth item
MAX_MAP_POINTS = 200000

# Only these files are served, by name: no path from a request reaches the file system.
STATIC = {"page.js": "text/javascript; charset=utf-8", "page.css": "text/css; charset=utf-8"}
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                               "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


# --- response schemas ---------------------------------------------------------------------------
class RunInfo(BaseModel):
    dataset: str
    num_users: int
    num_items: int
    num_trained_items: int = Field(..., description="items the model was trained with; later ones were added")
    catalog_generation: int
    model_arch: str
    model_max_history: int = Field(..., description="history items the model reads (the last ones)")
    sid_levels: int = Field(..., description="raw code levels (the SID may have one more: the de-dup digit)")
    level_sizes: list[int]
    dedup: str
    num_beams: int
    exclude_history: bool
    cold_start_share: float = Field(..., description="share of the k slots kept for added items")
    writes_enabled: bool = Field(..., description="whether POST /items is possible (an API key is configured)")
    auth: str
    max_k: int
    max_history_len: int


class SearchResult(BaseModel):
    query: str
    total: int = Field(..., description="items matching, of which `items` are the first")
    items: list[Item]


class ItemDetails(Item):
    codes: list[int] = Field(..., description="raw tokenizer codes (the SID without its de-dup digit)")
    brand: Optional[str] = None
    price: Optional[str] = None
    categories: list[list[str]]
    description: Optional[str] = None
    added: bool = Field(..., description="added after training (cold start)")


class TreeItem(Item):
    collides: bool = Field(..., description="its raw code is the item's whole code")


class Branch(BaseModel):
    code: int
    count: int = Field(..., description="items under this code")
    own: bool = Field(..., description="the item's code at this level")


class TreeLevel(BaseModel):
    depth: int
    prefix: list[int] = Field(..., description="the item's first `depth` codes")
    count: int = Field(..., description="items sharing the prefix, the item included")
    items: list[TreeItem] = Field(..., description="the nearest of them by text embedding (score: cosine)")
    branches: list[Branch] = Field(..., description="the largest codes at this level under the previous prefix")
    num_branches: int


class ItemTree(BaseModel):
    item: ItemDetails
    levels: list[TreeLevel]
    collision_count: int = Field(..., description="items with the item's whole raw code, the item included")
    collisions: list[Item]


class UserRow(BaseModel):
    user_id: str
    history_length: int
    target: Item


class UserList(BaseModel):
    split: str
    total: int
    offset: int
    users: list[UserRow]


class UserHistory(BaseModel):
    user_id: str
    split: str
    history_length: int = Field(..., description="items before the target; `history` holds the last ones")
    history: list[Item] = Field(..., description="oldest first, at most max_history_len items")
    target: Item


class CollisionGroup(BaseModel):
    codes: list[int]
    count: int
    items: list[Item]


class Codebook(BaseModel):
    num_items: int
    num_trained_items: int
    num_levels: int
    num_codes_per_level: int
    level_sizes: list[int]
    dedup: str
    utilisation: list[float] = Field(..., description="per level: share of the codes used")
    perplexity: list[float] = Field(..., description="per level: exp(entropy of code use)")
    usage: list[list[int]] = Field(..., description="per level: items per code")
    distinct_codes: int
    collision_rate: float = Field(..., description="share of items whose raw code another item has too")
    max_collision_group: int
    colliding_groups: int
    largest_groups: list[CollisionGroup]
    neighbour_agreement: list[float] = Field(
        ..., description="per level l: share of items whose nearest item by text has the same first l codes")


class ItemMap(BaseModel):
    num_items: int
    shown: int
    explained_variance: list[float] = Field(..., description="the two components' shares of the variance")
    index: list[int]
    item_id: list[str]
    code: list[int] = Field(..., description="first-level code of each item shown")
    x: list[float]
    y: list[float]


# --- routes ---------------------------------------------------------------------------------------
router = APIRouter(default_response_class=AsciiJSONResponse)
Split = Annotated[Literal["valid", "test"], Query(description="validation or test split (leave-last-out)")]


def _view(request: Request) -> CatalogView:
    return CatalogView.of(server_state(request).rec)


def _static(name: str) -> bytes:
    return (resources.files("sidrec.page") / "static" / name).read_bytes()


@router.get("/", include_in_schema=False)
async def page() -> Response:
    return Response(_static("index.html"), media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)


@router.get("/page/{name}", include_in_schema=False)
async def page_file(name: str) -> Response:
    if name not in STATIC:
        raise HTTPException(404, f"no page file {brief(name)}")
    return Response(_static(name), media_type=STATIC[name], headers=PAGE_HEADERS)


@router.get("/run", response_model=RunInfo, dependencies=[Depends(reader)])
async def run_info(request: Request):
    """About the run served: dataset, model, SID layout, decoding settings and the service's limits."""
    s = server_state(request)
    rec, cfg = s.rec, s.rec.cfg
    return {"dataset": rec.dataset.name, "num_users": rec.dataset.num_users, "num_items": rec.dataset.num_items,
            "num_trained_items": rec.num_trained_items, "catalog_generation": s.generation,
            "model_arch": cfg.model.arch, "model_max_history": cfg.model.max_history,
            "sid_levels": int(rec.sid_table.codes.shape[1]), "level_sizes": list(map(int, rec.sid_table.level_sizes)),
            "dedup": rec.sid_table.dedup, "num_beams": cfg.decode.num_beams,
            "exclude_history": cfg.decode.exclude_history, "cold_start_share": cfg.decode.cold_start_share,
            "writes_enabled": bool(s.settings.api_key), "auth": s.settings.auth, "max_k": s.settings.max_k,
            "max_history_len": s.settings.max_history_len}


@router.get("/search", response_model=SearchResult, dependencies=[Depends(reader)], responses=error_responses(422))
async def search(request: Request,
                 q: Annotated[str, Query(min_length=1, max_length=MAX_QUERY_CHARS,
                                         description="title words (each matches words starting with it), "
                                                     "an item id or an ASIN")],
                 limit: Annotated[int, Query(ge=1, le=MAX_LIST, description="items returned")] = 20):
    """Items whose id or ASIN is `q` (first), then those whose title has, for every word of `q`, a word
    starting with it: most whole-word matches first, then most popular in training."""
    view = _view(request)
    return await asyncio.to_thread(view.search, q, limit)


@router.get("/items/{item_id}/tree", response_model=ItemTree, dependencies=[Depends(reader)],
            responses=error_responses(404, 422))
async def item_tree(item_id: str, request: Request,
                    limit: Annotated[int, Query(ge=1, le=MAX_LIST, description="items listed per level")] = 10):
    """The item with its categories, codes and SID; for each prefix of its codes, the items sharing it
    (the nearest by text first, those with the item's whole code marked) and the codes branching there;
    and the collision group: the items whose raw code is the item's, told apart by the de-dup digit."""
    rec = server_state(request).rec
    check_known(rec, item_id)
    view = CatalogView.of(rec)
    return await asyncio.to_thread(view.tree, rec.index_of(item_id), limit)


@router.get("/items/{item_id}/neighbours", response_model=SearchResult, dependencies=[Depends(reader)],
            responses=error_responses(404, 422))
async def neighbours(item_id: str, request: Request,
                     k: Annotated[int, Query(description="number of items (1 to max_k)")] = 10):
    """The k items nearest to the item by cosine similarity of their text embeddings (score), whatever
    their SIDs (GET /items/{id}/similar ranks by shared SID prefix first)."""
    s = server_state(request)
    check_known(s.rec, item_id)
    check_k(k, s.settings)
    view = CatalogView.of(s.rec)
    items = await asyncio.to_thread(view.neighbours, s.rec.index_of(item_id), k)
    return {"query": item_id, "total": len(items), "items": items}


@router.get("/users", response_model=UserList, dependencies=[Depends(reader)], responses=error_responses(422))
async def users(request: Request, split: Split = "test",
                offset: Annotated[int, Query(ge=0, description="first user (dataset order)")] = 0,
                limit: Annotated[int, Query(ge=1, le=MAX_LIST, description="users returned")] = 20):
    """A page of the dataset's users, each with the length of its history and its held-out target in
    the split."""
    view = _view(request)
    return await asyncio.to_thread(view.users, split, offset, limit)


@router.get("/users/{user_id}", response_model=UserHistory, dependencies=[Depends(reader)],
            responses=error_responses(404, 422))
async def user(user_id: str, request: Request, split: Split = "test"):
    """A user's history before its target in the split (the last max_history_len items, which POST
    /recommend accepts) and the target itself."""
    s = server_state(request)
    view = CatalogView.of(s.rec)
    u = view.user_index_of(user_id)
    if u is None:
        raise HTTPException(404, f"user {brief(user_id)} is not in the dataset")
    return await asyncio.to_thread(view.user, u, split, s.settings.max_history_len)


@router.get("/codebook", response_model=Codebook, dependencies=[Depends(reader)])
async def codebook(request: Request):
    """How the SIDs spread the catalog: per level the share of codes used, the perplexity and the items
    per code; the collisions (items sharing a whole raw code) and the largest such groups."""
    view = _view(request)
    return await asyncio.to_thread(view.codebook)


@router.get("/map", response_model=ItemMap, dependencies=[Depends(reader)], responses=error_responses(422))
async def item_map(request: Request,
                   limit: Annotated[int, Query(ge=1, le=MAX_MAP_POINTS, description="items shown at most "
                                                                                     "(spread evenly)")]
                   = DEFAULT_MAP_POINTS):
    """The items on the first two principal components of their text embeddings, with their
    first-level code. The projection is computed once per run and cached in the run directory."""
    view = _view(request)
    return await asyncio.to_thread(view.item_map, limit)


# --- the OpenAPI document -------------------------------------------------------------------------
DATA_ROUTES = ("/run", "/search", "/items/{item_id}/tree", "/items/{item_id}/neighbours", "/users",
               "/users/{user_id}", "/codebook", "/map")


def complete_document(doc: dict, settings: ServeSettings) -> None:
    """What sidrec.serve.openapi_document adds for the other routes, for these: the service's max_k,
    and the API key on reads under auth=all."""
    paths = doc["paths"]
    k = next(p for p in paths["/items/{item_id}/neighbours"]["get"]["parameters"] if p["name"] == "k")
    k["schema"].update(minimum=1, maximum=settings.max_k)
    if settings.auth == "all":
        for path in DATA_ROUTES:
            operation = paths[path]["get"]
            operation["security"] = [{"ApiKey": []}, {"Bearer": []}]
            operation["responses"].update({str(c): v for c, v in openapi_errors(401).items()})
