"""Training throughput of sidrec's encoder-decoder vs Hugging Face T5 of the same size, on CPU.

Both models: d_model 128, 6 heads x d_kv 64, d_ff 1024, 4 + 4 layers, the same vocabulary and
dropout, fp32, train mode, Adam (lr 5e-4, weight decay 1e-6 as in the paper), the same random
batches and thread count. HF T5 is used as its docs show: ``model(input_ids, attention_mask,
labels=...)`` with its own shift-right and loss. Steps alternate between the two models so load on
a shared machine hits both alike; the median step time gives samples/s.

    python benchmarks/train_throughput.py [--quick]

Prints a table and, last, ``train_speedup_vs_hf: <ours / HF samples per second>``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from transformers import T5Config, T5ForConditionalGeneration

from sidrec.models import EncoderDecoder, EncoderDecoderConfig
from sidrec.vocab import BOS, PAD

LR, WEIGHT_DECAY = 5e-4, 1e-6


def make_batches(num_batches: int, batch_size: int, items: int, levels: int, vocab_size: int, seed: int):
    """Random SID histories of 1..items items, left-padded, and a target item of ``levels`` tokens."""
    gen = torch.Generator().manual_seed(seed)
    source_len = items * levels
    batches = []
    for _ in range(num_batches):
        history_items = torch.randint(1, items + 1, (batch_size, 1), generator=gen)
        mask = torch.arange(items).flip(0)[None, :] < history_items  # left padding, per item
        mask = mask.repeat_interleave(levels, dim=1)
        input_ids = torch.randint(2, vocab_size, (batch_size, source_len), generator=gen).masked_fill(~mask, PAD)
        targets = torch.randint(2, vocab_size, (batch_size, levels), generator=gen)
        batches.append((input_ids, mask, targets))
    return batches


def ours_step(model, optimizer, batch) -> float:
    input_ids, mask, targets = batch
    decoder_input_ids = torch.cat([torch.full_like(targets[:, :1], BOS), targets[:, :-1]], dim=1)
    logits, aux_loss = model(input_ids, mask, decoder_input_ids)
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)) + aux_loss
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.item()


def hf_step(model, optimizer, batch) -> float:
    input_ids, mask, targets = batch
    loss = model(input_ids=input_ids, attention_mask=mask.long(), labels=targets).loss
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 warm-up + 3 timed steps per model (<= 60 s)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--items", type=int, default=20, help="history items (max)")
    parser.add_argument("--levels", type=int, default=4, help="SID tokens per item (3 levels + de-dup digit)")
    parser.add_argument("--codes", type=int, default=256, help="codes per SID level")
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=8, help="timed steps per model")
    args = parser.parse_args()
    if args.quick:
        args.warmup, args.steps = 1, 3

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    vocab_size = 2 + args.levels * args.codes  # PAD, BOS, then one token range per level
    ours = EncoderDecoder(
        EncoderDecoderConfig(
            vocab_size=vocab_size,
            num_layers=4,
            num_heads=6,
            d_model=128,
            d_kv=64,
            d_ff=1024,
            dropout=args.dropout,
            max_source_len=args.items * args.levels,
            max_target_len=args.levels,
        )
    )
    hf = T5ForConditionalGeneration(
        T5Config(
            vocab_size=vocab_size,
            d_model=128,
            d_kv=64,
            d_ff=1024,
            num_layers=4,
            num_decoder_layers=4,
            num_heads=6,
            dropout_rate=args.dropout,
            pad_token_id=PAD,
            decoder_start_token_id=BOS,
            eos_token_id=None,
        )
    )
    models = {
        "sidrec": (ours, ours_step),
        f"HF T5 ({hf.config._attn_implementation})": (hf, hf_step),
    }
    optimizers = {
        name: torch.optim.Adam(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
        for name, (model, _) in models.items()
    }
    batches = make_batches(args.warmup + args.steps, args.batch_size, args.items, args.levels, vocab_size, seed=0)

    step_times: dict[str, list[float]] = {name: [] for name in models}
    losses: dict[str, float] = {}
    for i, batch in enumerate(batches):
        for name, (model, step) in models.items():
            model.train()
            start = time.perf_counter()
            losses[name] = step(model, optimizers[name], batch)
            if i >= args.warmup:
                step_times[name].append(time.perf_counter() - start)

    print(
        f"batch {args.batch_size}, source {args.items * args.levels} tokens (1..{args.items} items, left-padded), "
        f"target {args.levels}, vocab {vocab_size}, {args.threads} threads, fp32, "
        f"{args.warmup} warm-up + {args.steps} timed steps"
    )
    print(f"{'model':<18} {'params':>10} {'median step s':>14} {'samples/s':>10} {'last loss':>10}")
    samples_per_s = {}
    for name, (model, _) in models.items():
        median = statistics.median(step_times[name])
        samples_per_s[name] = args.batch_size / median
        params = sum(p.numel() for p in model.parameters())
        print(f"{name:<18} {params:>10,} {median:>14.3f} {samples_per_s[name]:>10.1f} {losses[name]:>10.3f}")
    ours_rate, hf_rate = samples_per_s.values()
    print(f"train_speedup_vs_hf: {ours_rate / hf_rate:.2f}")


if __name__ == "__main__":
    main()
