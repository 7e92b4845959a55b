"""What the machine is: the GPUs a process may use, and the one a trial trains on where it sees several."""

from __future__ import annotations

from harness import machine


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
    assert machine.one_gpu_environment(environment, ["2", "5"]) == {"PATH": "/usr/bin", "CUDA_VISIBLE_DEVICES": "2"}
    assert machine.one_gpu_environment({"PATH": "/usr/bin"}, ["0", "1"])["CUDA_VISIBLE_DEVICES"] == "0"


def test_a_trial_on_one_gpu_or_none_keeps_its_environment_as_it_is():
    environment = {"PATH": "/usr/bin"}
    assert machine.one_gpu_environment(environment, ["3"]) == environment
    assert machine.one_gpu_environment(environment, []) == environment
