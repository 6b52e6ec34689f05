"""Screenshots of the page of ``sidrec serve`` for the README and docs/serving.md.

    python benchmarks/page_screenshots.py --run-dir runs/main-cpu [--out docs/figures]
    python benchmarks/page_screenshots.py            # trains `sidrec run preset=tiny` on Beauty first

Serves a copy of the run (the page caches its map in the run directory; the original is left
alone) on a loopback port, drives the system's Chromium through it with Playwright (no browser
download: set SIDREC_CHROMIUM if it is not on the PATH) and writes

    page-search.png     the find view, for --query
    page-item.png       an item (the first search result, or --item): SID, SID tree, neighbours
    page-user.png       a test user whose target the model ranks in its top 10 (hit marked)
    page-codebook.png   codebook statistics and the 2-D map
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def chromium() -> str:
    found = os.environ.get("SIDREC_CHROMIUM") or next(filter(None, map(shutil.which, BROWSERS)), None)
    if not found:
        sys.exit("error: no Chromium found (apt-get install -y chromium, or set SIDREC_CHROMIUM)")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tiny_beauty_run(root: Path) -> Path:
    run_dir = root / "tiny-beauty"
    subprocess.run([sys.executable, "-m", "sidrec.cli", "run", "preset=tiny", f"run_dir={run_dir}"], check=True)
    return run_dir


def serve_in_thread(run_dir: Path, key: str):
    import uvicorn

    from sidrec.recommender import Recommender
    from sidrec.serve import ServeSettings, create_app

    app = create_app(Recommender.load(run_dir), ServeSettings(api_key=key))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return server, f"http://127.0.0.1:{server.config.port}"


def save_small(png: bytes, path: Path) -> None:
    """The screenshot as a 256-colour PNG (a third of the size; Pillow comes with matplotlib)."""
    from PIL import Image

    Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=256).save(path, optimize=True)


def a_user_with_a_hit(url: str, users: int = 300) -> str:
    """The first test user (dataset order) whose target is in the model's top 10."""
    with httpx.Client(base_url=url, timeout=120) as client:
        rows = client.get("/users", params={"split": "test", "limit": 100}).json()["users"]
        offset = 100
        while rows and offset <= users:
            ids = [r["user_id"] for r in rows]
            histories = [client.get(f"/users/{u}", params={"split": "test"}).json() for u in ids]
            ranked = client.post("/recommend", json={"histories": [[i["item_id"] for i in h["history"]]
                                                                   for h in histories],
                                                     "user_ids": ids, "k": 10}).json()["results"]
            for h, r in zip(histories, ranked):
                if len(h["history"]) >= 4 and h["target"]["item_id"] in [i["item_id"] for i in r["items"]]:
                    return h["user_id"]
            rows = client.get("/users", params={"split": "test", "offset": offset, "limit": 100}).json()["users"]
            offset += 100
    return rows[0]["user_id"] if rows else "1"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run-dir", help="a finished run (default: train preset=tiny on Beauty)")
    parser.add_argument("--out", default="docs/figures")
    parser.add_argument("--query", default="nail polish")
    parser.add_argument("--item", help="the item to show (default: the first result of --query)")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=860)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sidrec-page-") as tmp:
        root = Path(tmp)
        source = Path(args.run_dir) if args.run_dir else tiny_beauty_run(root)
        run_dir = root / "run"
        shutil.copytree(source, run_dir, symlinks=True, ignore=shutil.ignore_patterns("checkpoints", "tensorboard",
                                                                                       "logs"))
        server, url = serve_in_thread(run_dir, key="screenshots")
        try:
            user = a_user_with_a_hit(url)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=chromium())
                page = browser.new_page(viewport={"width": args.width, "height": args.height})

                def shot(hash_: str, view: str, name: str, ready: str) -> None:
                    page.goto("about:blank")
                    page.goto(f"{url}/{hash_}")
                    page.wait_for_selector(f"body[data-view={view}]")
                    page.wait_for_selector(ready)
                    page.wait_for_timeout(300)
                    save_small(page.screenshot(), out / name)
                    print(f"wrote {out / name}")

                query = args.query.replace(" ", "%20")
                shot(f"#/find?q={query}", "find", "page-search.png", "#search-results a.item-link")
                item = args.item or page.locator("#search-results a.item-link").first.get_attribute("href")[7:]
                shot(f"#/item/{item}", "find", "page-item.png", "#neighbours a.item-link")
                shot(f"#/user/test/{user}", "users", "page-user.png", "#verdict")
                shot("#/codebook", "codebook", "page-codebook.png", "#map-canvas")
                browser.close()
        finally:
            server.should_exit = True


if __name__ == "__main__":
    main()
