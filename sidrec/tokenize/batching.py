"""Item histories -> model input tokens, vectorised (shared by training, evaluation and serving)."""

from __future__ import annotations

import numpy as np
import torch

from sidrec.tokenize.vocab import BOS, PAD, SIDVocab


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
            input_ids = torch.cat([self._user_tokens(users, input_ids.device)[:, None], input_ids], dim=1)
        return drop_padding_columns(input_ids)[:2]

    def sequence(self, items: torch.Tensor, users: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        """Windows of items (B, N), -1 = padding (left) -> input_ids, attention_mask, labels (B, [1+] N*L - 1)
        for next-token training over the whole window: labels[:, j] is the token after input j when
        that token belongs to a target item (every real item but the window's first), else PAD."""
        real = items >= 0
        is_target = real & torch.nn.functional.pad(real, (1, 0))[:, :-1]  # a real item follows a real item
        tokens = self.sid_tokens[torch.where(real, items, self.num_items)]  # (B, N, L)
        labels = torch.where(is_target[:, :, None], tokens, PAD).flatten(1)
        tokens = tokens.flatten(1)
        if self.vocab.num_user_tokens > 0:
            tokens = torch.cat([self._user_tokens(users, tokens.device)[:, None], tokens], dim=1)
            labels = torch.cat([torch.full_like(labels[:, :1], PAD), labels], dim=1)
        return drop_padding_columns(tokens[:, :-1], labels[:, 1:])

    def _user_tokens(self, users: torch.Tensor | None, device) -> torch.Tensor:
        if users is None:
            raise ValueError("this model uses user tokens: pass the user indices")
        return torch.as_tensor(self.vocab.user_token(users.cpu().numpy()), device=device)

    def targets(self, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Target items (B,) -> decoder_input_ids [BOS, t0..t_{L-2}] and labels [t0..t_{L-1}]."""
        labels = self.sid_tokens[items]
        bos = torch.full_like(labels[:, :1], BOS)
        return torch.cat([bos, labels[:, :-1]], dim=1), labels


def drop_padding_columns(input_ids: torch.Tensor, *aligned: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(input_ids, attention_mask, *aligned) without the columns that are padding in every row (the
    models count positions over real tokens and mask padding keys, so no output changes)."""
    mask = input_ids != PAD
    used = mask.any(dim=0)
    if bool(used.all()) or not bool(used.any()):
        return (input_ids, mask, *aligned)
    return (input_ids[:, used], mask[:, used], *(t[:, used] for t in aligned))
