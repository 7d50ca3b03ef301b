"""Fits every solver configuration on synthetic problems and saves the results, to compare
a refactor bitwise against HEAD."""
import sys
import numpy as np
import jax
from miml_jax import scaling
from miml_jax.solvers import fit_logistic
from tests.test_solvers import cnn_like

out = {}
rng = np.random.default_rng(21)
X, Y = cnn_like(rng, n=200, d=120, L=8)
masks = np.stack([rng.permutation(200) < 150 for _ in range(4)])
shift, scale = scaling.fit_scaling(X, masks, 'standardize')
C = np.geomspace(0.05, 5, 8)
X32 = X.astype(np.float32)
configs = {
  'l1_cd_grow': dict(penalty='l1', newton_block=16, C=C, tol=1e-6),
  'l1_cd': dict(penalty='l1', C=C, tol=1e-7),
  'l1_fista_sub': dict(penalty='l1', C=C, tol=1e-6, l1_subproblem='fista'),
  'l1_matrix_free': dict(penalty='l1', C=C, tol=1e-6, l1_subproblem='matrix_free'),
  'l2_newton': dict(penalty='l2', C=np.geomspace(0.01, 100, 8), tol=1e-7),
  'fista_l1': dict(penalty='l1', C=C, tol=1e-5, method='fista'),
  'fista_l2': dict(penalty='l2', C=C, tol=1e-5, method='fista'),
}
for name, kw in configs.items():
  fit = fit_logistic(X32, Y, max_iter=5000, train_mask=masks, shift=shift, scale=scale, **kw)
  for field in fit._fields:
    out[f'{name}.{field}'] = np.asarray(getattr(fit, field))
  print(name, 'iters', np.asarray(fit.n_iter).sum(), flush=True)
# Newton-CG for L2 directly.
from miml_jax.solvers import NewtonCGL2, make_problem
import jax.numpy as jnp
prob = make_problem(jnp.asarray(X32), jnp.asarray(Y, jnp.float32), jnp.asarray(masks), jnp.asarray(shift, jnp.float32), jnp.asarray(scale, jnp.float32), jnp.asarray(np.geomspace(0.01, 100, 8), jnp.float32))
params, state = NewtonCGL2(tol=1e-7, max_iter=500).run(prob)
out['l2_cg.coef'] = np.asarray(params.coef); out['l2_cg.n_iter'] = np.asarray(state.iter_num)
np.savez(sys.argv[1], **out)
print('saved', len(out))
