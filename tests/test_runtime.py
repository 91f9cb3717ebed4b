"""Where a run executes: device, bf16 autocast, CPU threads, signals, the placed model."""

import signal

import pytest
import torch
from omegaconf import OmegaConf

from poolbench import runtime
from poolbench.config import compose_config
from poolbench.errors import UsageError
from poolbench.runtime import (
    amp_enabled,
    auto_threads,
    autocast_for,
    model_on,
    select_device,
    set_threads,
    stop_on_signals,
)

CPU = torch.device("cpu")


def test_select_device_names_and_refusals(monkeypatch):
    assert select_device("cpu") == CPU
    with pytest.raises(UsageError, match="device must be auto, cpu or cuda, got 'tpu'"):
        select_device("tpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert select_device("auto") == CPU
    with pytest.raises(UsageError, match="no CUDA device is available: use device=auto or device=cpu"):
        select_device("cuda")


@pytest.mark.parametrize("native", [True, False])
def test_amp_auto_follows_native_bf16_and_true_false_force_it(monkeypatch, native):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: native)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert amp_enabled(CPU, "auto") is native and amp_enabled(torch.device("cuda"), "auto")
    assert amp_enabled(CPU, True) and not amp_enabled(CPU, False)
    with autocast_for(CPU, True):
        assert torch.mm(torch.ones(2, 2), torch.ones(2, 2)).dtype == torch.bfloat16
    with autocast_for(CPU, "auto"):
        expected = torch.bfloat16 if native else torch.float32
        assert torch.mm(torch.ones(2, 2), torch.ones(2, 2)).dtype == expected


def test_bf16_is_native_answers_for_a_torch_without_onednn(monkeypatch):
    def missing():
        raise RuntimeError("no such op")

    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", missing)
    assert not runtime.bf16_is_native(CPU) and runtime.bf16_is_native(torch.device("cuda"))
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    assert runtime.bf16_is_native(CPU)  # AMX alone is native bf16 too


@pytest.mark.parametrize("channels_last", [True, False])
def test_model_on_places_the_network_in_the_training_layout(channels_last):
    cfg = compose_config(["data=shapes", "model.channels=[4,8]", f"train.channels_last={channels_last}"])
    model = model_on(cfg, CPU)
    conv = model.features[4].weight  # (8, 4, 3, 3): the layouts differ (a 1-channel input conv is both)
    assert conv.device == CPU and conv.is_contiguous(memory_format=torch.channels_last) == channels_last
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_set_threads_takes_a_number_or_auto(monkeypatch):
    monkeypatch.setattr(runtime, "_cores", lambda: 3)
    set_threads(2)
    assert torch.get_num_threads() == 2
    set_threads("auto")  # outside Hydra: every core this process may use
    assert torch.get_num_threads() == 3
    set_threads(0)
    assert torch.get_num_threads() == 1


@pytest.mark.parametrize("launcher,cores,expected", [
    ({"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", "n_jobs": -1}, 4, 1),
    ({"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", "n_jobs": 2}, 8, 4),
    ({"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", "n_jobs": 16}, 4, 1),
    ({"_target_": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher",
      "cpus_per_task": 3}, 8, 3),
    ({"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"}, 8, 8),
])
def test_auto_threads_share_the_cores_between_parallel_jobs(monkeypatch, launcher, cores, expected):
    from hydra.core.hydra_config import HydraConfig

    monkeypatch.setattr(runtime, "_cores", lambda: cores)
    monkeypatch.setattr(HydraConfig, "initialized", staticmethod(lambda: True))
    monkeypatch.setattr(HydraConfig, "get", staticmethod(lambda: OmegaConf.create({"launcher": launcher})))
    assert auto_threads() == expected


def test_first_signal_requests_a_stop_a_second_interrupts_and_handlers_are_restored():
    before = signal.getsignal(signal.SIGTERM)
    with stop_on_signals() as stop:
        stop.armed = True
        signal.raise_signal(signal.SIGTERM)
        assert stop.requested
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
    with stop_on_signals() as stop:  # outside training (not armed): interrupt at once
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGTERM)
    assert signal.getsignal(signal.SIGTERM) is before


def test_signals_are_left_alone_outside_the_main_thread():
    import threading

    seen = {}

    def worker():
        with stop_on_signals() as stop:
            seen["stop"] = stop
            seen["handler"] = signal.getsignal(signal.SIGINT)

    before = signal.getsignal(signal.SIGINT)
    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert seen["handler"] is before and not seen["stop"].requested
