"""Prefix trie over the valid SIDs, for constrained beam search.

Layout (flat CSR, all torch tensors on one device):

    node 0                  root (empty prefix)
    nodes 1 .. n_1          depth-1 prefixes, in lexicographic order
    then depth 2, ... down to depth L' (the leaves, one per distinct SID)

Nodes are numbered breadth-first and, within a depth, in lexicographic order of their prefix, so
the children of a node are a contiguous run of the next depth and the edge into node ``n`` is
edge ``n - 1``. ``child_offsets[n]:child_offsets[n + 1]`` are the edges out of node ``n``;
``child_tokens[e]`` is the token on edge ``e`` (sorted within a node) and ``child_nodes[e]`` the node
it leads to. Node id -1 is the dead node: it has no children and every step from it stays dead.
"""

from __future__ import annotations

import numpy as np
import torch

DEAD = -1


def unique_rows(rows: np.ndarray, radix: int) -> np.ndarray:
    """The distinct rows of a (N, L) array of values in [0, radix), lexicographically sorted: the
    same as ``np.unique(rows, axis=0)``. When radix^L fits an int64 each row is one mixed-radix key
    and a 1-D sort does it, ~20x faster than np.unique's row sort at 10^6 rows."""
    depth = rows.shape[1]
    if float(radix) ** depth >= 2.0**63:
        return np.unique(rows, axis=0)
    weights = radix ** np.arange(depth - 1, -1, -1, dtype=np.int64)
    keys = np.sort(rows @ weights)
    keys = keys[np.r_[True, keys[1:] != keys[:-1]]]
    return keys[:, None] // weights % radix


