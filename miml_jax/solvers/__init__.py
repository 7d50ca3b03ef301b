"""Per-label logistic regression solvers: batched JAX solvers and the liblinear reference.

See `miml_jax.solvers.objective` for the objective (liblinear's, exactly), its mapping to the
paper's eq. (1), and the one optimality measure every solver stops on. In the style of jaxopt,
each solver is a frozen dataclass of its hyper-parameters whose `run(problem)` returns
`(Params, SolverState)`:

    problem = make_problem(X, Y, mask, shift, scale, C, intercept_scaling=1.0,
                           fit_intercept=True)
    params, state = ProxNewtonL1(tol=1e-6).run(problem)     # or NewtonL2, NewtonCGL2, FISTA(...)

Every solver also goes one iteration at a time, for following or testing one:

    solver = ProxNewtonL1(tol=1e-6)                    # or NewtonL2, NewtonCGL2, FISTA(...)
    state = solver.init_state(problem)
    params, state = solver.update(problem, state)      # state.f, state.kkt, state.done, ...

Their tunables are dataclass fields (`ProxNewtonL1(block=, cd_sweeps=, growth=)`,
`NewtonCGL2(max_cg=)`, `FISTA(newton_every=, newton_block=, check_every=)`), each module named
by what it solves (`l1_prox_newton`, `l2_newton`, `l2_newton_cg`, `fista`). The Newton solvers
share one skeleton (`miml_jax.solvers.steps`: the loop state, the step-length search, the
progress check, the loop and the clean-up) and one queue for a batch that shrinks to the
problems still going (`miml_jax.solvers.batches`).

`fit_logistic` does the same from plain arrays, over every device, and checks its arguments.
"""

from miml_jax.solvers.fista import FISTA
from miml_jax.solvers.logistic import fit_logistic
from miml_jax.solvers.l2_newton import NewtonL2
from miml_jax.solvers.l2_newton_cg import NewtonCGL2
from miml_jax.solvers.objective import LogisticFit
from miml_jax.solvers.objective import objective
from miml_jax.solvers.problem import make_problem
from miml_jax.solvers.problem import Params
from miml_jax.solvers.problem import Problem
from miml_jax.solvers.problem import SolverState
from miml_jax.solvers.l1_prox_newton import ProxNewtonL1
