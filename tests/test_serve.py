"""The HTTP service through a real uvicorn process on 127.0.0.1: start, query, stop."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from sidrec.recommender import Recommender

MAX_HISTORY_LEN = 50
START_TIMEOUT_S = 90


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(finished_run, tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    run_dir = root / "run"
    shutil.copytree(finished_run, run_dir, symlinks=True)
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "SIDREC_CACHE_DIR": str(root / "cache")}
    log = open(root / "server.log", "w")
    cmd = [sys.executable, "-m", "sidrec.cli", "serve", f"run_dir={run_dir}", f"port={port}",
           "max_wait_ms=30", f"max_history_len={MAX_HISTORY_LEN}", "max_k=100"]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"server exited with {proc.returncode}: {(root / 'server.log').read_text()[-2000:]}")
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"server did not start in {START_TIMEOUT_S} s")
            time.sleep(0.2)
        with httpx.Client(base_url=url, timeout=60) as client:
            yield client
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="module")
def local(finished_run):
    return Recommender.load(finished_run)


def ids(items):
    return [x["item_id"] for x in items]


def test_health_and_openapi(server):
    health = server.get("/health").json()
    assert health["status"] == "ok" and health["num_items"] >= 40
    spec = server.get("/openapi.json").json()
    assert {"/recommend", "/items", "/items/{item_id}", "/health"} <= set(spec["paths"])
    assert server.get("/docs").status_code == 200


def test_recommend_matches_the_python_api(server, local):
    body = server.post("/recommend", json={"history": ["1", "5", "9"], "k": 5}).json()
    expected = local.recommend(["1", "5", "9"], k=5)
    assert ids(body["items"]) == [r.item_id for r in expected]
    for got, want in zip(body["items"], expected):
        assert got["sid"] == want.sid and got["title"] == want.title and got["asin"] == want.asin
        assert got["score"] == pytest.approx(want.score, abs=1e-4)
    # many histories in one request, integer ids and ASINs, user ids and exclusions
    many = server.post("/recommend", json={"histories": [[3, 7], ["B000000003", "B000000007"], ["2"]], "k": 3,
                                           "user_ids": ["u1", None, 5],
                                           "excludes": [[], [], [expected[0].item_id]]}).json()["results"]
    assert ids(many[0]["items"]) == ids(many[1]["items"])
    assert expected[0].item_id not in ids(many[2]["items"])


def test_concurrent_requests_are_micro_batched(server, local):
    histories = [[str(1 + (i * 7) % 40), str(1 + (i * 3) % 40)] for i in range(16)]
    before = server.get("/health").json()["batching"]

    def one(history):
        with httpx.Client(base_url=str(server.base_url), timeout=60) as c:
            return c.post("/recommend", json={"history": history, "k": 5}).json()

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one, histories))
    after = server.get("/health").json()["batching"]
    requests, batches = after["requests"] - before["requests"], after["batches"] - before["batches"]
    assert requests == 16 and batches < 16 and after["max_batch_seen"] > 1
    # A request's result does not depend on what it was batched with.
    for history, body in zip(histories, results):
        assert ids(body["items"]) == [r.item_id for r in local.recommend(history, k=5)]


def test_items_and_similar(server):
    a, b = server.get("/items/1").json(), server.get("/items/B000000001").json()
    assert a == b and a["item_id"] == "1" and len(a["sid"]) >= 3 and a["score"] is None
    similar = server.get("/items/1/similar", params={"k": 3}).json()["items"]
    assert len(similar) == 3 and "1" not in ids(similar)


BAD = [
    ("malformed JSON", "POST", "/recommend", b'{"history": ["1", ', 400, "malformed JSON"),
    ("body not UTF-8", "POST", "/recommend", b'{"history": ["\xff"]}', 400, "error parsing the body"),
    ("body not an object", "POST", "/recommend", [1, 2], 422, "valid dictionary"),
    ("no body", "POST", "/recommend", None, 422, "body"),
    ("neither history nor histories", "POST", "/recommend", {"k": 3}, 422, "exactly one of"),
    ("both", "POST", "/recommend", {"history": ["1"], "histories": [["1"]]}, 422, "exactly one of"),
    ("empty history", "POST", "/recommend", {"history": []}, 422, "history is empty"),
    ("empty history in many", "POST", "/recommend", {"histories": [["1"], []]}, 422, "histories[1] is empty"),
    ("no histories", "POST", "/recommend", {"histories": []}, 422, "`histories` is empty"),
    ("oversized history", "POST", "/recommend", {"history": ["1"] * (MAX_HISTORY_LEN + 1)}, 422,
     f"at most {MAX_HISTORY_LEN}"),
    ("unknown item", "POST", "/recommend", {"history": ["1", "nope"]}, 422, "not in the catalog: 'nope'"),
    ("unknown exclusion", "POST", "/recommend", {"history": ["1"], "exclude": ["zzz"]}, 422, "'zzz'"),
    ("k = 0", "POST", "/recommend", {"history": ["1"], "k": 0}, 422, "k=0 is out of range"),
    ("k too large", "POST", "/recommend", {"history": ["1"], "k": 101}, 422, "k=101 is out of range"),
    ("k not an int", "POST", "/recommend", {"history": ["1"], "k": "ten"}, 422, "k:"),
    ("item id a float", "POST", "/recommend", {"history": [1.5]}, 422, "history.0"),
    ("unknown field", "POST", "/recommend", {"history": ["1"], "kk": 3}, 422, "kk"),
    ("too many histories", "POST", "/recommend", {"histories": [["1"]] * 257}, 422, "at most 256"),
    ("oversized history in many", "POST", "/recommend", {"histories": [["1"], ["2"] * (MAX_HISTORY_LEN + 1)]}, 422,
     f"histories[1] has {MAX_HISTORY_LEN + 1} items"),
    ("user_ids length", "POST", "/recommend", {"histories": [["1"], ["2"]], "user_ids": ["a"]}, 422,
     "`user_ids` has 1 entries for 2 histories"),
    ("unknown item path", "GET", "/items/nope", None, 404, "'nope' is not in the catalog"),
    ("similar k = 0", "GET", "/items/1/similar?k=0", None, 422, "out of range"),
    ("similar k not int", "GET", "/items/1/similar?k=x", None, 422, "k"),
    ("new items malformed", "POST", "/items", b'{"items": [', 400, "malformed JSON"),
    ("new items empty", "POST", "/items", {"items": []}, 422, "`items` is empty"),
    ("new item without id", "POST", "/items", {"items": [{"title": "x"}]}, 422, "needs an item_id"),
    ("new item id taken", "POST", "/items", {"items": [{"item_id": "1", "title": "x"}]}, 409, "already in the catalog"),
    ("new item without text", "POST", "/items", {"items": [{"item_id": "t-1"}]}, 422, "no text"),
]


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_bad_requests_get_a_clear_4xx(server, case):
    _, method, path, body, status, message = case
    if isinstance(body, bytes):
        response = server.request(method, path, content=body, headers={"content-type": "application/json"})
    elif body is None:
        response = server.request(method, path)
    else:
        response = server.request(method, path, json=body)
    assert response.status_code == status, response.text
    assert message in response.json()["detail"], response.text


def test_cold_start_item_is_recommendable_at_once(server, local):
    table = local.sid_table
    _, inverse, counts = np.unique(table.codes, axis=0, return_inverse=True, return_counts=True)
    j = int(np.flatnonzero(counts[inverse.reshape(-1)] < table.level_sizes[-1])[0])
    source = local.dataset.items[j]
    new = {**{k: v for k, v in source.items() if k not in ("item_id", "asin")}, "item_id": "http-1", "asin": "XHTTP1"}
    response = server.post("/items", json={"items": [new]})
    assert response.status_code == 201, response.text
    body = response.json()
    n = local.dataset.num_items
    assert body["num_items"] == n + 1 and body["generation"] == 1
    assert body["added"][0]["sid"][:-1] == table.codes[j].tolist()
    assert server.get("/items/XHTTP1").json()["index"] == n
    out = server.post("/recommend", json={"history": [source["item_id"]], "k": n + 1}).json()["items"]
    assert "http-1" in ids(out)
    assert server.post("/recommend", json={"history": ["http-1"], "k": 3}).status_code == 200
    assert server.get("/health").json()["num_items"] == n + 1


def test_serving_imports_no_training_code():
    code = ("import sys, sidrec.serve, sidrec.cold_start, sidrec.recommender; "
            "bad = [m for m in sys.modules if m.startswith(('sidrec.train', 'lightning', 'sidrec.pipeline'))]; "
            "print(json.dumps(bad))")
    out = subprocess.run([sys.executable, "-c", "import json; " + code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []
