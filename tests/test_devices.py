import pytest
import torch

from sidrec.devices import resolve_device
from sidrec.errors import ConfigError


def test_auto_is_the_gpu_when_there_is_one():
    assert resolve_device("auto", "x.device").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu", "x.device") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
@pytest.mark.parametrize("setting", ["cuda", "gpu", "cuda:1"])
def test_a_gpu_asked_for_must_exist(setting):
    with pytest.raises(ConfigError, match=f"encoder.device='{setting}' but no CUDA device"):
        resolve_device(setting, "encoder.device")


def test_a_name_that_is_no_device_is_one_line():
    with pytest.raises(ConfigError, match="lookup.device='tpu9' is not a device"):
        resolve_device("tpu9", "lookup.device")
