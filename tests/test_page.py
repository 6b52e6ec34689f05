"""The page at / of `sidrec serve` (sidrec.page): what it computes from the catalog, its read routes,
and the page itself driven in a real headless Chromium (Playwright, the system's browser)."""

import contextlib
import io
import os
import re
import shutil
import socket
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from sidrec.data.split import PAD_ITEM, evaluation_samples
from sidrec.page import explore
from sidrec.layout import PAGE_MAP
from sidrec.page.explore import CatalogView, TitleIndex
from sidrec.recommender import Recommender
from sidrec.tokenize.diagnostics import neighbour_agreement, sid_diagnostics

KEY = "page-key-0123"
STATIC = Path(explore.__file__).with_name("static")


def view_of(run_dir) -> CatalogView:
    rec = Recommender.load(run_dir)
    return CatalogView(rec.dataset, rec.sid_table, rec.unit_embeddings(), rec.num_trained_items, rec.user_index, rec.run_dir)


# --- search -----------------------------------------------------------------------------------------
ITEMS = [
    {"item_id": "1", "asin": "B0001", "title": "Red Lipstick Matte"},
    {"item_id": "2", "asin": "B0002", "title": "Lip balm, cherry"},
    {"item_id": "3", "asin": "X3", "title": "Red nail polish"},
    {"item_id": "B0001x", "title": "<script>alert(1)</script> lipstick"},
    {"item_id": "5", "title": None},
    {"item_id": "6", "title": "Lipstick red " + "x" * 5000},
]


def test_search_matches_the_beginnings_of_all_query_words():
    index = TitleIndex(ITEMS)
    popularity = np.array([0, 0, 0, 0, 0, 9])
    exact, found = index.search("lip", popularity)
    # whole-word matches first, then the popular, then item order
    assert exact is None and found.tolist() == [1, 5, 0, 3]
    assert index.search("red lip", popularity)[1].tolist() == [5, 0]  # every word must match
    # whole-word matches before prefix matches
    assert index.search("lipstick", popularity)[1].tolist() == [5, 0, 3]
    assert index.search("LIPSTICK red", np.zeros(6, dtype=np.int64))[1].tolist() == [0, 5]
    assert index.search("script alert", popularity)[1].tolist() == [3]
    assert index.search("xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", popularity)[1].tolist() == [5]
    assert index.search("nothing", popularity)[1].tolist() == []
    exact, found = index.search("!!", popularity)
    assert exact is None and found.size == 0


def test_search_finds_an_item_by_id_or_asin_first():
    index = TitleIndex(ITEMS)
    popularity = np.zeros(6, dtype=np.int64)
    assert index.search("b0001", popularity)[0] == 0  # ASIN, any case
    assert index.search(" 3 ", popularity)[0] == 2
    assert index.search("X3", popularity)[0] == 2
    exact, found = index.search("B0001x", popularity)
    assert exact == 3 and 3 not in found.tolist()


def test_search_over_a_run(run_copy):
    view = view_of(run_copy)
    result = view.search("nail pol", 2)
    titles = [view.dataset.items[i["index"]]["title"] for i in result["items"]]
    assert result["total"] == 3 and len(titles) == 2 and all("nail polish" in t for t in titles)
    assert view.search("B000000007", 5)["items"][0]["item_id"] == "7"


# --- the item view ----------------------------------------------------------------------------------
def test_the_sid_tree_lists_the_items_sharing_each_prefix(run_copy):
    view = view_of(run_copy)
    codes, levels = view.codes, view.codes.shape[1]
    for index in (0, 7, 21):
        tree = view.tree(index, limit=100)
        assert tree["item"]["index"] == index and tree["item"]["codes"] == codes[index].tolist()
        for level in tree["levels"]:
            d = level["depth"]
            sharing = np.flatnonzero((codes[:, :d] == codes[index, :d]).all(axis=1))
            assert level["count"] == len(sharing)
            assert sorted(i["index"] for i in level["items"]) == sorted(set(sharing.tolist()) - {index})
            scores = [i["score"] for i in level["items"]]
            assert scores == sorted(scores, reverse=True)  # nearest by text first
            for i in level["items"]:
                assert i["collides"] == (codes[i["index"]] == codes[index]).all()
            under = (codes[:, :d - 1] == codes[index, :d - 1]).all(axis=1)
            counts = np.bincount(codes[under, d - 1])
            assert level["num_branches"] == (counts > 0).sum()
            assert {b["code"]: b["count"] for b in level["branches"]} == \
                {c: counts[c] for c in (b["code"] for b in level["branches"])}
            assert [b["code"] for b in level["branches"] if b["own"]] == [codes[index, d - 1]]
        group = np.flatnonzero((codes == codes[index]).all(axis=1))
        assert tree["collision_count"] == len(group) == tree["levels"][levels - 1]["count"]
        assert [i["index"] for i in tree["collisions"]] == group.tolist()
        assert [i["sid"][-1] for i in tree["collisions"]] == list(range(len(group)))  # the de-dup digit


