"""The paper's studies (GRID Tables 1-8): each is a list of rows, a row is a set of config overrides
plus the name of the paper's row it reproduces (None for our extra rows). And studies of our own
(``cold_start``), with no paper table."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from sidrec.errors import ConfigError

PAPER_TABLES = Path(__file__).with_name("paper_tables.json")
METRICS = ("recall@5", "recall@10", "ndcg@5", "ndcg@10")


@dataclass
class Row:
    name: str  # directory name under the study directory
    label: str  # shown in the report
    overrides: list[str]
    paper_row: str | None  # row name in paper_tables.json, None = no paper counterpart


@dataclass
class Study:
    name: str
    table: int | None  # the paper's table; None for a study of our own
    title: str
    rows: list[Row]
    note: str = ""
    timing: bool = False  # also measure test decoding time per user
    extra_keys: list[str] = field(default_factory=list)
    default: str = ""  # the row with the default settings (paired differences are to it); "" = the first
    # "rows": every (row, seed) is a run of its own (sidrec.experiments.runner); "cold_start": one run
    # per seed, and the rows are ways of ranking with it (sidrec.experiments.cold_start_study)
    kind: str = "rows"
    presets: dict[str, str] | None = None  # budget -> config preset; None = the runner's BUDGETS
    base_overrides: list[str] = field(default_factory=list)  # every run, before the command line's

    @property
    def default_row(self) -> str:
        return self.default or self.rows[0].name


def _encoder_rows(encoders: str) -> list[Row]:
    """Rows for the encoder study from a comma list of models (names or local paths)."""
    rows = []
    for model in [m.strip() for m in encoders.split(",") if m.strip()]:
        low = model.lower()
        paper = None
        for size, label in (("xxl", "Flan-T5-XXL"), ("xl", "Flan-T5-XL"), ("large", "Flan-T5-Large")):
            if re.search(rf"flan-t5-{size}\b", low):
                paper = label
                break
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", model.rstrip("/").split("/")[-1])
        rows.append(Row(slug, model, [f"encoder.model={model}"], paper))
    return rows


def sid_shape_rows(codes_divisor: int = 1) -> list[Row]:
    rows = []
    for levels, codes in ((3, 128), (3, 256), (3, 512), (2, 256), (4, 256), (5, 256)):
        w = max(2, codes // codes_divisor)
        label = f"{levels}x{codes}" if codes_divisor == 1 else f"{levels}x{codes} (run as {levels}x{w})"
        rows.append(Row(f"{levels}x{codes}", label,
                        [f"tokenizer.num_levels={levels}", f"tokenizer.num_codes_per_level={w}"], f"{levels}x{codes}"))
    return rows


def cold_start_study(reserved_share: float = 0.2) -> Study:
    """Items added after training (``sidrec add-items``): one run per seed on the catalog without a
    held-out share of the items, which are then added; the rows rank with that run in five ways."""
    reserve = f"decode.cold_start_share={reserved_share}"
    return Study("cold_start", None, "cold start: items added after training, no retraining", [
        Row("model", "Model as is", [], None),
        Row("reserved", f"Model, {reserved_share:.0%} of the slots for added items", [reserve], None),
        Row("lookup", "Text lookup (last item, history excluded)", [], None),
        Row("hybrid", "Hybrid: the model, text lookup in the reserved slots", [reserve, "decode.cold_start_fill=lookup"],
            None),
        Row("popularity", "Most popular", [], None),
    ], kind="cold_start", default="model",
        # budget=cpu is the main job's model (item_sid), the one a service adds items to
        presets={"tiny": "tiny", "cpu": "cpu", "paper": "paper"},
        # spare de-dup digit values, so that added items colliding with full SID groups still fit
        base_overrides=["tokenizer.dedup_reserve=8"],
        note="Rows rank with the same trained model per seed: `model` and `reserved`/`hybrid` load it with "
             "their `decode.*` overrides; `lookup` and `popularity` do not use it.")


def get_study(name: str, encoders: str = "all-MiniLM-L6-v2", codes_divisor: int = 1,
              reserved_share: float = 0.2, rkmeans_steps: int = 3000) -> Study:
    """``codes_divisor`` shrinks codebooks for tiny budgets (a 40-item test catalog cannot fill 512 codes);
    ``reserved_share``: the cold-start study's ``decode.cold_start_share``; ``rkmeans_steps``: the
    budget's RK-Means training steps, all levels (the paper's 3 x 1k)."""
    if name == "tokenizer":
        return Study(name, 1, "SID tokenizer algorithm", [
            Row("rkmeans", "RK-Means", ["tokenizer.kind=rkmeans"], "RK-Means"),
            Row("rvq", "R-VQ", ["tokenizer.kind=rvq"], "R-VQ"),
            Row("rqvae", "RQ-VAE", ["tokenizer.kind=rqvae"], "RQ-VAE"),
            # The paper trains RQ-VAE 5x as many steps as RK-Means (15k vs 3 x 1k); a reduced budget's
            # preset may not keep that ratio, so this row restores it (at budget=paper it is the row above).
            Row("rqvae_5x", "RQ-VAE, 5x the RK-Means steps (the paper's ratio; extra)",
                ["tokenizer.kind=rqvae", f"tokenizer.rqvae_steps={5 * rkmeans_steps}"], None),
        ])
    if name == "encoder":
        return Study(name, 2, "semantic encoder", _encoder_rows(encoders),
                     note="The paper's rows are Flan-T5 Large/XL/XXL (mean pooling); pass "
                          "encoders=google/flan-t5-large,... to run them. Other encoders have no paper value.")
    if name == "sid_shape":
        return Study(name, 3, "SID shape L x W (RK-Means)", sid_shape_rows(codes_divisor), default="3x256",
                     note="" if codes_divisor == 1 else f"codebooks divided by {codes_divisor} for this budget")
    if name == "user_tokens":
        return Study(name, 4, "TIGER user tokens", [
            Row(str(n), f"{n} user tokens", [f"model.num_user_tokens={n}"], str(n)) for n in (0, 2000, 4000, 6000, 8000)
        ])
    if name == "architecture":
        return Study(name, 5, "architecture", [
            Row("encoder_decoder", "Enc-Dec", ["model.arch=encoder_decoder"], "Enc-Dec"),
            # from_start: presets may number encoder positions from the end, which a causal stack cannot.
            Row("decoder_only", "Dec-only", ["model.arch=decoder_only", "model.positions=from_start"], "Dec-only"),
            # The paper explains Dec-only's gap by the encoder's dense attention over the history; a
            # decoder-only model trained at every position, and our item-level model, test that.
            Row("decoder_only_all_positions", "Dec-only, trained at all positions (extra)",
                ["model.arch=decoder_only", "model.positions=from_start", "model.objective=all_positions"], None),
            Row("item_sid", "item_sid at the study's sizes, history excluded (ours; extra)",
                ["model.arch=item_sid", "model.item_inputs=codes,text,id", "model.text_sim=true",
                 "decode.exclude_history=true"], None),
            Row("moe", "Enc-Dec + MoE (4 experts, top-2; extra)", ["model.arch=encoder_decoder", "model.num_experts=4"],
                None),
        ])
    if name == "augmentation":
        return Study(name, 6, "training data augmentation", [
            Row("sliding_window", "Sliding Window", ["train.sliding_window=true"], "Sliding Window"),
            Row("no_augmentation", "No Augmentation", ["train.sliding_window=false"], "No Augmentation"),
        ])
    if name == "dedup":
        return Study(name, 7, "SID de-duplication", [
            Row("extra_digit", "With De-dup. (extra digit)", ["tokenizer.dedup=extra_digit"], "With De-dup."),
            Row("random", "No De-dup. (random pick)", ["tokenizer.dedup=random"], "No De-dup."),
        ])
    if name == "decoding":
        return Study(name, 8, "beam search", [
            Row("constrained", "Constrained", ["decode.constrained=true"], "Constrained"),
            Row("free_form", "Free-form", ["decode.constrained=false"], "Free-form"),
        ], timing=True, extra_keys=["decode_ms_per_user"],
            note="decode_ms_per_user: wall time of the test-set beam search divided by the number of users.")
    if name == "cold_start":
        return cold_start_study(reserved_share)
    raise ConfigError(f"unknown study {name!r} (have: {', '.join(STUDIES + OWN_STUDIES)})")


STUDIES = ("tokenizer", "encoder", "sid_shape", "user_tokens", "architecture", "augmentation", "dedup", "decoding")
OWN_STUDIES = ("cold_start",)  # no paper table


@lru_cache(maxsize=1)
def paper_tables() -> dict:
    return json.loads(PAPER_TABLES.read_text())


def paper_value(table: int, dataset: str, row: str | None) -> dict[str, float] | None:
    """The paper's four metrics for (table, dataset, row), or None where the paper has no such row."""
    if row is None:
        return None
    for result in paper_tables()["tables"][str(table)]["results"]:
        if result["dataset"] == dataset and result["row"] == row:
            return {m: result[m] for m in METRICS}
    return None
