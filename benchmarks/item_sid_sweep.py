"""Validation sweep of the item-level SID model's settings on a tokenized run (plain training loop).

    python benchmarks/item_sid_sweep.py --run runs/base --epochs 10 --sim 1 --lr 2e-3 --tag E

``runs/base``: ``sidrec tokenize preset=cpu run_dir=runs/base`` (dataset, MiniLM embeddings, RK-Means
3x256 SIDs + de-dup digit). Trains ``sidrec.models.item_sid.ItemSID`` on every user's training
sequence (the last 50 training items, all positions) with Adam, linear warm-up and cosine decay over
``--epochs``, and prints validation Recall/NDCG on all validation users after every epoch, history
items excluded. This is how the CPU presets' settings were chosen (docs/results.md); the presets
then train the same network through ``sidrec run`` (Lightning). Validation only: no test here.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
import torch

from sidrec.data.split import evaluation_samples
from sidrec.decode.ranker import Ranker
from sidrec.evaluate.evaluation import evaluate
from sidrec.models.item_sid import ItemSID, ItemSIDConfig
from sidrec.run import load_catalog
from sidrec.tokenize.vocab import SIDVocab
from sidrec.train.module import lr_factor
from sidrec.train.sasrec import training_sequences


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", default="runs/base")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--bs", type=int, default=128)
    p.add_argument("--d", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=2)
    p.add_argument("--dff", type=int, default=256)
    p.add_argument("--dropout", type=float, default=0.2)
    p.add_argument("--maxlen", type=int, default=50)
    p.add_argument("--head", default="catalog", help="catalog | levels")
    p.add_argument("--text", type=int, default=1, help="text projection in the item vectors")
    p.add_argument("--codes", type=int, default=1, help="SID code embeddings in the item vectors")
    p.add_argument("--sim", type=int, default=0, help="the learnt text-similarity term")
    p.add_argument("--ids", type=int, default=0, help="a learnt embedding per item in the item vectors")
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tag", default="")
    a = p.parse_args()
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    dataset, table, embeddings = load_catalog(a.run)
    # Validation ranks as the pipeline does: the Ranker's exact top-k, history items excluded.
    ranker = Ranker(table, SIDVocab.for_table(table), exclude_history=True, item_text=embeddings)
    catalog = ranker.features
    cfg = ItemSIDConfig(level_sizes=tuple(table.level_sizes), text_dim=catalog.text.shape[1] if (a.text or a.sim) else 0,
                        text_input=bool(a.text), use_codes=bool(a.codes), head=a.head, text_sim=bool(a.sim),
                        num_id_items=dataset.num_items if a.ids else 0,
                        max_history=a.maxlen, d_model=a.d, num_layers=a.layers, num_heads=a.heads, d_ff=a.dff,
                        dropout=a.dropout)
    model = ItemSID(cfg)
    inputs, labels = training_sequences(dataset, a.maxlen)
    sequences = np.concatenate([inputs, labels[:, -1:]], axis=1)  # (users, maxlen + 1), left-padded
    valid = evaluation_samples(dataset, a.maxlen, "valid")
    opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    total = math.ceil(len(sequences) / a.bs) * a.epochs
    print(json.dumps(vars(a)), "parameters", sum(p.numel() for p in model.parameters()), flush=True)

    start, step = time.time(), 0
    for epoch in range(1, a.epochs + 1):
        losses = []
        order = rng.permutation(len(sequences))
        for b in range(0, len(order), a.bs):
            batch = torch.from_numpy(sequences[order[b:b + a.bs]])
            for group in opt.param_groups:
                group["lr"] = a.lr * lr_factor("cosine", a.warmup, step, step / total)
            loss = model.loss(batch, catalog)
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            losses.append(loss.item())
        m = evaluate(model, ranker, valid, [5, 10], 1024, a.seed, progress=False)
        weight = f" text-sim weight {model.sim_weight.item():.2f}" if model.sim_weight is not None else ""
        print(f"{a.tag} epoch {epoch} loss {np.mean(losses):.4f} val R@10 {m['recall@10']:.4f} N@10 {m['ndcg@10']:.4f} "
              f"R@5 {m['recall@5']:.4f} N@5 {m['ndcg@5']:.4f} {(time.time() - start) / 60:.2f} min{weight}", flush=True)


if __name__ == "__main__":
    main()
