"""Efficient attention (Naim & Asher 2024, as formalised in shared/spec/efficient-attention.md).

For one head and one attention row `a` over the n real tokens, the rows that give the same head output
and are themselves attention distributions form the polytope

    C(a) = { x : x >= 0, 1^T x = 1, U_r^T x = U_r^T a },   U_r an orthonormal basis of col(T), T = V W_O^h.

`efficient_attention` reads one canonical member of C(a):

- `sparse`: a vertex solution of  min_x sum_j x_j (-log max(a_j, log_floor))  over C(a), a linear program;
- `minnorm`: the unique  argmin ||x||^2  over C(a), a strictly convex quadratic program.

The linear programs of a batch are solved together by a batched primal simplex method in float64
(`solve_sparse`), each result verified against the original constraints and, where a check fails,
re-solved by scipy's HiGHS dual simplex. The quadratic programs are least-distance problems solved
exactly by Lawson & Hanson's NNLS reduction (`solve_minnorm`).

Devices: the batched simplex runs in float64 on the model's device (every tensor is made there, and
only the solutions come back to the CPU); its verification and the HiGHS fallback decide the result,
so it is the same on any device up to float64 rounding. The bases (`head_bases`), the HiGHS fallback
and `minnorm` (scipy's NNLS) run on the CPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch

from effbench.errors import EffbenchError
from effbench.explainers.attention import (
    AttentionReadout,
    HeadBases,
    head_bases,
    one_thread,
    readout_spans,
)

if TYPE_CHECKING:
    from effbench.models.adapter import ClassifierAdapter
    from effbench.types import Batch

CANONICAL_CHOICES = ("sparse", "minnorm")
LP_SOLVERS = ("batched", "highs")

_PIVOT_TOLERANCE = 1e-9  # a tableau entry smaller than this never serves as a pivot
_STABILITY_FRACTION = 0.1  # crossover pivots use entries at least this fraction of the row's largest
_MAX_ITERATIONS_PER_VARIABLE = 10  # an LP still running after 10 n iterations goes to HiGHS
_CHUNK = 4096  # LPs per batched solve, to bound memory on the rollout readout


@dataclass
class ConstrainedRows:
    """Attention rows that share one constraint basis: one head of one example.

    `basis` [n, m] is an orthonormal basis of col([T | 1]) (m = rank([T | 1])), `rows` [q, n] the
    attention rows, each normalised to sum to 1 in float64.
    """

    basis: np.ndarray
    rows: np.ndarray


# ---- sparse: the linear program -------------------------------------------------------------------


@one_thread()
@torch.inference_mode()
def solve_sparse(problems: list[ConstrainedRows], *, log_floor: float = 1e-12, tolerance: float = 1e-9,
                 solver: str = "batched", device: str | torch.device = "cpu") -> list[np.ndarray]:
    """A vertex solution of  min sum_j x_j (-log max(a_j, log_floor))  over C(a), for every row.

    Returns one [q, n] array per problem. Rows with rank([T | 1]) = n are returned unchanged. `device`
    is where the batched simplex runs.
    """
    results = [np.array(problem.rows, dtype=np.float64, copy=True) for problem in problems]
    # every non-trivial row is one LP; group them by constraint count m so that they stack
    groups: dict[int, list[tuple[int, int]]] = {}
    for index, problem in enumerate(problems):
        n, m = problem.basis.shape
        if m < n:
            groups.setdefault(m, []).extend((index, row) for row in range(problem.rows.shape[0]))
    for m, members in groups.items():
        for start in range(0, len(members), _CHUNK):
            chunk = members[start: start + _CHUNK]
            constraints = [problems[i].basis for i, _ in chunk]
            rows = [problems[i].rows[row] for i, row in chunk]
            if solver == "highs":
                solutions = [_highs_vertex(basis, row, log_floor, tolerance) for basis, row in zip(constraints, rows)]
            else:
                solutions = _batched_vertices(constraints, rows, log_floor, tolerance, torch.device(device))
            for (i, row), solution in zip(chunk, solutions):
                results[i][row] = solution
    return results


def _costs(a: np.ndarray | torch.Tensor, log_floor: float):
    if isinstance(a, torch.Tensor):
        return -torch.log(a.clamp_min(log_floor))
    return -np.log(np.maximum(a, log_floor))


def _highs_vertex(basis: np.ndarray, a: np.ndarray, log_floor: float, tolerance: float) -> np.ndarray:
    from scipy.optimize import linprog

    # HiGHS's default feasibility tolerances (1e-7) leave residuals near 1e-7; ask for ours (HiGHS's floor is 1e-10)
    precision = max(tolerance, 1e-10)
    options = {"primal_feasibility_tolerance": precision, "dual_feasibility_tolerance": precision}
    result = linprog(_costs(a, log_floor), A_eq=basis.T, b_eq=basis.T @ a, bounds=(0, None), method="highs-ds",
                     options=options)
    if result.status != 0:
        raise EffbenchError(f"the efficient-attention linear program failed: {result.message}")
    return np.maximum(result.x, 0.0)


def _batched_vertices(constraints: list[np.ndarray], rows: list[np.ndarray], log_floor: float,
                      tolerance: float, device: torch.device) -> list[np.ndarray]:
    """Solve LPs of equal constraint count m together; padding variables (beyond each n) stay at 0."""
    count = len(rows)
    m = constraints[0].shape[1]
    width = max(len(row) for row in rows)
    constraint_rows = np.zeros((count, m, width))
    padded_rows = np.zeros((count, width))
    for index, (basis, row) in enumerate(zip(constraints, rows)):
        constraint_rows[index, :, : len(row)] = basis.T
        padded_rows[index, : len(row)] = row
    E, a = torch.from_numpy(constraint_rows).to(device), torch.from_numpy(padded_rows).to(device)
    valid = torch.from_numpy(np.arange(width) < np.array([len(row) for row in rows])[:, None]).to(device)
    w = torch.where(valid, _costs(a, log_floor), 0.0)
    basis_columns = _primal_simplex(E, a, w, valid, tolerance)
    x, ok = _vertex_from_basis(E, a, w, valid, basis_columns, tolerance)
    x, ok = x.cpu(), ok.cpu()
    solutions = []
    for index, row in enumerate(rows):
        n = len(row)
        if ok[index]:
            solutions.append(x[index, :n].numpy().copy())
        else:  # a check failed (degenerate cycling, ill-conditioned basis): the reference solver decides
            solutions.append(_highs_vertex(constraints[index], row, log_floor, tolerance))
    return solutions


def _initial_basis(E: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """m columns of E forming a nonsingular basis, chosen by LU partial pivoting on E^T scaled by a.

    The scaling makes the pivoting prefer the tokens the head attends to most, which the LP optimum
    also prefers, so that few simplex iterations remain.
    """
    count, m, width = E.shape
    _, pivots = torch.linalg.lu_factor(E.transpose(1, 2) * a.unsqueeze(2))
    pivots = pivots.cpu().numpy() - 1
    order = np.tile(np.arange(width), (count, 1))
    lps = np.arange(count)
    for step in range(m):  # LAPACK's row interchanges, applied in order
        other = pivots[:, step]
        order[lps, step], order[lps, other] = order[lps, other], order[lps, step]
    return torch.from_numpy(order[:, :m].copy()).to(E.device)


@dataclass
class _SimplexState:
    """The LPs still being solved. `basic` [c, m] and `nonbasic` [c, k] are variable indices; the
    condensed tableau is  x_B = B^-1 b - D x_N  with D = B^-1 E_N [c, m, k]; `reduced` [c, k] are the
    reduced costs of the nonbasic variables; `movable` marks nonbasic real tokens (padding never moves)."""

    lp: torch.Tensor  # [c] index of each LP in the whole batch
    basic: torch.Tensor
    nonbasic: torch.Tensor
    D: torch.Tensor
    x_basic: torch.Tensor
    x_nonbasic: torch.Tensor
    reduced: torch.Tensor
    movable: torch.Tensor

    def select(self, keep: torch.Tensor) -> _SimplexState:
        index = keep.nonzero().squeeze(1)
        return _SimplexState(**{name: value.index_select(0, index) for name, value in vars(self).items()})


def _primal_simplex(E: torch.Tensor, a: torch.Tensor, w: torch.Tensor, valid: torch.Tensor,
                    tolerance: float) -> torch.Tensor:
    """The basis [count, m] of an optimal vertex of min w^T x s.t. E x = E a, x >= 0, for each LP
    (a row of -1 where the method did not finish; the caller then falls back to HiGHS).

    It starts at the feasible interior point x = a with a basis from `_initial_basis`. Crossover: all
    nonbasic variables still above zero (superbasic) move to zero together; where a basic variable
    blocks, it leaves the basis for a superbasic one, until x is a vertex. Then primal simplex pivots
    with steepest-edge pricing reach the optimum. Tableau and reduced costs are updated by Jordan
    exchanges, batched over the LPs; LPs that finish drop out of the batch.
    """
    count, m, width = E.shape
    k = width - m
    inf = torch.tensor(float("inf"), dtype=torch.float64, device=E.device)
    basic = _initial_basis(E, a)
    is_basic = torch.zeros(count, width, dtype=torch.bool, device=E.device).scatter_(1, basic, True)
    nonbasic = torch.argsort(is_basic.to(torch.int8), dim=1, stable=True)[:, :k]
    B = torch.gather(E, 2, basic.unsqueeze(1).expand(count, m, m))
    D = torch.linalg.solve(B, torch.gather(E, 2, nonbasic.unsqueeze(1).expand(count, m, k)))
    state = _SimplexState(
        lp=torch.arange(count, device=E.device), basic=basic, nonbasic=nonbasic, D=D,
        x_basic=torch.gather(a, 1, basic), x_nonbasic=torch.gather(a, 1, nonbasic),
        reduced=torch.gather(w, 1, nonbasic) - torch.einsum("cm,cmk->ck", torch.gather(w, 1, basic), D),
        movable=torch.gather(valid, 1, nonbasic),
    )
    result = torch.full((count, m), -1, dtype=torch.long, device=E.device)
    for _ in range(_MAX_ITERATIONS_PER_VARIABLE * width):
        superbasic = state.movable & (state.x_nonbasic > 0)
        crossing = superbasic.any(1)
        candidates = state.movable & (state.reduced < -tolerance)
        optimal = ~crossing & ~candidates.any(1)
        result[state.lp[optimal]] = state.basic[optimal]
        if optimal.all():
            return result
        if optimal.any():
            state = state.select(~optimal)
            superbasic, crossing, candidates = superbasic[~optimal], crossing[~optimal], candidates[~optimal]
        failed = _simplex_step(state, superbasic, crossing, candidates, inf)
        if failed.any():
            state = state.select(~failed)
            if len(state.lp) == 0:
                return result
    return result


def _simplex_step(state: _SimplexState, superbasic: torch.Tensor, crossing: torch.Tensor,
                  candidates: torch.Tensor, inf: torch.Tensor) -> torch.Tensor:
    """One crossover move or pricing pivot for every LP in `state`, in place. Returns the LPs that
    failed numerically (no blocking row where the polytope is bounded, no usable pivot)."""
    D = state.D
    count, m, k = D.shape
    if crossing.all():
        entering_price = torch.zeros(count, dtype=torch.long, device=D.device)
    else:
        edge = state.reduced / torch.sqrt(1.0 + (D * D).sum(1))
        entering_price = torch.where(candidates, edge, inf).argmin(1)

    # how x_B changes per unit step: all superbasics to zero (crossover), or the entering column up
    change = -_column(D, entering_price)
    if crossing.any():
        pushed = torch.where(superbasic, state.x_nonbasic, 0.0)
        change = torch.where(crossing.unsqueeze(1), torch.bmm(D, pushed.unsqueeze(2)).squeeze(2), change)
    ratios = torch.where(change < -_PIVOT_TOLERANCE, state.x_basic.clamp_min(0) / -change, inf)
    step, blocking = ratios.min(1)
    limit = torch.where(crossing, 1.0, inf)
    pivoting = step < limit
    failed = ~torch.isfinite(step) & ~crossing
    step = torch.where(failed, 0.0, torch.minimum(step, limit))

    state.x_basic.addcmul_(change, step.unsqueeze(1))
    moved = crossing.unsqueeze(1) & superbasic
    state.x_nonbasic.mul_(torch.where(moved, 1.0 - step.unsqueeze(1), 1.0))
    pricing = ~crossing & ~failed
    state.x_nonbasic.scatter_add_(1, entering_price.unsqueeze(1), torch.where(pricing, step, 0.0).unsqueeze(1))
    state.x_nonbasic.masked_fill_(moved & ~pivoting.unsqueeze(1), 0.0)  # reached the vertex
    pivoting &= ~failed
    if not pivoting.any():
        return failed

    # a crossover pivot brings in, among the superbasics with a large enough entry in the blocking
    # row, the one with the most negative reduced cost
    blocking_row = D.gather(1, blocking.view(count, 1, 1).expand(count, 1, k)).squeeze(1)
    magnitude = torch.where(superbasic & (state.x_nonbasic > 0), blocking_row.abs(), 0.0)
    stable = (magnitude >= _STABILITY_FRACTION * magnitude.amax(1, keepdim=True)) & (magnitude > _PIVOT_TOLERANCE)
    failed |= pivoting & crossing & ~stable.any(1)
    pivoting &= ~failed
    entering = torch.where(crossing, torch.where(stable, state.reduced, inf).argmin(1), entering_price)

    # Jordan exchange of basic row `blocking` with nonbasic column `entering`; LPs not pivoting keep
    # their tableau (their factor is zero and their row and column are written back unchanged)
    column = _column(D, entering)
    pivot = torch.where(pivoting, _at(column, blocking), 1.0)
    pivot_row = blocking_row / pivot.unsqueeze(1)
    D.addcmul_(torch.where(pivoting.unsqueeze(1), column, 0.0).unsqueeze(2), pivot_row.unsqueeze(1), value=-1.0)
    row_index = blocking.view(count, 1, 1).expand(count, 1, k)
    D.scatter_(1, row_index, torch.where(pivoting.unsqueeze(1), pivot_row, blocking_row).unsqueeze(1))
    new_column = torch.where(pivoting.unsqueeze(1), -column / pivot.unsqueeze(1), column)
    _set_at(new_column, blocking, torch.where(pivoting, 1.0 / pivot, _at(column, blocking)))
    D.scatter_(2, entering.view(count, 1, 1).expand(count, m, 1), new_column.unsqueeze(2))
    entering_cost = torch.where(pivoting, _at(state.reduced, entering), 0.0)
    state.reduced.addcmul_(entering_cost.unsqueeze(1), pivot_row, value=-1.0)
    _set_at(state.reduced, entering, torch.where(pivoting, -entering_cost / pivot, _at(state.reduced, entering)))

    rows, pivot_rows, columns = pivoting.nonzero().squeeze(1), blocking[pivoting], entering[pivoting]
    leaving = state.basic[rows, pivot_rows]
    state.x_basic[rows, pivot_rows] = state.x_nonbasic[rows, columns]
    state.x_nonbasic[rows, columns] = 0.0
    state.basic[rows, pivot_rows] = state.nonbasic[rows, columns]
    state.nonbasic[rows, columns] = leaving
    return failed


def _at(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """values[c, index[c]] for every LP c, [count]."""
    return values.gather(1, index.unsqueeze(1)).squeeze(1)


def _set_at(values: torch.Tensor, index: torch.Tensor, new: torch.Tensor) -> None:
    """values[c, index[c]] = new[c] for every LP c, in place."""
    values.scatter_(1, index.unsqueeze(1), new.unsqueeze(1))


def _column(D: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """D[c, :, index[c]] for every LP c, [count, m]."""
    count, m, _ = D.shape
    return D.gather(2, index.view(count, 1, 1).expand(count, m, 1)).squeeze(2)


def _vertex_from_basis(E: torch.Tensor, a: torch.Tensor, w: torch.Tensor, valid: torch.Tensor,
                       basic: torch.Tensor, tolerance: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The basic solution of each basis, recomputed from the original constraints, and whether it is
    feasible and optimal within `tolerance` (primal) and `tolerance * (1 + max cost)` (dual)."""
    count, m, width = E.shape
    found = (basic >= 0).all(1)
    basic = torch.where(found.unsqueeze(1), basic, torch.arange(m, device=E.device).expand(count, m))
    B = torch.gather(E, 2, basic.unsqueeze(1).expand(count, m, m))
    target = torch.einsum("cmn,cn->cm", E, a)
    factors, pivots, info = torch.linalg.lu_factor_ex(B)
    x_basic = torch.linalg.lu_solve(factors, pivots, target.unsqueeze(2)).squeeze(2)
    duals = torch.linalg.lu_solve(factors, pivots, torch.gather(w, 1, basic).unsqueeze(2), adjoint=True).squeeze(2)
    reduced = w - torch.einsum("cmn,cm->cn", E, duals)
    x = torch.zeros_like(a).scatter_(1, basic, x_basic.clamp_min(0.0))
    residual = (torch.einsum("cmn,cn->cm", E, x) - target).abs().amax(1)
    dual_slack = torch.where(valid, reduced, torch.zeros_like(reduced)).amin(1)
    ok = (
        found & (info == 0) & torch.isfinite(x_basic).all(1)
        & (x_basic.amin(1) >= -tolerance) & (residual <= tolerance)
        & (dual_slack >= -tolerance * (1.0 + w.amax(1)))
    )
    return x, ok