def test_neighbours_are_nearest_by_text_embedding(run_copy):
    view = view_of(run_copy)
    emb = np.load(run_copy / "embeddings.npy")
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    sims = unit @ unit[4]
    expected = [i for i in np.argsort(-sims, kind="stable") if i != 4][:5]
    got = view.neighbours(4, 5)
    assert [i["index"] for i in got] == expected
    assert [i["score"] for i in got] == pytest.approx(sims[expected], abs=1e-5)


# --- users ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("split", ["valid", "test"])
def test_a_users_history_and_target_are_those_evaluated(run_copy, split):
    view = view_of(run_copy)
    samples = evaluation_samples(view.dataset, 3, split)
    for u in (0, 5, view.dataset.num_users - 1):
        user = view.user(u, split, max_items=3)
        window = samples.histories[u][samples.histories[u] != PAD_ITEM]
        assert [i["index"] for i in user["history"]] == window.tolist()
        assert user["target"]["index"] == samples.targets[u]
        assert user["history_length"] == len(view.dataset.sequence(u)) - (2 if split == "valid" else 1)
    listing = view.users(split, offset=5, limit=3)
    assert [u["user_id"] for u in listing["users"]] == view.dataset.user_ids[5:8]
    assert [u["target"]["index"] for u in listing["users"]] == samples.targets[5:8].tolist()
    assert view.users(split, offset=10**30, limit=3)["users"] == []


# --- the codebook and the map -----------------------------------------------------------------------
def test_codebook_statistics(run_copy):
    view = view_of(run_copy)
    book = view.codebook()
    expected = sid_diagnostics(view.codes, view.sid_table.num_codes_per_level, None)
    assert book["utilisation"] == expected["utilisation"] and book["perplexity"] == expected["perplexity"]
    assert book["collision_rate"] == expected["collision_rate"]
    assert book["neighbour_agreement"] == neighbour_agreement(view.codes, view.unit, 2000)
    assert 0 <= book["neighbour_agreement"][-1] <= book["neighbour_agreement"][0] <= 1
    assert all(sum(usage) == view.num_items for usage in book["usage"])
    sizes = [g["count"] for g in book["largest_groups"]]
    assert sizes == sorted(sizes, reverse=True) and sizes[0] == expected["max_collision_group"]
    for group in book["largest_groups"]:
        assert all(view.codes[i["index"]].tolist() == group["codes"] for i in group["items"])


def test_the_map_is_computed_once_per_run_and_cached_in_it(run_copy, monkeypatch):
    view = view_of(run_copy)
    first = view.item_map(limit=1000)
    assert first["shown"] == view.num_items == len(first["x"]) == len(set(first["index"]))
    assert first["code"] == view.codes[first["index"], 0].tolist()
    assert (run_copy / PAGE_MAP).is_file()
    assert not [p.name for p in run_copy.iterdir() if p.name.endswith(".tmp")]
    # PCA: the first component spreads the items at least as much as the second
    assert first["explained_variance"][0] >= first["explained_variance"][1] > 0
    assert np.var(first["x"]) >= np.var(first["y"])

    def no_refit(_):
        raise AssertionError("the cached map was fitted again")

    monkeypatch.setattr(explore, "fit_map", no_refit)
    again = view_of(run_copy).item_map(limit=1000)
    assert again == first
    assert view_of(run_copy).item_map(limit=10)["shown"] == 10


