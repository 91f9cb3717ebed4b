import pytest
import torch

from poolbench.report import console

# Tests share two cores with whatever else runs; one thread each keeps timings steady.
torch.set_num_threads(1)
# What the in-process command line prints reads the same on any terminal (rich would size it to yours).
console.width = 120


@pytest.fixture(autouse=True)
def one_torch_thread():
    """A run with threads=auto sets torch's threads for the whole process: put back one after each test."""
    yield
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def cpu_without_native_bf16(monkeypatch):
    """In-process runs train in fp32 on every CPU (train.amp=auto follows the CPU's native bf16), so
    expected values do not depend on the machine; test_runtime checks both answers."""
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)


@pytest.fixture
def no_plots(monkeypatch):
    """For sweep tests about something else: the sweep's end skips its three PNGs (about a second;
    the plots have tests of their own)."""
    from poolbench.sweep import plots

    monkeypatch.setattr(plots, "write_plots", lambda summary, out_dir: [])
