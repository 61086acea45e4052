"""The one-intra-op-thread setting of the pool workers is scoped to the work that asked for it.

PyTorch's count as a fresh thread reads it is the process's default (OpenMP's global default,
MKL's count); a thread that set its own count keeps it. Both are checked.
"""

import threading

import pytest
import torch

from volumelab.optimizers._threads import configured_threads, map_in_threads, one_intra_op_thread


def fresh_thread_count() -> int:
    seen: list[int] = []
    thread = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    thread.start()
    thread.join()
    return seen[0]


def set_default(count: int) -> None:
    """The process's default, as set from a thread without its own count (as a pool worker sets it)."""
    thread = threading.Thread(target=torch.set_num_threads, args=(count,))
    thread.start()
    thread.join()


@pytest.fixture
def two_threads():
    saved_own, saved_default = torch.get_num_threads(), fresh_thread_count()
    torch.set_num_threads(2)
    # A parallel region in this thread gives it its own OpenMP count (as a user's session has after any
    # large tensor operation), apart from the process's default.
    torch.ones(1 << 20, dtype=torch.float64).exp_().sum()
    set_default(2)
    yield
    torch.set_num_threads(saved_own)
    set_default(saved_default)


def test_nothing_is_left_lowered_after_the_work(two_threads):
    """The pieces run on one thread; afterwards the caller's count and the process's default are the user's.
    (A regression guard: the code before the scoping also passed this, restoring from the calling thread.)"""
    assert list(map_in_threads(lambda index: torch.get_num_threads(), 4, 2)) == [1, 1, 1, 1]
    assert torch.get_num_threads() == 2
    assert fresh_thread_count() == 2


def test_two_overlapping_runs_keep_one_thread_until_the_last_ends(two_threads):
    """Run A ends while run B still works: B's pieces still see one thread, the default comes back only
    after B ends, and meanwhile ``configured_threads`` gives the user's count."""
    b_started, a_done, b_may_finish = threading.Event(), threading.Event(), threading.Event()
    seen_in_b: list[tuple[int, int]] = []

    def b_work(index: int) -> int:
        if index == 0:
            b_started.set()
        if index == 1:
            a_done.wait(timeout=30)
            seen_in_b.append((torch.get_num_threads(), configured_threads()))
            b_may_finish.wait(timeout=30)
        return torch.get_num_threads()

    b_result: list[list[int]] = []
    b_thread = threading.Thread(target=lambda: b_result.append(list(map_in_threads(b_work, 3, 1))))
    with one_intra_op_thread():  # A holds the scope while B starts, so B enters after A
        b_thread.start()
        assert b_started.wait(timeout=30)
        a = list(map_in_threads(lambda index: torch.get_num_threads(), 4, 2))
    a_done.set()
    assert a == [1, 1, 1, 1]
    assert fresh_thread_count() == 1  # B still runs: the default stays lowered
    b_may_finish.set()
    b_thread.join(timeout=30)
    assert b_result == [[1, 1, 1]]
    assert seen_in_b == [(1, 2)]
    assert fresh_thread_count() == 2
    assert configured_threads() == 2
    assert torch.get_num_threads() == 2


def test_the_default_is_restored_when_the_work_raises(two_threads):
    def fail(index: int) -> int:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        list(map_in_threads(fail, 2, 2))
    assert fresh_thread_count() == 2
    assert torch.get_num_threads() == 2


def test_gnc_in_another_thread_uses_the_users_count_while_a_run_holds_it_lowered(two_threads, sensing_problem):
    """G&C's default worker count is the user's (2), not the 1 that another run's pool set meanwhile, and its
    numbers are those of G&C run alone."""
    import volumelab as vl

    model = vl.FactorizationModel(5, 5, 40, 2)
    alone = vl.GuessCheck(eps=0.08).run(sensing_problem, model, 200_000, seed=3)
    results: list = []

    def held(index: int) -> int:
        if index == 0:
            worker = threading.Thread(target=lambda: results.append(
                vl.GuessCheck(eps=0.08).run(sensing_problem, model, 200_000, seed=3)))
            worker.start()
            worker.join(timeout=120)
        return index

    assert list(map_in_threads(held, 1, 1)) == [0]
    (during,) = results
    assert during.diagnostics["workers"] == alone.diagnostics["workers"] == 2
    assert during.metrics == alone.metrics