# ---- minnorm: the quadratic program ---------------------------------------------------------------


@one_thread()
@torch.inference_mode()
def solve_minnorm(problems: list[ConstrainedRows], *, tolerance: float = 1e-9) -> list[np.ndarray]:
    """The unique argmin ||x||^2 over C(a), for every row. Returns one [q, n] array per problem.

    With p = Q Q^T a (Q = `basis`) and N an orthonormal basis of the null space of Q^T, every x in C(a)
    is p + N z with p orthogonal to N z, so the problem is the least-distance program
    min ||z|| s.t. N z >= -p, solved exactly by NNLS (Lawson & Hanson 1974, ch. 23). Where p >= 0 it is
    the answer itself. It depends on `a` only through Q^T a: rows with the same head output and sum
    get the same x.
    """
    from scipy.optimize import nnls

    results = []
    for problem in problems:
        basis, rows = problem.basis, np.asarray(problem.rows, dtype=np.float64)
        n, m = basis.shape
        if m == n:
            results.append(rows.copy())
            continue
        complete, _ = np.linalg.qr(basis, mode="complete")
        null = complete[:, m:]  # [n, k]
        projected = (rows @ basis) @ basis.T  # [q, n]
        solutions = projected.copy()
        for index in np.flatnonzero(projected.min(1) < 0):
            p = projected[index]
            system = np.vstack([null.T, -p[None, :]])  # [(k + 1), n]
            unit = np.zeros(system.shape[0])
            unit[-1] = 1.0
            weights, _ = nnls(system, unit, maxiter=50 * n)
            residual = system @ weights - unit
            if abs(residual[-1]) <= tolerance:
                raise EffbenchError("the minnorm efficient-attention program is infeasible: a is not in C(a)")
            solutions[index] = p + null @ (-residual[:-1] / residual[-1])
        results.append(np.maximum(solutions, 0.0))
    return results


