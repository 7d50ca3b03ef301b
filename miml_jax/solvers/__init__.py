"""Per-label logistic regression solvers: a batched JAX FISTA and the liblinear reference.

See `miml_jax.solvers.fista` for the objective (liblinear's, exactly) and its mapping to the
paper's eq. (1).
"""

from miml_jax.solvers.fista import fit_logistic
from miml_jax.solvers.fista import LogisticFit
from miml_jax.solvers.fista import objective
