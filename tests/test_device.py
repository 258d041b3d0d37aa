"""Device choice: "auto" follows what this machine has, names it lacks fail in one line."""

from __future__ import annotations

import pytest
import torch

from minigpt.device import DEVICES, check_device_name, cpu_info, resolve_device


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def test_auto_picks_cuda_then_mps_then_cpu():
    if torch.cuda.is_available():
        expected = "cuda"
    elif _mps_available():
        expected = "mps"
    else:
        expected = "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device(None) == resolve_device("auto")


def test_named_devices():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("CPU") == torch.device("cpu")
    given = torch.device("cpu")
    assert resolve_device(given) is given  # a torch.device is taken as it is
    for name in (*DEVICES, "cuda:0", "cuda:12"):
        check_device_name(name)  # every documented form is accepted


@pytest.mark.parametrize("name", ["tpu", "gpu", "cuda:x", "cpu:0", ""])
def test_unknown_names_fail_with_the_choices(name):
    with pytest.raises(ValueError) as err:
        resolve_device(name) if name else check_device_name(name)
    message = str(err.value)
    assert "unknown device" in message and "use auto, cpu, cuda, cuda:N or mps" in message
    assert "\n" not in message


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_says_use_cpu():
    for name in ("cuda", "cuda:1"):
        with pytest.raises(ValueError, match="CUDA is not available; use cpu"):
            resolve_device(name)


@pytest.mark.skipif(_mps_available(), reason="this machine has MPS")
def test_mps_without_mps_says_use_cpu():
    with pytest.raises(ValueError, match="MPS is not available; use cpu"):
        resolve_device("mps")


def test_cpu_info_reads_a_field_of_proc_cpuinfo_or_says_none(tmp_path, monkeypatch):
    fake = tmp_path / "cpuinfo"
    fake.write_text("processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel Xeon\n")
    real_open = open
    monkeypatch.setattr("builtins.open", lambda path, *a, **k: real_open(
        fake if path == "/proc/cpuinfo" else path, *a, **k))  # fmt: skip
    assert (cpu_info("vendor_id"), cpu_info("model name")) == ("GenuineIntel", "Intel Xeon")
    assert cpu_info("model") is None  # whole field names only
    fake.unlink()  # no /proc/cpuinfo (macOS, Windows)
    assert cpu_info("vendor_id") is None