# ---- the explainer --------------------------------------------------------------------------------


class EfficientAttention(AttentionReadout):
    """Attention read from efficient attention matrices: a canonical member of C(a) per row."""

    name = "efficient_attention"
    version = 1
    citation = """@inproceedings{naim2024explaining,
  title = {On Explaining with Attention Matrices},
  author = {Naim, Omar and Asher, Nicholas},
  booktitle = {Proceedings of the 27th European Conference on Artificial Intelligence (ECAI)},
  year = {2024},
  note = {arXiv:2410.18541}
}"""
    defaults: ClassVar[dict[str, Any]] = {
        **AttentionReadout.defaults,
        "readout": "cls",
        "canonical": "sparse",
        "log_floor": 1e-12,
        "tolerance": 1e-9,
        "lp_solver": "batched",
    }

    def validate(self) -> None:
        super().validate()
        if self.params["canonical"] not in CANONICAL_CHOICES:
            raise EffbenchError(f"parameter canonical={self.params['canonical']!r} is not allowed; choose one of {', '.join(CANONICAL_CHOICES)}")
        if self.params["lp_solver"] not in LP_SOLVERS:
            raise EffbenchError(f"parameter lp_solver={self.params['lp_solver']!r} is not allowed; choose one of {', '.join(LP_SOLVERS)}")
        for name in ("log_floor", "tolerance"):
            value = self.params[name]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
                raise EffbenchError(f"parameter {name}={value!r} is not allowed; it must be a number in (0, 1)")

    def transform_rows(self, model: ClassifierAdapter, bases: HeadBases, rows: list[np.ndarray]) -> list[np.ndarray]:
        return efficient_rows(bases, rows, canonical=self.params["canonical"], log_floor=self.params["log_floor"],
                              tolerance=self.params["tolerance"], lp_solver=self.params["lp_solver"],
                              device=model.device)


