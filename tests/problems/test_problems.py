"""Sensing / completion problems: generation, basis properties, storage, bad input."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import volumelab as vl
from volumelab.errors import ProblemError
from volumelab.problems import complement_basis


def _flat(mats: torch.Tensor) -> torch.Tensor:
    return mats.reshape(mats.shape[0], -1)


def _assert_valid_basis(problem: vl.Problem) -> None:
    train, test = _flat(problem.A_train), _flat(problem.A_test)
    n = problem.rows * problem.cols
    torch.testing.assert_close(test @ test.T, torch.eye(test.shape[0], dtype=torch.float64), atol=1e-10, rtol=0)
    assert (train @ test.T).abs().max() < 1e-10
    assert torch.linalg.matrix_rank(torch.cat([train, test])) == n


@settings(max_examples=25, deadline=None)
@given(
    rows=st.integers(1, 6),
    cols=st.integers(1, 6),
    data=st.data(),
)
def test_sensing_properties(rows, cols, data):
    n = rows * cols
    if n < 2:
        with pytest.raises(ProblemError, match="measurements"):
            vl.make_sensing(rows, cols, 1, 1)
        return
    rank = data.draw(st.integers(1, min(rows, cols)))
    m = data.draw(st.integers(1, n - 1))
    seed = data.draw(st.integers(0, 2**31))
    problem = vl.make_sensing(rows, cols, rank, m, seed=seed, norm=2.5)
    assert problem.A_train.shape == (m, rows, cols) and problem.A_test.shape == (n - m, rows, cols)
    torch.testing.assert_close(_flat(problem.A_train).norm(dim=1), torch.ones(m, dtype=torch.float64))
    _assert_valid_basis(problem)
    assert torch.linalg.matrix_rank(problem.W_star) == rank
    assert problem.W_star.norm().item() == pytest.approx(2.5)
    torch.testing.assert_close(problem.b_train, _flat(problem.A_train) @ problem.W_star.reshape(-1))
    torch.testing.assert_close(problem.b_test, _flat(problem.A_test) @ problem.W_star.reshape(-1))


def test_completion_properties():
    problem = vl.make_completion(5, 4, 2, 9, seed=3)
    train, test = _flat(problem.A_train), _flat(problem.A_test)
    # One-hot measurements at distinct entries; the basis is the other entries.
    for mats in (train, test):
        assert ((mats == 0) | (mats == 1)).all() and (mats.sum(1) == 1).all()
    observed = train.argmax(1)
    unobserved = test.argmax(1)
    assert len(set(observed.tolist())) == 9
    assert sorted(observed.tolist() + unobserved.tolist()) == list(range(20))
    _assert_valid_basis(problem)
    torch.testing.assert_close(problem.b_test, problem.W_star.reshape(-1)[unobserved])


def test_losses_match_definition(sensing_problem):
    generator = torch.Generator().manual_seed(5)
    weights = torch.randn(7, 5, 5, generator=generator, dtype=torch.float64)
    train, gen = sensing_problem.losses(weights)
    for i in range(7):
        inner_train = torch.einsum("mij,ij->m", sensing_problem.A_train, weights[i])
        inner_test = torch.einsum("tij,ij->t", sensing_problem.A_test, weights[i])
        assert train[i].item() == pytest.approx(((inner_train - sensing_problem.b_train) ** 2).mean().item())
        assert gen[i].item() == pytest.approx(((inner_test - sensing_problem.b_test) ** 2).mean().item())
    zero_train, zero_gen = sensing_problem.losses(torch.zeros(5, 5, dtype=torch.float64))
    assert zero_gen.item() == pytest.approx(sensing_problem.mean_squared_target())


def test_every_contraction_of_the_task_gives_the_same_losses(sensing_problem):
    """Batch-first, batch-last, train-only and stacked contractions are one set of losses."""
    weights = torch.randn(7, 5, 5, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    tensors = sensing_problem.tensors()
    flat = weights.reshape(7, -1)
    train, gen = tensors.losses(flat)
    batch_last = tensors.batch_last_losses(tensors.batch_last_residuals(flat.T.contiguous()))
    torch.testing.assert_close(batch_last, torch.stack([train, gen]), rtol=1e-13, atol=0)
    train_only, residual = tensors.train_loss_and_residual(flat)
    torch.testing.assert_close(train_only, train, rtol=1e-13, atol=0)
    # (2/m) A^T r is the gradient of L_train in vec(W).
    leaf = flat.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(tensors.losses(leaf)[0].sum(), leaf)
    torch.testing.assert_close(tensors.train_gradient(residual), expected, rtol=1e-12, atol=1e-15)
    # Stacked per run: run s uses its own problem.
    others = [vl.make_sensing(5, 5, 1, 15, seed=s) for s in range(7)]
    stacked = vl.problems.ProblemTensors.stack([p.tensors() for p in others])
    assert stacked.stacked and not tensors.stacked
    stacked_train, stacked_gen = stacked.losses(flat)
    for s, problem in enumerate(others):
        one_train, one_gen = problem.losses(weights[s])
        torch.testing.assert_close(stacked_train[s], one_train, rtol=1e-13, atol=0)
        torch.testing.assert_close(stacked_gen[s], one_gen, rtol=1e-13, atol=0)
    single = tensors.to(torch.float32)
    assert single.operator.dtype == single.targets.dtype == torch.float32 and single.num_train == 15


def test_same_seed_same_problem_and_different_seeds_differ():
    first, again, other = (vl.make_sensing(5, 5, 1, 15, seed=s) for s in (4, 4, 5))
    assert torch.equal(first.A_train, again.A_train) and torch.equal(first.W_star, again.W_star)
    assert not torch.equal(first.A_train, other.A_train)


def test_save_load_roundtrip(tmp_path, sensing_problem):
    path = sensing_problem.save(tmp_path / "p.npz")
    with np.load(path) as data:
        assert {"A_train", "b_train", "A_test", "b_test", "W_star"} <= set(data.files)
        assert data["A_train"].shape == (15, 5, 5) and data["b_test"].shape == (10,)
    loaded = vl.load_problem(path)
    assert loaded.task == "sensing"
    for name in ("A_train", "b_train", "A_test", "b_test", "W_star"):
        assert torch.equal(getattr(loaded, name), getattr(sensing_problem, name))


def test_problem_from_arrays_without_ground_truth(sensing_problem):
    arrays = sensing_problem.to_arrays()
    arrays.pop("W_star")
    problem = vl.Problem(**{k: v for k, v in arrays.items()})
    assert problem.W_star is None and problem.num_test == 10


def test_complement_basis_of_rank_deficient_measurements():
    base = torch.randn(3, 3, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    repeated = torch.cat([base, base[:1] * 2.0])  # 4 matrices spanning 3 dimensions
    assert complement_basis(repeated).shape == (6, 3, 3)


# ------------------------------------------------------------------- bad input
def _arrays(problem):
    return {k: v.copy() for k, v in problem.to_arrays().items()}


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda a: a.update(b_train=a["b_train"][:-1]), "b_train has 14 entries"),
        (lambda a: a.update(b_test=a["b_test"][:-1]), "b_test has 9 entries"),
        (lambda a: a.update(A_test=a["A_test"][:, :4, :]), "A_test matrices are"),
        (lambda a: a.update(A_train=a["A_train"][0]), "b_train has 15 entries but A_train has 5 matrices"),
        (lambda a: a.update(A_train=a["A_train"][0, 0]), "A_train must have at least 2 dimensions"),
        (lambda a: a["A_train"].__setitem__((0, 0, 0), np.nan), "A_train contains 1 NaN"),
        (lambda a: a["b_test"].__setitem__(0, np.inf), "b_test contains 1 NaN or infinite"),
        (lambda a: a.update(W_star=a["W_star"][:4]), "W_star has shape"),
        (lambda a: a.update(W_star=a["W_star"] * 2), "b_train disagrees with W_star"),
        (lambda a: a.update(A_test=a["A_test"] * 1.5), "A_test is not orthonormal"),
        (lambda a: a.update(A_test=a["A_test"][:-1], b_test=a["b_test"][:-1]), "complement of span"),
        (lambda a: a.update(A_test=a["A_test"][:0], b_test=a["b_test"][:0]), "A_test is empty"),
    ],
)
def test_bad_arrays_name_the_field(sensing_problem, mutate, message):
    arrays = _arrays(sensing_problem)
    mutate(arrays)
    with pytest.raises(ProblemError, match=message):
        vl.Problem(**arrays)


def test_basis_not_orthogonal_to_measurements(sensing_problem):
    arrays = _arrays(sensing_problem)
    # Rotate one basis vector towards a measurement: still unit norm, no longer orthogonal.
    a0 = arrays["A_train"][0] / np.linalg.norm(arrays["A_train"][0])
    b0 = arrays["A_test"][0]
    arrays["A_test"][0] = (b0 + a0) / np.linalg.norm(b0 + a0)
    arrays.pop("W_star")
    with pytest.raises(ProblemError, match="not (orthonormal|orthogonal)"):
        vl.Problem(**arrays)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_measurements": 25}, "must be below rows\\*cols = 25"),
        ({"num_measurements": 30}, "must be below rows\\*cols"),
        ({"num_measurements": 0}, "measurements must be a positive integer"),
        ({"rank": 6}, "rank 6 exceeds min\\(rows, cols\\) = 5"),
        ({"rank": 0}, "rank must be a positive integer"),
        ({"rows": 0}, "rows must be a positive integer"),
        ({"norm": 0.0}, "norm must be a positive finite"),
        ({"norm": float("nan")}, "norm must be a positive finite"),
    ],
)
@pytest.mark.parametrize("task", ["sensing", "completion"])
def test_bad_generation_parameters(task, kwargs, message):
    params = {"rows": 5, "cols": 5, "rank": 1, "num_measurements": 15, **kwargs}
    norm = params.pop("norm", 1.0)
    with pytest.raises(ProblemError, match=message):
        vl.make_problem(task, params["rows"], params["cols"], params["rank"], params["num_measurements"], norm=norm)


def test_unknown_task():
    with pytest.raises(ProblemError, match="unknown task 'denoising'"):
        vl.make_problem("denoising", 5, 5, 1, 15)


def test_sensing_arrays_with_too_many_measurements(sensing_problem):
    arrays = _arrays(sensing_problem)
    big = np.concatenate([arrays["A_train"], arrays["A_train"][:10]])
    with pytest.raises(ProblemError, match="25 sensing measurements"):
        vl.Problem(A_train=big, b_train=np.zeros(25), A_test=arrays["A_test"], b_test=arrays["b_test"], task="sensing")


def test_load_errors(tmp_path):
    with pytest.raises(ProblemError, match="does not exist"):
        vl.load_problem(tmp_path / "missing.npz")
    np.savez(tmp_path / "partial.npz", A_train=np.zeros((1, 2, 2)))
    with pytest.raises(ProblemError, match="lacks array\\(s\\) b_train, A_test, b_test"):
        vl.load_problem(tmp_path / "partial.npz")
    (tmp_path / "garbage.npz").write_bytes(b"not a zip file")
    with pytest.raises(ProblemError, match="is not a volumelab problem file"):
        vl.load_problem(tmp_path / "garbage.npz")


def test_measurements_of_an_array_of_any_order():
    """Order-3 measurements: the losses equal a plain loop over the inner products."""
    generator = torch.Generator().manual_seed(0)
    truth = torch.randn(3, 2, 4, generator=generator, dtype=torch.float64)
    measurements = torch.randn(10, 3, 2, 4, generator=generator, dtype=torch.float64)
    basis = vl.problems.complement_basis(measurements.reshape(10, 2, 12)).reshape(-1, 3, 2, 4)
    problem = vl.Problem(measurements, (measurements * truth).sum((1, 2, 3)), basis, (basis * truth).sum((1, 2, 3)),
                         W_star=truth)
    assert problem.shape == (3, 2, 4) and problem.num_test == 14 and problem.summary()["shape"] == [3, 2, 4]
    guesses = torch.randn(5, 3, 2, 4, generator=generator, dtype=torch.float64)
    train, gen = problem.losses(guesses)
    for s in range(5):
        residual = [float((a * guesses[s]).sum() - y) for a, y in zip(problem.A_train, problem.b_train)]
        assert float(train[s]) == pytest.approx(sum(r * r for r in residual) / 10, rel=1e-12)
        basis_residual = [float((b * (guesses[s] - truth)).sum()) for b in problem.A_test]
        assert float(gen[s]) == pytest.approx(sum(r * r for r in basis_residual) / 14, rel=1e-12)
    with pytest.raises(vl.ProblemError, match="not a matrix"):
        problem.rows
    with pytest.raises(vl.OptimizerError, match="model is 3x2 but the problem is 3x2x4"):
        vl.GuessCheck(eps=1.0).run(problem, vl.FactorizationModel(3, 2, 4, 2), 100)
