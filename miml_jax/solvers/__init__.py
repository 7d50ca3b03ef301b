"""Per-label logistic regression solvers: batched JAX solvers and the liblinear reference.

See `miml_jax.solvers.objective` for the objective (liblinear's, exactly) and its mapping to the
paper's eq. (1).
"""

from miml_jax.solvers.logistic import fit_logistic
from miml_jax.solvers.objective import LogisticFit
from miml_jax.solvers.objective import objective