def test_the_map_of_other_embeddings_is_fitted_again(run_copy):
    coords, _ = explore.map_coordinates(view_of(run_copy).unit, 40, 40, run_copy)
    other = np.random.default_rng(0).standard_normal((40, 8)).astype(np.float32)
    moved, _ = explore.map_coordinates(other, 40, 40, run_copy)  # same file name, other fingerprint
    assert moved.shape == (40, 2) and not np.allclose(moved, coords[:, :2])
    # items added after training are projected with the trained items' components
    grown, _ = explore.map_coordinates(np.concatenate([other, other[:3] * 2]), 43, 40, run_copy)
    np.testing.assert_allclose(grown[:40], moved, atol=1e-5)


def test_a_read_only_run_directory_still_gets_a_map(run_copy, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError("read-only file system")

    monkeypatch.setattr(explore, "write_npz", refuse)
    assert view_of(run_copy).item_map(limit=5)["shown"] == 5
    assert not (run_copy / PAGE_MAP).exists()


# --- the routes, in process --------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(rec, **settings):
    """``sidrec serve``'s app over ``rec`` on a loopback port, in a thread of this process."""
    import uvicorn

    from sidrec.serve import ServeSettings, create_app

    app = create_app(rec, ServeSettings(threads=1, **settings))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not server.started:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.02)
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(30)


def item_with_room(rec) -> int:
    """An item whose code group can take one more item under the model's de-dup digit."""
    _, inverse, counts = np.unique(rec.sid_table.codes, axis=0, return_inverse=True, return_counts=True)
    return int(np.flatnonzero(counts[inverse.reshape(-1)] < rec.sid_table.level_sizes[-1])[0])


@pytest.fixture(scope="module")
def service(finished_run, tmp_path_factory):
    """The service with an API key over a copy of the tiny run; new items are 'embedded' as a copy
    of an item whose code has room, so that adding them takes no language model."""
    from sidrec import cold_start

    run_dir = tmp_path_factory.mktemp("page") / "run"
    shutil.copytree(finished_run, run_dir, symlinks=True)
    rec = Recommender.load(run_dir)
    vector = np.load(run_dir / "embeddings.npy")[item_with_room(rec)]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cold_start, "embed_items", lambda texts, cfg: np.stack([vector] * len(texts)))
        with serving(rec, api_key=KEY) as url, httpx.Client(base_url=url, timeout=60) as client:
            yield client


def test_the_routes_answer_what_the_view_computes(service, run_copy):
    view = view_of(run_copy)
    assert service.get("/search", params={"q": "lipstick", "limit": 3}).json() == view.search("lipstick", 3)
    assert service.get("/items/B000000008/tree", params={"limit": 4}).json() == view.tree(7, 4)
    assert service.get("/items/8/neighbours", params={"k": 4}).json()["items"] == view.neighbours(7, 4)
    assert service.get("/users", params={"split": "valid", "limit": 2}).json() == view.users("valid", 0, 2)
    user = view.dataset.user_ids[3]
    assert service.get(f"/users/{user}").json() == view.user(3, "test", 1000)
    assert service.get("/codebook").json()["perplexity"] == view.codebook()["perplexity"]
    assert service.get("/map", params={"limit": 7}).json()["shown"] == 7
    info = service.get("/run").json()
    assert (info["num_items"], info["writes_enabled"], info["sid_levels"]) == (view.num_items, True, 3)


@pytest.mark.parametrize("path, params, status, detail", [
    ("/items/nope/tree", {}, 404, "item 'nope' is not in the catalog"),
    ("/items/nope/neighbours", {}, 404, "item 'nope' is not in the catalog"),
    ("/users/nope", {}, 404, "user 'nope' is not in the dataset"),
    ("/users/1", {"split": "train"}, 422, "split"),
    ("/users", {"limit": 0}, 422, "limit"),
    ("/search", {"q": ""}, 422, "q"),
    ("/search", {"q": "x" * 201}, 422, "at most 200 characters"),
    ("/items/1/neighbours", {"k": 0}, 422, "k=0 is out of range"),
    ("/items/1/tree", {"limit": "many"}, 422, "limit"),
    ("/map", {"limit": 0}, 422, "limit"),
    ("/page/../serve.py", {}, 404, ""),
    ("/page/index.html", {}, 404, "no page file"),
])
def test_bad_requests_get_one_line(service, path, params, status, detail):
    response = service.get(path, params=params)
    assert response.status_code == status, response.text
    message = response.json()["detail"]
    assert detail in message and "\n" not in message


