import math

import pytest

from sidrec.train.module import lr_factor


def test_warmup_then_cosine_and_linear_decay_to_zero():
    assert lr_factor("constant", 0, 0, 0.7) == 1.0
    assert lr_factor("constant", 10, 0, 0.0) == pytest.approx(0.1)  # linear warm-up from step 0
    assert lr_factor("constant", 10, 9, 0.0) == 1.0
    assert lr_factor("cosine", 0, 5, 0.5) == pytest.approx(0.5)
    assert lr_factor("cosine", 0, 5, 1.0) == pytest.approx(0.0)
    assert lr_factor("linear", 0, 5, 0.25) == pytest.approx(0.75)
    assert lr_factor("cosine", 100, 10, 0.0) == pytest.approx(0.11)  # warm-up and decay multiply
    assert lr_factor("linear", 0, 5, 1.7) == 0.0  # past the end (time cap overshoot): stays annealed
    values = [lr_factor("cosine", 0, s, s / 100) for s in range(101)]
    assert all(a >= b for a, b in zip(values, values[1:])) and math.isclose(values[-1], 0.0, abs_tol=1e-12)


def test_unknown_schedule_is_an_error():
    with pytest.raises(ValueError, match="unknown lr_schedule 'step'"):
        lr_factor("step", 0, 0, 0.0)
