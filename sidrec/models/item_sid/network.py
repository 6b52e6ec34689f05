"""An item-level semantic-ID model: one position per history item, trained at every position.

Each item is represented by its semantic ID and its text, optionally plus a learnt per-item vector:

    item vector v_i = sum_l code_emb_l[sid_i,l] + text_proj(text_i) [+ id_emb_i]

(``text_i`` is the frozen text embedding the SID was quantised from; each part can be off). A causal
transformer reads the history's item vectors (SASRec's layout: left padding, positions counted from
the most recent item) and its state h_t at every position predicts the next item.

Heads (``head``):
  catalog  score(i) = h . v_i (the output vectors are the input item vectors, tied): an
           exact softmax over the whole catalog, the next-item cross-entropy of SASRec.
  levels   RPG-style parallel heads: one softmax per SID level over that level's codes, trained with
           a cross-entropy per level; an item's score is the sum of its codes' log-probabilities.
Both rank the whole catalog exactly (a matmul or a gather and a top-k): no beam search, no invalid
item. ``text_sim`` adds w * cos(text_i, text of the last history item), w learnt, to every score.

New items (cold start) only need a SID and a text embedding (items added after training have no
learnt vector), so the catalog is passed in rather than stored: any object with ``sids`` (N, L) long digits and
``text`` (N, D) unit text embeddings (D may be 0 when the model reads no text), such as the
Ranker's ``ItemFeatures``. Plain PyTorch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from sidrec.models.sasrec import SelfAttentionBlock, causal_pass

HEADS = ("catalog", "levels")


@dataclass
class ItemSIDConfig:
    level_sizes: tuple[int, ...]  # values per SID digit (the de-dup digit included when present)
    text_dim: int = 0  # width of the catalog's text embeddings; 0 = the model reads no text
    use_codes: bool = True  # SID code embeddings in the item vectors
    text_input: bool = True  # a projection of the text embedding in the item vectors (needs text_dim)
    # > 0: also a learnt embedding per trained item (items 0..num_id_items-1); items added later (cold
    # start) have none and are represented by their codes and text alone.
    num_id_items: int = 0
    head: str = "catalog"  # catalog | levels
    text_sim: bool = False  # add a learnt weight times cos(text_i, text of the last item)
    max_history: int = 50
    d_model: int = 64
    num_layers: int = 2
    num_heads: int = 2
    d_ff: int = 256
    dropout: float = 0.2


class ItemComposer(nn.Module):
    """Item vectors: SID code embeddings (one table per level, offsets into one matrix) + a projection
    of the text embedding + (optionally) a learnt per-item embedding."""

    def __init__(self, cfg: ItemSIDConfig):
        super().__init__()
        offsets = torch.tensor([0, *cfg.level_sizes[:-1]]).cumsum(0)
        self.register_buffer("offsets", offsets, persistent=False)
        self.register_buffer("max_digit", torch.tensor(cfg.level_sizes) - 1, persistent=False)
        self.codes = nn.Embedding(sum(cfg.level_sizes), cfg.d_model) if cfg.use_codes else None
        self.text = nn.Linear(cfg.text_dim, cfg.d_model, bias=False) if cfg.text_dim and cfg.text_input else None
        # Row num_id_items stays zero: the vector of every item added after training.
        self.ids = (nn.Embedding(cfg.num_id_items + 1, cfg.d_model, padding_idx=cfg.num_id_items)
                    if cfg.num_id_items else None)
        for table in (self.codes, self.ids):
            if table is not None:
                nn.init.normal_(table.weight, std=0.02)
        if self.ids is not None:
            with torch.no_grad():
                self.ids.weight[-1].zero_()

    def forward(self, catalog, index: torch.Tensor | None = None) -> torch.Tensor:
        """Vectors (..., d_model) of the items ``index`` (any shape; None = the whole catalog)."""
        sids = catalog.sids if index is None else catalog.sids[index]
        out = 0
        if self.codes is not None:
            # Digits beyond a level's size (a de-dup digit of items added later) share the last row.
            out = self.codes(torch.minimum(sids, self.max_digit) + self.offsets).sum(-2)
        if self.text is not None:
            text = catalog.text if index is None else catalog.text[index]
            out = out + self.text(text.to(self.text.weight.dtype))
        if self.ids is not None:
            items = torch.arange(len(catalog.sids), device=sids.device) if index is None else index
            out = out + self.ids(items.clamp(max=self.ids.padding_idx))
        return out


class ItemSID(nn.Module):
    ranks_catalog = True  # exact scores over the catalog (Ranker: a top-k, not a beam search)

    def __init__(self, cfg: ItemSIDConfig):
        super().__init__()
        if cfg.head not in HEADS:
            raise ValueError(f"head={cfg.head!r}: expected one of {', '.join(HEADS)}")
        if not cfg.use_codes and not (cfg.text_input and cfg.text_dim):
            raise ValueError("an item vector needs SID codes or text (use_codes=False needs text_input and text_dim > 0)")
        if cfg.head == "levels" and not cfg.use_codes:
            raise ValueError("head=levels predicts SID codes: it needs use_codes=True")
        self.cfg = cfg
        d = cfg.d_model
        self.items = ItemComposer(cfg)
        self.pos_emb = nn.Embedding(cfg.max_history, d)
        self.emb_drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(SelfAttentionBlock(d, cfg.num_heads, cfg.d_ff, cfg.dropout)
                                    for _ in range(cfg.num_layers))
        self.final_ln = nn.LayerNorm(d)
        # levels head: one projection of the state per level, against that level's code embeddings.
        self.level_proj = nn.Linear(d, d * len(cfg.level_sizes)) if cfg.head == "levels" else None
        self.sim_weight = nn.Parameter(torch.tensor(5.0)) if cfg.text_sim and cfg.text_dim else None
        nn.init.normal_(self.pos_emb.weight, std=0.02)

    # -- the causal pass -------------------------------------------------------------------------

    def hidden(self, items: torch.Tensor, catalog) -> torch.Tensor:
        """(B, T) item indices (-1 = left padding) -> (B, T', d) states of the last T' <= T columns (those
        that are padding in every row are dropped); position t has seen items[:, :t+1]."""
        if items.shape[1] > self.cfg.max_history:
            items = items[:, -self.cfg.max_history:]
        real_columns = (items >= 0).any(0).nonzero()
        if len(real_columns):  # drop the columns that are padding in every row (positions count from the end)
            items = items[:, int(real_columns[0]):]
        t = items.shape[1]
        pad = items < 0
        x = self.items(catalog, items.clamp(min=0))
        # From the end: the most recent item keeps its position whatever the history length.
        positions = torch.arange(self.cfg.max_history - t, self.cfg.max_history, device=items.device)
        return causal_pass(x + self.pos_emb(positions)[None], pad, self.emb_drop, self.blocks, self.final_ln)

    # -- scores over the catalog -----------------------------------------------------------------

    def output_vectors(self, catalog) -> torch.Tensor:
        """(N, d) output item vectors of the catalog head: the input item vectors (tied)."""
        return self.items(catalog)

    def level_log_probs(self, states: torch.Tensor) -> list[torch.Tensor]:
        """(M, d) states -> per level (M, size_l) log-probabilities of that level's codes."""
        sizes = list(self.cfg.level_sizes)
        per_level = self.level_proj(states).chunk(len(sizes), dim=-1)
        tables = self.items.codes.weight.split(sizes)
        return [F.log_softmax((s @ w.T).float(), dim=-1) for s, w in zip(per_level, tables)]

    def scores(self, states: torch.Tensor, catalog, last_items: torch.Tensor | None = None) -> torch.Tensor:
        """(M, d) states -> (M, N) scores of every catalog item. ``last_items`` (M,): the most recent
        history item of each state, for the text-similarity term."""
        if self.cfg.head == "catalog":
            scores = (states @ self.output_vectors(catalog).T.to(states.dtype)).float()
        else:
            sids = torch.minimum(catalog.sids, self.items.max_digit)
            scores = sum(lp[:, sids[:, l]] for l, lp in enumerate(self.level_log_probs(states)))
        if self.sim_weight is not None and last_items is not None:
            text = catalog.text.float()
            scores = scores + self.sim_weight * (text[last_items] @ text.T)
        return scores

    # -- training and inference --------------------------------------------------------------------

    def loss(self, items: torch.Tensor, catalog, label_smoothing: float = 0.0) -> torch.Tensor:
        """(B, T + 1) item sequences (-1 = left padding): every item after the first real one is the
        target of the state before it. Mean next-item cross-entropy over those targets."""
        states = self.hidden(items[:, :-1], catalog)
        inputs, labels = items[:, -states.shape[1] - 1:-1], items[:, -states.shape[1]:]
        keep = (inputs >= 0) & (labels >= 0)
        states = states[keep]
        targets, last = labels[keep], inputs[keep]
        if self.cfg.head == "levels":
            sids = catalog.sids[targets]
            losses = [F.nll_loss(lp, sids[:, l].clamp(max=lp.shape[1] - 1)) for l, lp in
                      enumerate(self.level_log_probs(states))]
            loss = torch.stack(losses).sum()
            if self.sim_weight is not None:  # the similarity term is trained through a catalog softmax
                loss = loss + F.cross_entropy(self.scores(states, catalog, last), targets)
            return loss
        return F.cross_entropy(self.scores(states, catalog, last), targets, label_smoothing=label_smoothing)

    def user_states(self, histories: torch.Tensor, catalog) -> torch.Tensor:
        """(B, H) left-padded histories (each with >= 1 item) -> (B, d) states that score the next item."""
        return self.hidden(histories, catalog)[:, -1]
