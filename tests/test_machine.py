"""What the machine is: the GPUs a process may use, and the ones a trial trains on where it sees several."""

from __future__ import annotations

import pytest

from harness import machine
from harness.errors import HarnessError


def test_visible_gpus_are_the_ones_cuda_visible_devices_names(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2, 5")
    assert machine.visible_gpus() == ["2", "5"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")  # CUDA's way of hiding every GPU
    assert machine.visible_gpus() == []


def test_visible_gpus_without_the_variable_are_every_device_torch_counts(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert machine.visible_gpus() == [str(i) for i in range(machine.gpu_count())]


def test_a_trial_that_sees_two_gpus_trains_on_the_first_of_them_only():
    """Trainer would wrap the model in nn.DataParallel over both, which TRL refuses: every trial would fail."""
    environment = {"PATH": "/usr/bin", "CUDA_VISIBLE_DEVICES": "2,5"}
    one = machine.trial_gpu_environment(environment, ["2", "5"], 1)
    assert one == {"PATH": "/usr/bin", "CUDA_VISIBLE_DEVICES": "2"}
    assert machine.trial_gpu_environment({"PATH": "/usr/bin"}, ["0", "1"], 1)["CUDA_VISIBLE_DEVICES"] == "0"


def test_a_trial_split_over_gpus_sees_as_many_as_its_profile_gives_it():
    environment = {"CUDA_VISIBLE_DEVICES": "0,1,2,3"}
    assert machine.trial_gpu_environment(environment, ["0", "1", "2", "3"], 2)["CUDA_VISIBLE_DEVICES"] == "0,1"
    with pytest.raises(HarnessError, match=r"over 2 GPUs .* sees 1 \(CUDA_VISIBLE_DEVICES=3\)"):
        machine.trial_gpu_environment({"CUDA_VISIBLE_DEVICES": "3"}, ["3"], 2)


def test_a_trial_with_the_gpus_it_needs_or_none_keeps_its_environment_as_it_is():
    environment = {"PATH": "/usr/bin"}
    assert machine.trial_gpu_environment(environment, ["3"], 1) == environment
    assert machine.trial_gpu_environment(environment, ["3", "4"], 2) == environment
    assert machine.trial_gpu_environment(environment, [], 1) == environment