def efficient_rows(bases: HeadBases, rows: list[np.ndarray], *, canonical: str = "sparse", log_floor: float = 1e-12,
                   tolerance: float = 1e-9, lp_solver: str = "batched", device: str | torch.device = "cpu") -> list[np.ndarray]:
    """Efficient rows for every example of a layer: `rows[b]` is [H', q, n_b] (the heads of
    `bases.heads`), the result has the same shapes. Rows where rank([T | 1]) = n come back unchanged.
    The batched simplex of `sparse` runs on `device`."""
    problems = []
    for example, example_rows in enumerate(rows):
        for position in range(len(bases.heads)):
            raw = example_rows[position]
            normalised = raw / raw.sum(1, keepdims=True)
            problems.append(ConstrainedRows(basis=bases.with_ones[example][position], rows=normalised))
    if canonical == "sparse":
        solved = solve_sparse(problems, log_floor=log_floor, tolerance=tolerance, solver=lp_solver, device=device)
    else:
        solved = solve_minnorm(problems, tolerance=tolerance)
    results = []
    for example, example_rows in enumerate(rows):
        heads = len(bases.heads)
        stacked = np.stack(solved[example * heads: (example + 1) * heads])
        trivial = np.array([basis.shape[1] == basis.shape[0] for basis in bases.with_ones[example]])
        stacked[trivial] = example_rows[trivial]  # C(a) = {a}: a itself, exactly
        results.append(stacked)
    return results


