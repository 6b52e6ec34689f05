"""Item histories -> model input tokens, vectorised (shared by training, evaluation and serving)."""

from __future__ import annotations

import numpy as np
import torch

from sidrec.vocab import BOS, PAD, SIDVocab


class TokenBatcher:
    """Holds the item -> SID-token table on a device and turns item-index batches into model inputs."""

    def __init__(self, sid_tokens: np.ndarray, vocab: SIDVocab, device: torch.device | str = "cpu"):
        self.vocab = vocab
        self.num_items, self.sid_len = sid_tokens.shape
        # Row num_items is the padding item: all PAD tokens.
        table = np.concatenate([sid_tokens, np.full((1, self.sid_len), PAD)], axis=0)
        self.sid_tokens = torch.as_tensor(table, dtype=torch.long, device=device)

    def to(self, device) -> "TokenBatcher":
        self.sid_tokens = self.sid_tokens.to(device)
        return self

    def inputs(self, histories: torch.Tensor, users: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """histories (B, H) item indices, -1 = padding (left) -> input_ids, attention_mask (B, [1+] H*L).

        Columns that are padding in every row are dropped: the models number positions over real
        tokens and mask padding keys, so this changes no output and saves attention work on the
        short histories typical of serving and evaluation batches."""
        items = torch.where(histories < 0, self.num_items, histories)
        input_ids = self.sid_tokens[items].flatten(1)
        if self.vocab.num_user_tokens > 0:
            if users is None:
                raise ValueError("this model uses user tokens: pass the user indices")
            user_tok = torch.as_tensor(self.vocab.user_token(users.cpu().numpy()), device=input_ids.device)
            input_ids = torch.cat([user_tok[:, None], input_ids], dim=1)
        mask = input_ids != PAD
        used = mask.any(dim=0)
        if not bool(used.all()) and bool(used.any()):
            input_ids, mask = input_ids[:, used], mask[:, used]
        return input_ids, mask

    def targets(self, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Target items (B,) -> decoder_input_ids [BOS, t0..t_{L-2}] and labels [t0..t_{L-1}]."""
        labels = self.sid_tokens[items]
        bos = torch.full_like(labels[:, :1], BOS)
        return torch.cat([bos, labels[:, :-1]], dim=1), labels
