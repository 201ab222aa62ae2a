"""Locks are leases: a lock left by a killed run, by another host or by a PID now reused never makes an
identical run wait forever; the holder's heartbeat keeps a live lock from being taken over."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import threading
import time

import pytest

from benchmark.core.atomic import exclusive_lock, lock_lease_s, stale_reason
from benchmark.core.errors import UserError


def _foreign_lock(path, *, host="another-host", pid=12345, age_s=0.0, **extra):
    path.write_text(json.dumps({"host": host, "pid": pid, "time": time.time(), **extra}))
    then = time.time() - age_s
    os.utime(path, (then, then))


def test_a_lock_of_another_host_whose_heartbeat_stopped_is_taken_over(tmp_path):
    lock = tmp_path / "run.csv.lock"
    _foreign_lock(lock, age_s=5.0)
    taken = []
    with exclusive_lock(lock, wait=False, lease_s=1.0, on_takeover=lambda h, why: taken.append((h, why))) as held:
        assert held is True
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert taken and taken[0][0]["host"] == "another-host" and "heartbeat stopped" in taken[0][1]
    assert not lock.exists()


def test_a_fresh_lock_of_another_host_is_respected(tmp_path):
    lock = tmp_path / "run.csv.lock"
    _foreign_lock(lock, age_s=0.0)
    with exclusive_lock(lock, wait=False, lease_s=60.0) as held:
        assert held is False
    assert json.loads(lock.read_text())["host"] == "another-host"


def test_a_reused_pid_on_this_host_is_stale_at_once(tmp_path):
    lock = tmp_path / "run.csv.lock"
    # Our own PID is alive, but it did not start at the recorded time: the PID now names another process.
    _foreign_lock(lock, host=socket.gethostname(), pid=os.getpid(), started="1")
    if stale_reason(json.loads(lock.read_text()), 0.0, 60.0) is None:
        pytest.skip("no /proc process start times here")
    with exclusive_lock(lock, wait=False, lease_s=60.0) as held:
        assert held is True


def test_a_dead_pid_on_this_host_is_stale_at_once(tmp_path):
    lock = tmp_path / "run.csv.lock"
    import subprocess
    import sys

    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    _foreign_lock(lock, host=socket.gethostname(), pid=int(child.stdout))
    with exclusive_lock(lock, wait=False, lease_s=60.0) as held:
        assert held is True


def test_the_heartbeat_keeps_a_held_lock_alive_past_its_lease(tmp_path):
    lock = tmp_path / "run.csv.lock"
    with exclusive_lock(lock, lease_s=0.4) as held:
        assert held
        time.sleep(0.9)  # more than two leases: without the heartbeat another process would take it over
        assert time.time() - lock.stat().st_mtime < 0.4
        with exclusive_lock(lock, wait=False, lease_s=0.4) as second:
            assert second is False
    assert not lock.exists()


def test_a_waiter_takes_over_when_the_holder_stops_beating(tmp_path):
    lock = tmp_path / "run.csv.lock"
    _foreign_lock(lock, age_s=0.0)
    said = []
    start = time.perf_counter()
    with exclusive_lock(lock, lease_s=0.5, poll_s=0.05, on_wait=lambda h: said.append("wait"),
                        on_takeover=lambda h, why: said.append("takeover")) as held:
        assert held
    assert said == ["wait", "takeover"] and time.perf_counter() - start < 5


def test_a_lock_taken_over_from_us_is_not_removed_by_our_release(tmp_path):
    lock = tmp_path / "run.csv.lock"
    with exclusive_lock(lock, lease_s=60.0):
        _foreign_lock(lock, host="another-host")  # somebody judged us dead and took the lock
    assert json.loads(lock.read_text())["host"] == "another-host"


@pytest.mark.parametrize("text", ["abc", "0", "-5", "inf"])
def test_a_bad_lease_setting_is_named(text, monkeypatch):
    monkeypatch.setenv("PARTBENCH_LOCK_LEASE_S", text)
    with pytest.raises(UserError, match="PARTBENCH_LOCK_LEASE_S"):
        lock_lease_s()


def test_run_says_in_one_line_that_it_takes_a_stale_lock_over(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from benchmark.cli import cli
    from benchmark.runner import RunConfig, result_path

    monkeypatch.setenv("PARTBENCH_LOCK_LEASE_S", "1")
    options = {"num_train": 8, "num_test": 8, "image_size": 32}
    path = result_path(tmp_path / "runs", RunConfig(method="random", dataset="synthetic", dataset_options=options))
    path.parent.mkdir(parents=True)
    _foreign_lock(path.with_name(path.name + ".lock"), age_s=30.0)  # a run killed on another node
    args = ["run", "-m", "random", "-d", "synthetic", *(f"-o{k}={v}" for k, v in options.items()), "-q",
            "--out", str(tmp_path / "runs"), "--no-cache"]
    with pytest.warns(UserWarning) as said:
        result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert path.is_file()
    lines = [str(w.message) for w in said if "lock" in str(w.message)]
    assert len(lines) == 1 and "taking over the lock" in lines[0] and "\n" not in lines[0], lines


def test_a_reproduce_step_done_meanwhile_by_another_run_is_not_done_again(tmp_path, monkeypatch):
    """Two `reproduce` runs into one --out: the second waits for the first's step, then takes its record."""
    from benchmark.reproduce import steps as steps_module
    from benchmark.reproduce.graph import Settings, Step, ledger_dir

    calls = []
    monkeypatch.setitem(steps_module.STEP_KINDS, "tables", dataclasses.replace(
        steps_module.STEP_KINDS["tables"], run=lambda step, settings, device: (calls.append(step.id), ({}, {}))[1]))
    settings = Settings(out_dir=str(tmp_path), cache_dir=str(tmp_path / "cache"), device="cpu", quiet=True)
    step = Step("tables/x", "tables", "k1", (), {})
    folder = ledger_dir(settings)
    folder.mkdir(parents=True)
    records = []
    with exclusive_lock(folder / f"{step.ledger_name}.lock"):  # the first run is doing the step
        waiter = threading.Thread(target=lambda: records.append(steps_module.execute(step, settings)))
        waiter.start()
        time.sleep(0.3)
        assert not records  # the second run waits
        (folder / step.ledger_name).write_text(json.dumps({"id": step.id, "outputs": {}, "wall_s": 1.0}))
    waiter.join(10)
    assert records and records[0]["wall_s"] == 1.0
    assert calls == []