# ---- facts about an input that no explainer changes -----------------------------------------------


def input_facts(model: ClassifierAdapter, batch: Batch, *, layer: int = -1) -> list[dict[str, int]]:
    """Per example of `batch`, what decides whether efficient attention can differ from raw attention at
    the readout row of `layer` (the last by default):

    - `length`: n, the tokens the model sees (special tokens included, padding not);
    - `readout_keys`: the tokens the readout row may attend to: n, unless the layer's sliding window
      shows the readout token fewer;
    - `readout_rank`: min over the layer's heads of rank([T | 1]), T over those tokens (for grouped
      query heads, the shared values through each query head's own W_O^h).

    Where readout_keys <= readout_rank (they are then equal), C(a) = {a} for every head and efficient
    attention equals raw attention at the readout row.
    """
    from effbench.models.adapter import normalise_layer

    layer = normalise_layer(layer, model.num_layers)
    lengths = batch.attention_mask.sum(1).tolist()
    spans = readout_spans(model, layer, lengths)
    bases = head_bases(model, model.batch_forward(batch), layer, spans, list(range(model.num_heads)))
    facts = []
    for (_, start, stop), n, example_bases in zip(spans, lengths, bases.with_ones):
        facts.append({"length": int(n), "readout_keys": stop - start,
                      "readout_rank": min(basis.shape[1] for basis in example_bases)})
    return facts