def test_the_page_is_served_with_a_strict_content_policy(service):
    page = service.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    for name, kind in (("page.js", "text/javascript"), ("page.css", "text/css")):
        response = service.get(f"/page/{name}")
        assert response.status_code == 200 and response.headers["content-type"].startswith(kind)
    # no address outside this service: the page works offline
    for path in STATIC.iterdir():
        assert not re.search(r"(https?:)?//[a-z]", path.read_text(encoding="utf-8")), path


def test_the_page_script_never_parses_data_as_markup():
    script = (STATIC / "page.js").read_text(encoding="utf-8")
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in script, sink


def test_the_openapi_document_describes_the_page_routes(service):
    spec = service.get("/openapi.json").json()
    paths = spec["paths"]
    for path in ("/run", "/search", "/items/{item_id}/tree", "/items/{item_id}/neighbours", "/users",
                 "/users/{user_id}", "/codebook", "/map"):
        ok = paths[path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        assert "$ref" in ok, path
    assert "/" not in paths and "/page/{name}" not in paths
    k = next(p for p in paths["/items/{item_id}/neighbours"]["get"]["parameters"] if p["name"] == "k")
    assert (k["schema"]["minimum"], k["schema"]["maximum"]) == (1, 100)
    assert "404" in paths["/users/{user_id}"]["get"]["responses"]


def test_under_auth_all_the_data_needs_the_key_and_the_page_does_not(run_copy):
    with serving(Recommender.load(run_copy), api_key=KEY, auth="all") as url:
        assert httpx.get(f"{url}/").status_code == 200
        assert httpx.get(f"{url}/page/page.js").status_code == 200
        refused = httpx.get(f"{url}/codebook")
        assert refused.status_code == 401 and "API key" in refused.json()["detail"]
        assert httpx.get(f"{url}/codebook", headers={"X-API-Key": KEY}).status_code == 200
        spec = httpx.get(f"{url}/openapi.json").json()
        assert spec["paths"]["/search"]["get"]["security"] == [{"ApiKey": []}, {"Bearer": []}]
        assert "401" in spec["paths"]["/map"]["get"]["responses"]


# --- the page in a real browser ------------------------------------------------------------------------
SKIP_BROWSER = "SIDREC_SKIP_BROWSER"
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def chromium_executable() -> str:
    """The system's Chromium (SIDREC_CHROMIUM, else the first of BROWSERS on the PATH). Without
    one the browser tests fail, unless SIDREC_SKIP_BROWSER=1 says to skip them."""
    found = os.environ.get("SIDREC_CHROMIUM") or next(filter(None, map(shutil.which, BROWSERS)), None)
    problem = None
    if not found:
        problem = "no Chromium found (install it: apt-get install -y chromium; or set SIDREC_CHROMIUM=/path/to/chrome)"
    else:
        try:
            import playwright.sync_api  # noqa: F401 - in the test extra: pip install -e '.[test]'
        except ImportError:
            problem = "the Playwright client is missing (pip install -e '.[test]')"
    if problem:
        if os.environ.get(SKIP_BROWSER) == "1":
            pytest.skip(f"{problem}; skipped because {SKIP_BROWSER}=1")
        pytest.fail(f"{problem}; set {SKIP_BROWSER}=1 to skip the browser tests", pytrace=False)
    return found


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    executable = chromium_executable()
    with sync_playwright() as p:
        # The system's browser: no `playwright install` download.
        launched = p.chromium.launch(executable_path=executable, args=["--disable-dev-shm-usage"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser, service):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=str(service.base_url))
    tab = context.new_page()
    tab.set_default_timeout(20_000)
    problems = []
    tab.on("pageerror", lambda error: problems.append(f"script error: {error}"))
    tab.on("dialog", lambda dialog: (problems.append(f"a dialog opened: {dialog.message}"), dialog.dismiss()))
    yield tab
    context.close()
    assert not problems, problems


def shown(tab, hash_: str, view: str) -> None:
    """Loads the page at ``hash_`` and waits until ``view`` has been drawn."""
    tab.goto("about:blank")
    tab.goto("/" + hash_)
    tab.wait_for_selector(f"body[data-view={view}]")


def assert_a_picture(png: bytes) -> None:
    """A PNG image of more than one colour."""
    from matplotlib.image import imread

    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    pixels = imread(io.BytesIO(png))
    assert pixels.shape[0] > 100 and pixels.shape[1] > 100
    assert len(np.unique(pixels.reshape(-1, pixels.shape[-1])[::97], axis=0)) > 10, "the screenshot is blank"


def test_search_item_history_recommendations_in_a_browser(page):
    from playwright.sync_api import expect

    shown(page, "", "find")
    page.fill("#search-input", "lipstick")
    page.press("#search-input", "Enter")
    first = page.locator("#search-results a.item-link").first
    first.wait_for()
    title = first.text_content()
    assert "lipstick" in title
    first.click()

    page.wait_for_selector("#item-title")
    assert page.text_content("#item-title") == title
    assert page.locator("#item-head .sid span").count() == 4  # 3 codes + the de-dup digit
    assert page.locator("#sid-tree .level").count() == 3
    assert page.locator("#neighbours li").count() == 10
    assert page.locator("#collisions").is_visible()
    page.click("#add-to-history")

    page.wait_for_selector("#recommendations ol.recommendations li")
    assert page.locator("#history-items li").count() == 1
    assert page.locator("#recommendations ol.recommendations li").count() == 10
    scores = [float(s) for s in page.locator("#recommendations .score").all_text_contents()]
    assert len(scores) == 10 and scores == sorted(scores, reverse=True)
    page.fill("#k", "5")
    page.click("#recommend")
    expect(page.locator("#recommendations ol.recommendations li")).to_have_count(5)
    assert_a_picture(page.screenshot(full_page=True))


def test_a_users_history_and_target_marked_hit_or_miss_in_a_browser(page, service):
    shown(page, "#/users/valid", "users")
    assert page.locator("#users li").count() == 20
    page.locator("a.user-link").nth(2).click()
    page.wait_for_selector("#verdict")
    user = service.get(f"/users/{page.url.rsplit('/', 1)[1]}", params={"split": "valid"}).json()
    assert page.locator("#history-items li").count() == len(user["history"])
    assert page.text_content("#target a.item-link") == user["target"]["title"]
    verdict = page.text_content("#verdict")
    ranked = page.locator("#recommendations ol.recommendations li").evaluate_all(
        "rows => rows.map(r => r.dataset.itemId)")
    if user["target"]["item_id"] in ranked:
        assert verdict.startswith(f"Hit: the target is at rank {ranked.index(user['target']['item_id']) + 1}")
        assert page.locator("#recommendations li.target").count() == 1
    else:
        assert verdict.startswith("Miss")


def test_the_codebook_view_in_a_browser(page):
    shown(page, "#/codebook", "codebook")
    assert page.locator("#levels tr").count() == 4  # a header and 3 levels
    assert page.locator("#groups .level").count() >= 1
    assert "nearest item by text has the same first code for" in page.locator("main").inner_text()
    # the map is drawn: the canvas holds coloured points
    coloured = page.evaluate("""() => {
        const c = document.getElementById('map-canvas');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n; }""")
    assert coloured > 100
    assert_a_picture(page.locator("#map-canvas").screenshot())


def test_an_added_item_whose_title_is_markup_is_shown_as_text(page, service):
    markup = '<script>alert(1)</script><img src=x onerror="window.__xss = 1">'
    shown(page, "#/add", "add")
    assert page.locator("#add-submit").is_disabled()  # read-only until the key is given
    page.fill("#api-key", KEY)
    page.press("#api-key", "Enter")
    page.wait_for_selector("#add-submit:not([disabled])")
    page.fill("#new-item_id", "xss-1")
    page.fill("#new-title", markup)
    page.fill("#new-categories", "Beauty > <b>bold</b>")
    page.click("#add-submit")
    page.wait_for_selector("#add-result a.item-link")
    assert page.text_content("#add-result a.item-link") == markup
    assert service.get("/items/xss-1").json()["title"] == markup

    for hash_, view in (("#/item/xss-1", "find"), ("#/find?q=script%20alert", "find"), ("#/history", "history")):
        shown(page, hash_, view)
        page.wait_for_selector("main a.item-link")
        assert page.get_by_text(markup).first.is_visible()
        if hash_ == "#/item/xss-1":
            assert page.text_content("#item-title") == markup
            assert page.get_by_text("Beauty › <b>bold</b>").is_visible()
            assert page.locator("#item-head .badge.added").is_visible()
            page.click("#add-to-history")
        assert page.locator("script:not([src]), img, main b").count() == 0
        assert page.evaluate("window.__xss") is None
