"""Order-N tensor sensing and completion (issue 16, first part): generation properties and the order-2 case."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from volumelab.errors import ProblemError
from volumelab.problems import (
    load_problem,
    make_completion,
    make_cp_ground_truth,
    make_sensing,
    make_tensor_problem,
    save_problem,
)
from volumelab._rng import make_generator


@pytest.mark.parametrize("task", ["tensor-sensing", "tensor-completion"])
def test_basis_is_orthonormal_and_orthogonal_to_the_measurements(task):
    problem = make_tensor_problem(task, (4, 3, 5), rank=2, num_measurements=20, seed=3)
    n = 4 * 3 * 5
    a = problem.A_train.reshape(20, n)
    b = problem.A_test.reshape(-1, n)
    assert problem.A_test.shape == (n - 20, 4, 3, 5)
    torch.testing.assert_close(b @ b.T, torch.eye(n - 20, dtype=torch.float64), atol=1e-10, rtol=0)
    assert (a @ b.T).abs().max().item() < 1e-10
    # The targets are the inner products with W*, and W* is recovered from both sets of them.
    truth = problem.W_star.reshape(n)
    torch.testing.assert_close(problem.b_train, a @ truth)
    torch.testing.assert_close(problem.b_test, b @ truth)
    if task == "tensor-sensing":
        torch.testing.assert_close(a.norm(dim=1), torch.ones(20, dtype=torch.float64))


def test_cp_ground_truth_against_a_plain_loop_of_outer_products():
    dims, rank = (3, 4, 2), 2
    truth = make_cp_ground_truth(dims, rank, norm=2.0, generator=make_generator(5, "data"))
    generator = make_generator(5, "data")
    factors = [torch.randn(size, rank, generator=generator, dtype=torch.float64).numpy() for size in dims]
    expected = np.zeros(dims)
    for r in range(rank):
        expected += np.einsum("i,j,k->ijk", factors[0][:, r], factors[1][:, r], factors[2][:, r])
    expected *= 2.0 / np.linalg.norm(expected)
    np.testing.assert_allclose(truth.numpy(), expected, rtol=1e-12, atol=1e-14)
    assert truth.norm().item() == pytest.approx(2.0)


@pytest.mark.parametrize("rank", [1, 2])
def test_order_two_equals_the_matrix_tasks(rank):
    """At order 2 the tensor tasks draw the same numbers as matrix sensing / completion."""
    for tensor_task, builder in (("tensor-sensing", make_sensing), ("tensor-completion", make_completion)):
        tensor = make_tensor_problem(tensor_task, (5, 4), rank, 12, seed=7, norm=1.5)
        matrix = builder(5, 4, rank, 12, seed=7, norm=1.5)
        for name in ("A_train", "A_test"):
            assert torch.equal(getattr(tensor, name), getattr(matrix, name)), name
        if rank == 1:  # one component: the same products, bit for bit
            assert torch.equal(tensor.W_star, matrix.W_star)
            assert torch.equal(tensor.b_train, matrix.b_train)
        torch.testing.assert_close(tensor.W_star, matrix.W_star, rtol=1e-14, atol=1e-15)


def test_a_tensor_problem_survives_the_npz_round_trip(tmp_path):
    problem = make_tensor_problem("tensor-sensing", (3, 3, 3), 1, 10, seed=1)
    loaded = load_problem(save_problem(problem, tmp_path / "t.npz"))
    assert loaded.shape == (3, 3, 3) and loaded.task == "tensor-sensing"
    assert torch.equal(loaded.A_test, problem.A_test) and loaded.metadata["dims"] == [3, 3, 3]


def test_bad_input_is_named():
    with pytest.raises(ProblemError, match="unknown tensor task"):
        make_tensor_problem("sensing", (3, 3, 3), 1, 5)
    with pytest.raises(ProblemError, match="at least two sizes"):
        make_tensor_problem("tensor-sensing", (9,), 1, 5)
    with pytest.raises(ProblemError, match="27 entries"):
        make_tensor_problem("tensor-sensing", (3, 3, 3), 1, 27)
    with pytest.raises(ProblemError, match="positive integer"):
        make_tensor_problem("tensor-completion", (3, 0, 3), 1, 5)
