// The page of `sidrec serve`: find items, look at an item's SID and neighbours, build a history
// and see its recommendations, look at the codebook, add items. It reads the service's JSON API
// (relative URLs, so it works behind a path prefix) and nothing else.
//
// Every value that comes from the catalog or a request is put into the page as text: elements are
// made with createElement and filled with text nodes (el() below), never parsed as markup.
"use strict";

(() => {
  const main = document.getElementById("main");
  const status = document.getElementById("status");
  const state = {
    run: null, // GET /run
    key: sessionStorage.getItem("sidrec-key") || "",
    history: storedHistory(), // items, oldest first
    user: null, // {user_id, split, target} when the history is a user's
    k: 10,
  };
  function storedHistory() {
    try { return JSON.parse(sessionStorage.getItem("sidrec-history") || "[]"); } catch (e) { return []; }
  }
  let renderCount = 0; // a view that finishes after the next one started is dropped

  // --- building elements --------------------------------------------------------------------------
  // el("a", {href: "#/x", class: "c"}, "text", child, ...): strings become text nodes.
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(props || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (name === "class") node.className = value;
      else if (name === "on") for (const [event, fn] of Object.entries(value)) node.addEventListener(event, fn);
      else if (name === "style") Object.assign(node.style, value);
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children.flat(Infinity)) {
      if (child === undefined || child === null || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  const number = (n) => Number(n).toLocaleString("en-US");
  const percent = (x) => (100 * x).toFixed(1) + "%";
  const itemHref = (id) => "#/item/" + encodeURIComponent(id);
  const codeColour = (code) => `hsl(${(code * 137.508) % 360}, 62%, 46%)`;

  function sidChips(sid, options = {}) {
    const levels = state.run ? state.run.sid_levels : sid.length;
    return el("span", {class: "sid" + (options.large ? " large" : ""), title: "SID " + sid.join("-")},
      sid.map((code, level) => {
        const chip = el("span", {class: level === 0 ? "l0" : level >= levels ? "digit" : ""}, code);
        if (level === 0) chip.style.background = codeColour(code);
        return chip;
      }));
  }

  const isAdded = (item) => state.run && item.index >= state.run.num_trained_items;

  // One line of an item list: rank, linked title, SID, ids and whatever `extra` adds.
  function itemRow(item, options = {}) {
    const badges = [];
    if (isAdded(item)) badges.push(el("span", {class: "badge added", title: "added after training"}, "added"));
    if (options.collides) badges.push(el("span", {class: "badge collides", title: "the item's whole code"},
      "same code"));
    if (options.target) badges.push(el("span", {class: "badge hit"}, "target"));
    if (options.current) badges.push(el("span", {class: "badge"}, "this item"));
    const score = item.score === null || item.score === undefined ? null
      : el("span", {class: "score", title: options.scoreName || "score"}, item.score.toFixed(3));
    return el("li", {class: options.target ? "target" : null, "data-item-id": item.item_id},
      el("span", {class: "rank"}, options.rank ? options.rank + "." : ""),
      el("span", {class: "title"}, el("a", {class: "item-link", href: itemHref(item.item_id)},
        item.title || "(no title)")),
      el("span", {class: "side"}, score, options.action || null),
      el("span", {class: "meta"}, sidChips(item.sid), el("span", {}, "id " + item.item_id),
        item.asin && item.asin !== item.item_id ? el("span", {}, "ASIN " + item.asin) : null, badges));
  }

  function itemList(items, options = {}) {
    const list = el(options.ordered ? "ol" : "ul", {class: "items " + (options.class || "")});
    items.forEach((item, i) => list.append(itemRow(item, {
      rank: options.ordered ? i + 1 : null, scoreName: options.scoreName,
      collides: options.collides && item.collides, target: options.target && options.target(item),
      current: options.current === item.index,
      action: options.action && options.action(item),
    })));
    if (!items.length) list.append(el("li", {class: "muted"}, el("span"), options.empty || "none"));
    return list;
  }

  function addToHistoryButton(item) {
    return el("button", {class: "small", title: "add to the history", on: {click: () => {
      pushHistory(item);
      showStatus("");
      location.hash = "#/history";
    }}}, "+ history");
  }

  // --- talking to the service ---------------------------------------------------------------------
  class ApiError extends Error {
    constructor(status, detail) { super(detail); this.status = status; }
  }

  async function api(path, options = {}) {
    const headers = Object.assign({}, options.headers || {});
    if (state.key) headers["X-API-Key"] = state.key;
    const response = await fetch(path, Object.assign({}, options, {headers}));
    let body = null;
    try { body = await response.json(); } catch (e) { body = null; }
    if (!response.ok) {
      const detail = body && typeof body.detail === "string" ? body.detail : response.statusText;
      throw new ApiError(response.status, detail);
    }
    return body;
  }

  function showStatus(message) { status.textContent = message; }

  function explain(error) {
    if (error instanceof ApiError && error.status === 401)
      return error.message + " (type the API key at the top right)";
    return error.message || String(error);
  }

  async function loadRun() {
    state.run = await api("run");
    const r = state.run;
    document.getElementById("run-summary").textContent =
      `${r.dataset} · ${number(r.num_items)} items` +
      (r.num_items > r.num_trained_items ? ` (${number(r.num_items - r.num_trained_items)} added)` : "") +
      ` · ${number(r.num_users)} users · ${r.model_arch} · SID: ${r.sid_levels} codes` +
      (r.dedup === "extra_digit" ? " + digit" : "");
  }

  function pushHistory(item) {
    state.history.push({index: item.index, item_id: item.item_id, asin: item.asin, title: item.title,
                        sid: item.sid, score: null});
    state.user = null;
    saveHistory();
  }

  function saveHistory() { sessionStorage.setItem("sidrec-history", JSON.stringify(state.history)); }

  // --- views --------------------------------------------------------------------------------------
  async function viewFind(params) {
    const query = params.get("q") || "";
    const input = el("input", {type: "search", id: "search-input", placeholder: "title words, item id or ASIN",
                               value: query, autofocus: true, "aria-label": "search"});
    const results = el("div", {id: "search-results"});
    let timer = null, asked = 0;
    async function search(q) {
      const mine = ++asked;
      history.replaceState(null, "", "#/find" + (q ? "?q=" + encodeURIComponent(q) : ""));
      if (!q.trim()) { results.replaceChildren(); return; }
      try {
        const found = await api("search?limit=30&q=" + encodeURIComponent(q.slice(0, 200)));
        if (mine !== asked) return;
        results.replaceChildren(
          el("p", {class: "muted"}, `${number(found.total)} item${found.total === 1 ? "" : "s"} match` +
            (found.total > found.items.length ? `; the first ${found.items.length}:` : "")),
          itemList(found.items, {action: addToHistoryButton, empty: "no item matches"}));
      } catch (error) { results.replaceChildren(el("p", {class: "muted"}, explain(error))); }
    }
    input.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(() => search(input.value), 200); });
    const form = el("form", {on: {submit: (e) => { e.preventDefault(); clearTimeout(timer); search(input.value); }}},
      input, " ", el("button", {class: "primary", type: "submit"}, "Find"));
    const page = [el("h1", {}, "Find an item"),
      el("p", {class: "muted"}, "Words match the beginnings of title words (all must match); " +
        "an item id or ASIN finds that item. Open an item to see its SID, the items that share its " +
        "prefixes and its nearest neighbours, or add it to a history to get recommendations."),
      form, results];
    if (query) search(query);
    return page;
  }

  async function viewItem(params, id) {
    const [tree, near] = await Promise.all([
      api(`items/${encodeURIComponent(id)}/tree?limit=8`),
      api(`items/${encodeURIComponent(id)}/neighbours?k=10`),
    ]);
    const item = tree.item;
    const facts = [["id", item.item_id], ["ASIN", item.asin], ["brand", item.brand], ["price", item.price]]
      .filter(([, v]) => v !== null && v !== undefined && v !== "")
      .map(([name, v]) => el("span", {}, el("span", {class: "muted"}, name + " "), v));
    const head = el("div", {class: "card", id: "item-head"},
      el("h1", {id: "item-title"}, item.title || "(no title)"),
      el("div", {class: "row"}, facts, item.added ? el("span", {class: "badge added"}, "added after training") : null),
      item.categories.map((path) => el("div", {class: "crumbs"}, path.join(" › "))),
      el("div", {class: "row", style: {marginTop: "8px"}}, el("span", {class: "muted"}, "SID"),
        sidChips(item.sid, {large: true}), el("span", {class: "muted"}, "codes " + item.codes.join("-")),
        el("button", {id: "add-to-history", class: "primary", on: {click: () => {
          pushHistory(item); location.hash = "#/history";
        }}}, "Add to history")),
      item.description ? el("div", {class: "description"}, item.description.slice(0, 2000)) : null);

    const levels = tree.levels.map((level) => el("div", {class: "level"},
      el("div", {class: "row"}, el("strong", {}, `Level ${level.depth}`), sidChips(level.prefix),
        el("span", {}, `${number(level.count)} item${level.count === 1 ? "" : "s"} share this prefix`),
        el("span", {class: "muted"}, `· ${level.num_branches} code${level.num_branches === 1 ? "" : "s"} ` +
          `at level ${level.depth}` + (level.depth > 1 ? ` under ${level.prefix.slice(0, -1).join("-")}` : ""))),
      el("div", {class: "branches", title: "code (items): the largest branches here; the item's is highlighted"},
        level.branches.map((b) => el("span", {class: b.own ? "own" : ""}, `${b.code} (${number(b.count)})`)),
        level.num_branches > level.branches.length ? el("span", {}, "…") : null),
      level.items.length ? itemList(level.items, {collides: true, scoreName: "cosine similarity of text embeddings"})
        : el("div", {class: "muted"}, "no other item")));

    const digit = state.run && state.run.dedup === "extra_digit";
    const collisions = el("div", {class: "card", id: "collisions"},
      el("h2", {}, "Collisions"),
      tree.collision_count > 1
        ? el("p", {}, `${tree.collision_count} items have the identical code ${item.codes.join("-")}` +
            (digit ? "; the de-dup digit (last, dashed) tells them apart:" : "; a generated SID picks one at random:"))
        : el("p", {class: "muted"}, "No other item has this code."),
      tree.collision_count > 1 ? itemList(tree.collisions, {scoreName: "cosine similarity", current: item.index})
        : null);

    return [head,
      el("div", {class: "columns"},
        el("div", {class: "card", id: "sid-tree"}, el("h2", {}, "The SID tree around it"),
          el("p", {class: "muted"}, "Items that share each prefix of its codes, nearest by text first; " +
            "“same code”: a collision."), levels),
        el("div", {},
          el("div", {class: "card", id: "neighbours"}, el("h2", {}, "Nearest by text embedding"),
            itemList(near.items, {ordered: true, scoreName: "cosine similarity", action: addToHistoryButton})),
          collisions))];
  }

  async function viewHistory() {
    const run = state.run;
    const kInput = el("input", {type: "number", id: "k", min: 1, max: run ? run.max_k : 100, value: state.k});
    const results = el("div", {id: "recommendations"});
    const user = state.user;

    async function recommend() {
      state.k = Math.max(1, Math.min(Number(kInput.value) || 10, run ? run.max_k : 100));
      kInput.value = state.k;
      if (!state.history.length) {
        results.replaceChildren(el("p", {class: "muted"}, "Add items to the history first."));
        return;
      }
      const limit = run ? run.max_history_len : 1000;
      const body = {history: state.history.slice(-limit).map((i) => i.item_id), k: state.k};
      if (user) body.user_id = user.user_id;
      results.replaceChildren(el("p", {class: "muted"}, "Ranking…"));
      try {
        const answer = await api("recommend", {method: "POST", headers: {"Content-Type": "application/json"},
                                               body: JSON.stringify(body)});
        results.replaceChildren(...recommendations(answer.items, user));
      } catch (error) { results.replaceChildren(el("p", {class: "muted"}, explain(error))); }
    }

    const basket = el("ol", {class: "items", id: "history-items"});
    state.history.forEach((item, i) => basket.append(itemRow(item, {rank: i + 1, action:
      el("button", {class: "small", title: "remove", on: {click: () => {
        state.history.splice(i, 1); saveHistory(); render();
      }}}, "×")})));
    if (!state.history.length) basket.append(el("li", {class: "muted"}, el("span"),
      "Empty: find items and add them, or pick a user."));
    const reads = run ? run.model_max_history : null;

    const head = user
      ? [el("h1", {}, `User ${user.user_id}`),
         el("p", {}, `Their ${user.split === "valid" ? "validation" : "test"} history (${number(user.history_length)} ` +
           `items${user.history_length > state.history.length ? `, the last ${state.history.length} shown` : ""}) ` +
           "and the held-out target; the model reads the last " + reads + "."),
         el("div", {class: "card", id: "target"}, el("h2", {}, "Held-out target"), itemList([user.target]))]
      : [el("h1", {}, "A history"),
         el("p", {class: "muted"}, "Oldest first. The model reads the last " + (reads || "few") + " items.")];
    const controls = el("div", {class: "row", style: {margin: "10px 0"}},
      el("button", {class: "primary", id: "recommend", on: {click: recommend}}, "Recommend"),
      el("label", {}, "k ", kInput),
      el("button", {on: {click: () => { state.history = []; state.user = null; saveHistory(); render(); }}}, "Clear"),
      el("a", {href: "#/find"}, "find more items"), el("a", {href: "#/users/test"}, "pick a user"));
    if (state.history.length) setTimeout(recommend, 0);
    return [head, el("div", {class: "columns"},
      el("div", {class: "card"}, el("h2", {}, "History"), basket, controls),
      el("div", {class: "card"}, el("h2", {}, "Recommendations"), results))];
  }

  function recommendations(items, user) {
    const run = state.run;
    const out = [];
    if (user) {
      const rank = items.findIndex((i) => i.item_id === user.target.item_id);
      out.push(el("p", {id: "verdict", class: "verdict " + (rank >= 0 ? "hit" : "miss")},
        rank >= 0 ? `Hit: the target is at rank ${rank + 1} of ${items.length}.`
          : `Miss: the target is not in the top ${items.length}.`));
    }
    if (run && run.cold_start_share > 0) {
      const slots = Math.round(run.cold_start_share * items.length);
      const added = items.filter(isAdded).length;
      out.push(el("p", {id: "cold-start", class: "muted"},
        `decode.cold_start_share = ${run.cold_start_share}: ${slots} of ${items.length} slots are kept for ` +
        `items added after training (${number(run.num_items - run.num_trained_items)} in the catalog); ` +
        `${added} in this list.`));
    }
    const scoreName = run && run.model_arch === "item_sid" ? "the item's score over the whole catalog (logit)"
      : "log-probability of the SID";
    out.push(itemList(items, {ordered: true, class: "recommendations", scoreName,
      target: user ? (i) => i.item_id === user.target.item_id : null, action: addToHistoryButton}));
    return out;
  }

  async function viewUser(params, split, userId) {
    const user = await api(`users/${encodeURIComponent(userId)}?split=${split}`);
    state.history = user.history.map((i) => Object.assign({}, i, {score: null}));
    state.user = {user_id: user.user_id, split, target: user.target, history_length: user.history_length};
    saveHistory();
    return viewHistory();
  }

  async function viewUsers(params, split) {
    split = split || "test";
    const offset = Math.max(0, Number(params.get("offset")) || 0);
    const page = await api(`users?split=${split}&offset=${offset}&limit=20`);
    const go = (o) => { location.hash = `#/users/${split}?offset=${Math.max(0, Math.min(o, page.total - 1))}`; };
    const idInput = el("input", {type: "text", id: "user-id", placeholder: "user id", "aria-label": "user id"});
    const rows = el("ul", {class: "items", id: "users"});
    for (const u of page.users) {
      rows.append(el("li", {},
        el("span"),
        el("span", {}, el("a", {class: "user-link", href: `#/user/${split}/${encodeURIComponent(u.user_id)}`},
          "user " + u.user_id), el("span", {class: "muted"}, ` · ${u.history_length} items before the target`)),
        el("span"),
        el("span", {class: "meta"}, "target:", el("a", {href: itemHref(u.target.item_id)}, u.target.title || u.target.item_id))));
    }
    return [el("h1", {}, "Users"),
      el("p", {class: "muted"}, "Each user's history and held-out target as evaluated (leave-last-out): the " +
        "validation target is the second to last item, the test target the last."),
      el("div", {class: "row"},
        el("span", {}, "split"),
        ...["valid", "test"].map((s) => s === split ? el("strong", {}, s) : el("a", {href: `#/users/${s}`}, s)),
        el("button", {id: "random-user", on: {click: async () => {
          const pick = await api(`users?split=${split}&offset=${Math.floor(Math.random() * page.total)}&limit=1`);
          location.hash = `#/user/${split}/${encodeURIComponent(pick.users[0].user_id)}`;
        }}}, "Random user"),
        el("form", {on: {submit: (e) => {
          e.preventDefault();
          if (idInput.value) location.hash = `#/user/${split}/${encodeURIComponent(idInput.value)}`;
        }}}, idInput, " ", el("button", {type: "submit"}, "Open"))),
      el("div", {class: "card"}, rows,
        el("div", {class: "row", style: {marginTop: "8px"}},
          el("button", {disabled: offset === 0, on: {click: () => go(offset - 20)}}, "‹ previous"),
          el("span", {class: "muted"}, `${number(offset + 1)}–${number(offset + page.users.length)} of ${number(page.total)}`),
          el("button", {disabled: offset + 20 >= page.total, on: {click: () => go(offset + 20)}}, "next ›")))];
  }

  async function viewCodebook() {
    const [book, map] = await Promise.all([api("codebook"), api("map")]);
    const stats = el("table", {class: "stats", id: "levels"},
      el("tr", {}, el("th", {}, "level"), el("th", {}, "codes used"), el("th", {}, "utilisation"),
        el("th", {}, "perplexity"), el("th", {}, "items per code (sorted)")),
      book.utilisation.map((u, level) => el("tr", {},
        el("td", {}, level + 1),
        el("td", {}, `${number(Math.round(u * book.num_codes_per_level))} / ${number(book.num_codes_per_level)}`),
        el("td", {}, percent(u)), el("td", {}, book.perplexity[level].toFixed(1)),
        el("td", {}, usageChart(book.usage[level])))));
    const groups = book.largest_groups.map((g) => el("div", {class: "level"},
      el("div", {class: "row"}, sidChips(g.codes), el("strong", {}, `${g.count} items`)),
      itemList(g.items)));
    return [el("h1", {}, "The codebook"),
      el("div", {class: "card"},
        el("p", {}, `${number(book.num_items)} items, ${book.num_levels} levels of ${book.num_codes_per_level} codes` +
          (book.dedup === "extra_digit" ? `, then a de-dup digit of ${book.level_sizes[book.level_sizes.length - 1]} values`
            : " (no de-dup digit: colliding items share a SID)") + "."),
        stats,
        el("p", {}, `${number(book.distinct_codes)} distinct codes; ${percent(book.collision_rate)} of the items share ` +
          `their code with another (${number(book.colliding_groups)} groups, the largest of ${book.max_collision_group}).`),
        el("p", {}, "An item's nearest item by text has the same " + book.neighbour_agreement.map((share, level) =>
          `first ${level ? `${level + 1} codes` : "code"} for ${percent(share)}`).join(", ") +
          " of the items (SIDs that keep text neighbours together give the model something to generalise from).")),
      el("div", {class: "columns"},
        el("div", {class: "card", id: "map"}, el("h2", {}, "The items on two principal components"),
          el("p", {class: "muted"}, `Text embeddings projected on their first two principal components ` +
            `(${percent(map.explained_variance[0])} and ${percent(map.explained_variance[1])} of the variance), ` +
            `coloured by first-level code; ${number(map.shown)} of ${number(map.num_items)} items. Click a point to open it.`),
          mapCanvas(map)),
        el("div", {class: "card", id: "groups"}, el("h2", {}, "The largest collision groups"),
          groups.length ? groups : el("p", {class: "muted"}, "No two items share a code.")))];
  }

  function usageChart(counts) {
    const sorted = counts.slice().sort((a, b) => b - a);
    const canvas = el("canvas", {width: 240, height: 36, title: `most-used code: ${sorted[0]} items`});
    const ctx = canvas.getContext("2d");
    const top = Math.max(1, sorted[0]);
    const w = canvas.width / sorted.length;
    ctx.fillStyle = "#2857c5";
    sorted.forEach((c, i) => {
      const h = (c / top) * (canvas.height - 2);
      ctx.fillRect(i * w, canvas.height - h, Math.max(w - (w > 3 ? 1 : 0), 0.5), h);
    });
    return canvas;
  }

  function mapCanvas(map) {
    const size = {w: 560, h: 420, pad: 12};
    const canvas = el("canvas", {width: size.w, height: size.h, id: "map-canvas"});
    const tip = el("div", {id: "map-tip"});
    const ctx = canvas.getContext("2d");
    const span = (v) => { let lo = Infinity, hi = -Infinity; for (const x of v) { lo = Math.min(lo, x); hi = Math.max(hi, x); }
      return [lo, hi > lo ? hi : lo + 1]; };
    const [x0, x1] = span(map.x), [y0, y1] = span(map.y);
    const px = (x) => size.pad + ((x - x0) / (x1 - x0)) * (size.w - 2 * size.pad);
    const py = (y) => size.h - size.pad - ((y - y0) / (y1 - y0)) * (size.h - 2 * size.pad);
    const dot = map.x.length < 2000 ? 5 : 3;
    ctx.globalAlpha = 0.7;
    for (let i = 0; i < map.x.length; i++) {
      ctx.fillStyle = codeColour(map.code[i]);
      ctx.fillRect(px(map.x[i]) - dot / 2, py(map.y[i]) - dot / 2, dot, dot);
    }
    const nearest = (event) => {
      const box = canvas.getBoundingClientRect();
      const mx = (event.clientX - box.left) * (canvas.width / box.width);
      const my = (event.clientY - box.top) * (canvas.height / box.height);
      let best = -1, bestD = 64;
      for (let i = 0; i < map.x.length; i++) {
        const d = (px(map.x[i]) - mx) ** 2 + (py(map.y[i]) - my) ** 2;
        if (d < bestD) { best = i; bestD = d; }
      }
      return best;
    };
    canvas.addEventListener("mousemove", (event) => {
      const i = nearest(event);
      if (i < 0) { tip.style.display = "none"; canvas.style.cursor = "default"; return; }
      tip.textContent = `item ${map.item_id[i]} · first code ${map.code[i]}`;
      tip.style.left = (event.offsetX + 12) + "px";
      tip.style.top = (event.offsetY + 12) + "px";
      tip.style.display = "block";
      canvas.style.cursor = "pointer";
    });
    canvas.addEventListener("mouseleave", () => { tip.style.display = "none"; });
    canvas.addEventListener("click", (event) => {
      const i = nearest(event);
      if (i >= 0) location.hash = itemHref(map.item_id[i]);
    });
    return el("div", {class: "map-wrap"}, canvas, tip);
  }

  async function viewAdd() {
    const run = state.run;
    const page = [el("h1", {}, "Add items (cold start)"),
      el("p", {class: "muted"}, "A new item is embedded with the run's encoder, coded by the frozen tokenizer and " +
        "can be recommended at once, without retraining (POST /items).")];
    if (run && !run.writes_enabled) {
      page.push(el("p", {class: "card"}, "This service was started without an API key, so it takes no new items " +
        "(start it with SIDREC_API_KEY=... sidrec serve ...)."));
      return page;
    }
    const field = (name, label, options = {}) => [el("label", {for: "new-" + name}, label),
      options.area ? el("textarea", {id: "new-" + name, name, rows: 3})
        : el("input", {type: "text", id: "new-" + name, name, required: options.required || null,
                       placeholder: options.placeholder || null})];
    const result = el("div", {id: "add-result"});
    const form = el("form", {class: "add card", id: "add-form", on: {submit: async (event) => {
      event.preventDefault();
      const value = (name) => form.querySelector("#new-" + name).value.trim();
      const item = {item_id: value("item_id")};
      for (const name of ["asin", "title", "brand", "price", "description"]) if (value(name)) item[name] = value(name);
      if (value("categories")) item.categories = [value("categories").split(/\s+>\s+/).filter(Boolean)];
      result.replaceChildren(el("p", {class: "muted"}, "Embedding and coding…"));
      try {
        const added = await api("items", {method: "POST", headers: {"Content-Type": "application/json"},
                                          body: JSON.stringify({items: [item]})});
        await loadRun();
        result.replaceChildren(el("p", {}, `Added; the catalog is now generation ${added.generation} with ` +
          `${number(added.num_items)} items.`), itemList(added.added, {action: addToHistoryButton}));
      } catch (error) { result.replaceChildren(el("p", {class: "verdict miss"}, explain(error))); }
    }}},
      field("item_id", "item id", {required: true, placeholder: "not yet in the catalog"}),
      field("title", "title"), field("brand", "brand"),
      field("categories", "categories", {placeholder: "Beauty > Makeup > Lips"}),
      field("price", "price"), field("asin", "ASIN"), field("description", "description", {area: true}),
      el("span"), el("span", {}, el("button", {class: "primary", type: "submit", id: "add-submit",
        disabled: state.key ? null : true}, "Add item"),
        state.key ? null : el("span", {class: "muted"}, " type the API key at the top right first")));
    page.push(form, result);
    return page;
  }

  // --- routing: #/view/arguments?parameters ---------------------------------------------------------
  const routes = [
    [/^#\/item\/([^?]+)/, viewItem, "find"],
    [/^#\/history/, viewHistory, "history"],
    [/^#\/user\/(valid|test)\/([^?]+)/, viewUser, "users"],
    [/^#\/users(?:\/(valid|test))?/, viewUsers, "users"],
    [/^#\/codebook/, viewCodebook, "codebook"],
    [/^#\/add/, viewAdd, "add"],
    [/^/, viewFind, "find"],
  ];

  async function render() {
    const mine = ++renderCount;
    delete document.body.dataset.view;
    const hash = location.hash || "#/find";
    const [, query = ""] = hash.split(/\?(.*)/s);
    const [pattern, view, tab] = routes.find(([p]) => p.test(hash));
    for (const link of document.querySelectorAll("nav a")) link.classList.toggle("active", link.dataset.view === tab);
    showStatus("");
    try {
      const args = hash.match(pattern).slice(1).map((a) => (a === undefined ? a : decodeURIComponent(a)));
      if (!state.run) await loadRun();
      const content = await view(new URLSearchParams(query), ...args);
      if (mine !== renderCount) return;
      main.replaceChildren(...[content].flat(Infinity));
      document.body.dataset.view = tab; // for tests: the view has been drawn
    } catch (error) {
      if (mine !== renderCount) return;
      main.replaceChildren();
      showStatus(explain(error));
      document.body.dataset.view = "error";
    }
  }

  const keyInput = document.getElementById("api-key");
  keyInput.value = state.key;
  document.getElementById("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    keyInput.dispatchEvent(new Event("change"));
  });
  keyInput.addEventListener("change", () => {
    state.key = keyInput.value.trim();
    if (state.key) sessionStorage.setItem("sidrec-key", state.key);
    else sessionStorage.removeItem("sidrec-key");
    state.run = null;
    render();
  });
  window.addEventListener("hashchange", render);
  render();
})();
