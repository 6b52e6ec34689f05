"""Training throughput of sidrec's encoder-decoder vs Hugging Face T5 of the same size, on CPU.

Both models: d_model 128, 6 heads x d_kv 64, d_ff 1024, 4 + 4 layers, the same vocabulary and
dropout, fp32, train mode, Adam (lr 5e-4, weight decay 1e-6 as in the paper), the same random
batches and thread count. HF T5 is used as its docs show: ``model(input_ids, attention_mask,
labels=...)`` with its own shift-right and loss. Steps alternate between the two models so load on
a shared machine hits both alike; the median step time gives samples/s.

Two history-length settings: ``full`` (every history 20 items, no padding) and ``beauty`` (lengths
of the bundled Amazon Beauty sliding-window samples, left-padded: about a third of the source
tokens are real, and sidrec's packing skips the rest; HF T5 computes over the padding).

    python benchmarks/train_throughput.py [--quick]   # --quick: full histories only, <= 60 s

Prints a table per setting and, last, ``train_speedup_vs_hf: <ours / HF samples per second>`` for
full histories (the conservative case).

    python benchmarks/train_throughput.py --epoch [--run-dir runs/...]

times training as the pipeline runs it on CPU: the bundled Beauty sliding-window samples in
length-bucketed batches (shuffled pools sorted by history length), bf16 autocast where the CPU has
native bf16, fused Adam, gradient clipping. The timed batches are a uniform random draw from one
epoch's batches, so the figure is the epoch's length mix, not one length. HF T5 is timed twice: as
it is usually fed (random batches padded to their longest history, fp32), and on the very batches
ours gets with the same bf16 autocast. SIDs come from ``--run-dir``'s SID table, else random codes
of the same shape (speed depends on shapes only). Closing lines ``train_speedup_vs_hf: <ours / HF
padded fp32>`` and ``train_samples_per_s: <ours>``.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import numpy as np

import torch
import torch.nn.functional as F
from transformers import T5Config, T5ForConditionalGeneration

from sidrec.data.loaders import load_bundled
from sidrec.data.split import training_samples
from sidrec.models import EncoderDecoder, TransformerConfig
from sidrec.tokenize.vocab import BOS, PAD

LR, WEIGHT_DECAY = 5e-4, 1e-6


def history_lengths(kind: str, num: int, items: int, gen: torch.Generator) -> torch.Tensor:
    """Items per history: ``full`` = all ``items``; ``beauty`` = drawn from the sliding-window training
    samples of the bundled Amazon Beauty data (mostly short: about a third of the tokens are real)."""
    if kind == "full":
        return torch.full((num,), items)
    lengths = torch.from_numpy(training_samples(load_bundled("beauty"), max_history=items).history_lengths())
    return lengths[torch.randint(len(lengths), (num,), generator=gen)]


def make_batches(num_batches: int, batch_size: int, items: int, levels: int, vocab_size: int, history: str, seed: int):
    """Random SID tokens: left-padded histories of ``items`` items at most, a target item of ``levels`` tokens."""
    gen = torch.Generator().manual_seed(seed)
    lengths = history_lengths(history, num_batches * batch_size, items, gen).view(num_batches, batch_size, 1)
    batches = []
    for batch_lengths in lengths:
        mask = torch.arange(items).flip(0)[None, :] < batch_lengths  # left padding, per item
        mask = mask.repeat_interleave(levels, dim=1)
        input_ids = torch.randint(2, vocab_size, mask.shape, generator=gen).masked_fill(~mask, PAD)
        targets = torch.randint(2, vocab_size, (batch_size, levels), generator=gen)
        batches.append((input_ids, mask, targets))
    return batches


def ours_step(model, optimizer, batch) -> float:
    input_ids, mask, targets = batch
    decoder_input_ids = torch.cat([torch.full_like(targets[:, :1], BOS), targets[:, :-1]], dim=1)
    logits, _ = model(input_ids, mask, decoder_input_ids)  # dense: no load-balancing loss
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
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


def build_models(vocab_size: int, source_len: int, target_len: int, dropout: float) -> dict:
    torch.manual_seed(0)
    ours = EncoderDecoder(
        TransformerConfig(
            vocab_size=vocab_size,
            num_layers=4,
            num_heads=6,
            d_model=128,
            d_kv=64,
            d_ff=1024,
            dropout=dropout,
            max_source_len=source_len,
            max_target_len=target_len,
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
            dropout_rate=dropout,
            pad_token_id=PAD,
            decoder_start_token_id=BOS,
            eos_token_id=None,
        )
    )
    return {"sidrec": (ours, ours_step), f"HF T5 ({hf.config._attn_implementation})": (hf, hf_step)}


def measure(args, history: str, vocab_size: int) -> list[float]:
    """Prints one table; returns samples/s of [ours, HF]."""
    models = build_models(vocab_size, args.items * args.levels, args.levels, args.dropout)
    optimizers = {
        name: torch.optim.Adam(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
        for name, (model, _) in models.items()
    }
    batches = make_batches(
        args.warmup + args.steps, args.batch_size, args.items, args.levels, vocab_size, history, seed=0
    )
    step_times: dict[str, list[float]] = {name: [] for name in models}
    losses: dict[str, float] = {}
    for i, batch in enumerate(batches):
        for name, (model, step) in models.items():
            model.train()
            start = time.perf_counter()
            losses[name] = step(model, optimizers[name], batch)
            if i >= args.warmup:
                step_times[name].append(time.perf_counter() - start)

    real_share = sum(mask.float().mean().item() for _, mask, _ in batches) / len(batches)
    print(f"\n{history} histories ({real_share:.0%} of source tokens real)")
    print(f"{'model':<18} {'params':>10} {'median step s':>14} {'samples/s':>10} {'last loss':>10}")
    rates = []
    for name, (model, _) in models.items():
        median = statistics.median(step_times[name])
        rates.append(args.batch_size / median)
        params = sum(p.numel() for p in model.parameters())
        print(f"{name:<18} {params:>10,} {median:>14.3f} {rates[-1]:>10.1f} {losses[name]:>10.3f}")
    print(f"speedup ({history} histories): {rates[0] / rates[1]:.2f}x")
    return rates


def beauty_batches(args, rng: np.random.Generator):
    """(tokenizer batcher, bucketed epoch batches, random epoch batches) over the Beauty training samples."""
    from sidrec.tokenize.batching import TokenBatcher
    from sidrec.train.data import ShardedBatchSampler, SampleBatches
    from sidrec.tokenize.vocab import SIDVocab

    samples = training_samples(load_bundled("beauty"), max_history=args.items)
    if args.run_dir:
        from sidrec.run import RunDir

        run = RunDir(args.run_dir)
        sids, vocab = run.sid_table.sids, run.vocab
    else:  # 3 levels of --codes codes + a de-dup digit, as Beauty gets from RK-Means 3x256
        num_items = int(samples.histories.max()) + 1
        sizes = (args.codes,) * (args.levels - 1) + (18,)
        sids = np.stack([rng.integers(0, size, num_items) for size in sizes], axis=1)
        vocab = SIDVocab(sizes)
    batcher = TokenBatcher(vocab.sid_to_tokens(sids), vocab)
    data = SampleBatches(samples)
    bucketed = ShardedBatchSampler(len(samples), args.batch_size, True, 0, lengths=samples.history_lengths())
    random = ShardedBatchSampler(len(samples), args.batch_size, True, 0)
    return batcher, vocab, [data[b] for b in bucketed], [data[b] for b in random]


def epoch_mode(args) -> None:
    import torch.nn.functional as F

    from sidrec.train.fit import cpu_has_bf16

    rng = np.random.default_rng(0)
    batcher, vocab, bucketed, random = beauty_batches(args, rng)
    bf16 = cpu_has_bf16()
    source_len = args.items * vocab.num_levels
    (ours_name, (ours, _)), (hf_name, (hf, _)) = build_models(vocab.size, source_len, vocab.num_levels, args.dropout).items()
    draw = rng.choice(len(bucketed), size=min(args.epoch_batches, len(bucketed)), replace=False)
    print(f"Beauty epoch: {len(bucketed)} bucketed batches of {args.batch_size}; timing {len(draw)} drawn at random "
          f"(HF: {args.hf_batches}), {args.threads} threads, bf16 autocast: {'yes' if bf16 else 'no (CPU lacks bf16)'}")

    def run(model, batches, step, use_bf16: bool) -> tuple[float, float]:
        optimizer = torch.optim.Adam(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY, fused=True)
        model.train()
        autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if use_bf16 else contextlib.nullcontext
        step(model, optimizer, batches[0], autocast)  # warm-up
        samples, start = 0, time.perf_counter()
        for batch in batches[1:]:
            loss = step(model, optimizer, batch, autocast)
            samples += len(batch["targets"])
        return samples / (time.perf_counter() - start), loss

    def ours_train_step(model, optimizer, batch, autocast) -> float:
        input_ids, mask = batcher.inputs(batch["histories"])
        decoder_input_ids, labels = batcher.targets(batch["targets"])
        with autocast():
            logits, _ = model(input_ids, mask, decoder_input_ids)
        loss = F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=PAD)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        return loss.item()

    def hf_train_step(model, optimizer, batch, autocast) -> float:
        input_ids, mask = batcher.inputs(batch["histories"])  # padded to the batch's longest history
        with autocast():
            loss = model(input_ids=input_ids, attention_mask=mask.long(), labels=batcher.sid_tokens[batch["targets"]]).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        return loss.item()

    timed = [bucketed[i] for i in draw]
    ours_rate, _ = run(ours, timed, ours_train_step, bf16)
    hf_padded, _ = run(hf, random[: args.hf_batches + 1], hf_train_step, False)
    hf_same, _ = run(hf, timed[: args.hf_batches + 1], hf_train_step, bf16)
    print(f"{'model, batches':<44} {'samples/s':>10}")
    print(f"{ours_name + ', bucketed' + (' bf16' if bf16 else ' fp32'):<44} {ours_rate:>10.1f}")
    print(f"{hf_name + ', random padded fp32':<44} {hf_padded:>10.1f}")
    print(f"{hf_name + ', same bucketed' + (' bf16' if bf16 else ' fp32'):<44} {hf_same:>10.1f}")
    print(f"speedup vs HF on the same batches: {ours_rate / hf_same:.2f}x")
    print(f"train_speedup_vs_hf: {ours_rate / hf_padded:.2f}")
    print(f"train_samples_per_s: {ours_rate:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="full histories only, 1 warm-up + 3 timed steps (<= 60 s)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--items", type=int, default=20, help="history items (max)")
    parser.add_argument("--levels", type=int, default=4, help="SID tokens per item (3 levels + de-dup digit)")
    parser.add_argument("--codes", type=int, default=256, help="codes per SID level")
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=6, help="timed steps per model")
    parser.add_argument("--epoch", action="store_true", help="real Beauty batches as training sees them (see above)")
    parser.add_argument("--epoch-batches", type=int, default=64, help="--epoch: batches of ours timed")
    parser.add_argument("--hf-batches", type=int, default=12, help="--epoch: batches of HF timed per setting")
    parser.add_argument("--run-dir", default="", help="--epoch: take the SID table of this run")
    args = parser.parse_args()
    if args.quick:
        args.warmup, args.steps = 1, 3

    torch.set_num_threads(args.threads)
    if args.epoch:
        epoch_mode(args)
        return
    vocab_size = 2 + args.levels * args.codes  # PAD, BOS, then one token range per level
    print(
        f"training steps on CPU: batch {args.batch_size}, source {args.items * args.levels} tokens, "
        f"target {args.levels}, vocab {vocab_size}, {args.threads} threads, fp32, Adam, "
        f"{args.warmup} warm-up + {args.steps} timed steps per model"
    )
    ours_rate, hf_rate = measure(args, "full", vocab_size)
    if not args.quick:
        measure(args, "beauty", vocab_size)
    print(f"train_speedup_vs_hf: {ours_rate / hf_rate:.2f}")


if __name__ == "__main__":
    main()
