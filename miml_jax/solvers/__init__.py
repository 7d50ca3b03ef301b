"""Per-label logistic regression solvers: batched JAX solvers and the liblinear reference.

See `miml_jax.solvers.objective` for the objective (liblinear's, exactly), its mapping to the
paper's eq. (1), and the one optimality measure every solver stops on. In the style of jaxopt,
each solver is a frozen dataclass of its hyper-parameters whose `run(problem)` returns
`(Params, SolverState)`:

    problem = make_problem(X, Y, mask, shift, scale, C, intercept_scaling=1.0,
                           fit_intercept=True)
    params, state = ProxNewtonL1(tol=1e-6).run(problem)     # or NewtonL2, NewtonCGL2, FISTA(...)

`fit_logistic` does the same from plain arrays, over every device, and checks its arguments.
"""

from miml_jax.solvers.fista import FISTA
from miml_jax.solvers.logistic import fit_logistic
from miml_jax.solvers.newton import NewtonL2
from miml_jax.solvers.newton_cg import NewtonCGL2
from miml_jax.solvers.objective import LogisticFit
from miml_jax.solvers.objective import objective
from miml_jax.solvers.problem import make_problem
from miml_jax.solvers.problem import Params
from miml_jax.solvers.problem import Problem
from miml_jax.solvers.problem import SolverState
from miml_jax.solvers.prox_newton import ProxNewtonL1
