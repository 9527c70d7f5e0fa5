"""device.affinity: inference keeps cores of its own when it leaves some free; everything is restored after."""
import os
import threading

import pytest

from edgedet.device.affinity import (inference_cores, leave_background, native_thread_ids, run_in_background,
                                    split_cores)

linux_multicore = pytest.mark.skipif(not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
                                     reason="needs sched_setaffinity and at least 2 cores")


@pytest.mark.parametrize("threads, expected", [
    (1, ({0}, {1, 2, 3})), (3, ({0, 1, 2}, {3})),  # the other threads get the cores inference leaves free
    (4, ({0, 1, 2, 3}, {3})), (8, ({0, 1, 2, 3}, {3})),  # inference takes every core: the others share the last one
    (None, None), (0, None),
])
def test_split_leaves_the_remaining_cores_to_the_other_threads(monkeypatch, threads, expected):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    assert split_cores(threads) == expected


def test_a_single_core_is_not_split(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {5}, raising=False)
    assert split_cores(1) is None


@linux_multicore
def test_inference_thread_and_the_others_are_pinned_apart_then_restored():
    original = os.sched_getaffinity(0)
    started, release = threading.Event(), threading.Event()
    seen = {}

    def other():
        seen["tid"] = threading.get_native_id()
        started.set()
        release.wait(10)

    helper = threading.Thread(target=other, daemon=True)
    helper.start()
    started.wait(10)
    me = threading.get_native_id()
    try:
        assert {me, seen["tid"]} <= native_thread_ids()
        with inference_cores(1, {me}) as (mine, others):
            assert os.sched_getaffinity(0) == mine and len(mine) == 1
            assert os.sched_getaffinity(seen["tid"]) == others == set(original) - mine
        assert os.sched_getaffinity(0) == original and os.sched_getaffinity(seen["tid"]) == original
    finally:
        release.set()
        helper.join(10)


@linux_multicore
def test_inference_on_every_core_confines_the_others_to_the_last_one():
    original = os.sched_getaffinity(0)
    me = threading.get_native_id()
    with inference_cores(len(original), {me}) as (mine, others):
        assert os.sched_getaffinity(0) == mine == original and others == {max(original)}
    assert os.sched_getaffinity(0) == original


def idle_policy_allowed() -> bool:
    """Whether this OS lets a thread take SCHED_IDLE (a probe thread tries)."""
    result = []

    def probe():
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
            result.append(True)
        except (AttributeError, OSError):
            result.append(False)

    thread = threading.Thread(target=probe)
    thread.start()
    thread.join()
    return result[0]


def background_thread(seen: dict, release: threading.Event) -> threading.Thread:
    """A thread that becomes a background thread and reports its id, policy and cores until released."""

    def body():
        run_in_background()
        seen["tid"] = threading.get_native_id()
        seen["policy"] = os.sched_getscheduler(0)
        seen["ready"].set()
        release.wait(10)
        leave_background()

    seen["ready"] = threading.Event()
    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    seen["ready"].wait(10)
    return thread


@linux_multicore
@pytest.mark.skipif(not idle_policy_allowed(), reason="this OS refuses SCHED_IDLE (background threads stay as they are)")
def test_background_threads_run_at_idle_priority_on_every_core_while_inference_is_pinned():
    original = os.sched_getaffinity(0)
    me = threading.get_native_id()
    before, release = {}, threading.Event()
    early = background_thread(before, release)  # started before the pinning
    assert before["policy"] == os.SCHED_IDLE
    try:
        with inference_cores(1, {me}) as (mine, others):
            assert os.sched_getaffinity(before["tid"]) == original  # every core, not just the others'
            during, release_late = {}, threading.Event()
            late = background_thread(during, release_late)  # started inside: it inherits the inference core
            assert os.sched_getaffinity(during["tid"]) == original and during["policy"] == os.SCHED_IDLE
            release_late.set()
            late.join(10)
        assert os.sched_getaffinity(before["tid"]) == original
    finally:
        release.set()
        early.join(10)