class PrefixTrie:
    def __init__(self, sids: np.ndarray, child_offsets: np.ndarray, child_tokens: np.ndarray, depth_starts: np.ndarray,
                 vocab_size: int, device: torch.device | str = "cpu"):
        self.sids = sids  # (num_leaves, L') distinct SIDs as token ids, sorted; leaf i is node first_leaf + i
        self.depth_starts = depth_starts  # node id of the first node at each depth 0..L', then num_nodes
        self.vocab_size = vocab_size
        self.device = torch.device(device)
        self.child_offsets = torch.as_tensor(child_offsets, dtype=torch.long, device=self.device)
        self.child_tokens = torch.as_tensor(child_tokens, dtype=torch.long, device=self.device)
        self.child_nodes = torch.arange(1, len(child_tokens) + 1, dtype=torch.long, device=self.device)
        # Edge key (parent node, token) as one sorted int64, so advancing is a single searchsorted.
        parents = torch.repeat_interleave(
            torch.arange(self.num_nodes, device=self.device), self.child_offsets.diff())
        self.edge_keys = parents * vocab_size + self.child_tokens

    @classmethod
    def from_sids(cls, sid_tokens: np.ndarray, vocab_size: int | None = None,
                  device: torch.device | str = "cpu") -> "PrefixTrie":
        """Trie of the SIDs in ``sid_tokens`` (N, L') token ids; duplicate SIDs are stored once."""
        sid_tokens = np.asarray(sid_tokens, dtype=np.int64)
        if sid_tokens.ndim != 2 or len(sid_tokens) == 0:
            raise ValueError(f"sid_tokens must be a non-empty (N, L') array, got shape {sid_tokens.shape}")
        if (sid_tokens < 0).any():
            raise ValueError("sid_tokens must be token ids >= 0")
        vocab_size = int(sid_tokens.max()) + 1 if vocab_size is None else int(vocab_size)
        if sid_tokens.max() >= vocab_size:
            raise ValueError(f"sid_tokens has token {sid_tokens.max()} >= vocab_size {vocab_size}")
        sids = unique_rows(sid_tokens, vocab_size)  # sorted lexicographically, which the layout relies on
        n, depth = sids.shape

        # A row starts a new depth-d node iff its first d tokens differ from the previous row's.
        new_node = np.zeros(n, dtype=bool)
        new_node[0] = True
        parent_of_row = np.zeros(n, dtype=np.int64)  # node of each row at the previous depth (root first)
        depth_starts, child_counts, child_tokens = [0, 1], [], []
        num_nodes = 1
        for d in range(depth):
            new_node[1:] |= sids[1:, d] != sids[:-1, d]
            node_of_row = num_nodes + np.cumsum(new_node) - 1
            child_counts.append(np.bincount(parent_of_row[new_node], minlength=num_nodes)[depth_starts[d]:])
            child_tokens.append(sids[new_node, d])
            num_nodes += int(new_node.sum())
            depth_starts.append(num_nodes)
            parent_of_row = node_of_row
        child_counts.append(np.zeros(n, dtype=np.int64))  # leaves
        child_offsets = np.concatenate([[0], np.cumsum(np.concatenate(child_counts))])
        return cls(sids, child_offsets, np.concatenate(child_tokens), np.asarray(depth_starts), vocab_size, device)

    def add_sids(self, sid_tokens: np.ndarray) -> "PrefixTrie":
        """A new trie that also holds ``sid_tokens`` (cold-start items). A full vectorised rebuild,
        since node ids must stay breadth-first and sorted: ~0.15 s per 100k SIDs on one CPU core."""
        sid_tokens = np.asarray(sid_tokens, dtype=np.int64).reshape(-1, self.num_levels)
        vocab_size = max(self.vocab_size, int(sid_tokens.max(initial=-1)) + 1)
        return PrefixTrie.from_sids(np.concatenate([self.sids, sid_tokens]), vocab_size, self.device)

    def to(self, device: torch.device | str) -> "PrefixTrie":
        device = torch.device(device)
        if device == self.device:
            return self
        return PrefixTrie(self.sids, self.child_offsets.cpu().numpy(), self.child_tokens.cpu().numpy(),
                          self.depth_starts, self.vocab_size, device)

    @property
    def num_nodes(self) -> int:
        return len(self.child_offsets) - 1

    @property
    def num_levels(self) -> int:
        return self.sids.shape[1]

    @property
    def first_leaf(self) -> int:
        return int(self.depth_starts[-2])

    def root(self, batch_size: int) -> torch.Tensor:
        return torch.zeros(batch_size, dtype=torch.long, device=self.device)

    def next_token_mask(self, nodes: torch.Tensor, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """Bool (M, stop - start): column j is True iff token ``start + j`` continues node ``nodes[i]``
        to a valid prefix. Dead nodes allow nothing. Children outside [start, stop) are ignored."""
        stop = self.vocab_size if stop is None else stop
        alive = nodes >= 0
        safe = nodes.clamp(min=0)
        first_edge = self.child_offsets[safe]
        counts = torch.where(alive, self.child_offsets[safe + 1] - first_edge, 0)
        # Expand every node's CSR segment into (row, edge) pairs, then scatter them into the mask.
        rows = torch.repeat_interleave(torch.arange(len(nodes), device=nodes.device), counts)
        segment_start = torch.cumsum(counts, 0) - counts
        edges = first_edge[rows] + torch.arange(len(rows), device=nodes.device) - segment_start[rows]
        cols = self.child_tokens[edges] - start
        keep = (cols >= 0) & (cols < stop - start)
        mask = torch.zeros(len(nodes), stop - start, dtype=torch.bool, device=nodes.device)
        mask[rows[keep], cols[keep]] = True
        return mask

    def advance(self, nodes: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """The child of each node along each token, or -1 (dead) where that prefix is not valid."""
        keys = nodes.clamp(min=0) * self.vocab_size + tokens
        edge = torch.searchsorted(self.edge_keys, keys).clamp(max=len(self.edge_keys) - 1)
        found = (self.edge_keys[edge] == keys) & (nodes >= 0) & (tokens >= 0) & (tokens < self.vocab_size)
        return torch.where(found, self.child_nodes[edge], DEAD)

    def __len__(self) -> int:
        """Number of distinct SIDs."""
        return len(self.sids)
