import sys, time
import numpy as np, jax
from miml_jax.features import read_feature_file
from miml_jax import splits, scaling, recipe, model_selection
from miml_jax.solvers import fit_logistic
path = sys.argv[1]; G = int(sys.argv[2])
ff = read_feature_file(path)
X, Y = np.asarray(ff.features, np.float32), np.asarray(ff.labels, np.float64)
allmasks = splits.random_splits(len(X), 30, seed=0)
T = {}
orig_held, orig_cal = recipe._held_out, recipe._calibration
def held(*a, **k):
  t = time.perf_counter(); r = orig_held(*a, **k); T['held_' + a[7]] = T.get('held_' + a[7], 0) + time.perf_counter() - t; return r
def cal(*a, **k):
  t = time.perf_counter(); r = orig_cal(*a, **k); T['calibration'] = T.get('calibration', 0) + time.perf_counter() - t; return r
recipe._held_out, recipe._calibration = held, cal
orig_fg = model_selection.fit_grid
def fg(*a, **k):
  t = time.perf_counter(); r = jax.block_until_ready(orig_fg(*a, **k)); T['solve_' + k['penalty']] = T.get('solve_' + k['penalty'], 0) + time.perf_counter() - t
  return r
model_selection.fit_grid = fg
for rep in range(2):
  T.clear(); tl1 = tl2 = tr = 0
  for g in range(0, 30, G):
    masks = allmasks[g:g + G]
    shift, scale = scaling.fit_scaling(X, masks, 'standardize')
    fin = {}
    for pen in ('l1', 'l2'):
      t = time.perf_counter()
      f = fit_logistic(X, Y, penalty=pen, C=1.0, tol=1e-7, max_iter=20000, train_mask=masks, shift=shift, scale=scale)
      fin[pen] = tuple(np.asarray(a) for a in (f.coef, f.intercept, f.converged, f.n_iter))
      if pen == 'l1': tl1 += time.perf_counter() - t
      else: tl2 += time.perf_counter() - t
    t = time.perf_counter()
    recipe.fit_recipes(X, Y, masks, tol=1e-7, final=fin, seeds=np.arange(g, g + G))
    tr += time.perf_counter() - t
  print('rep', rep, 'l1 %.1f l2 %.1f recipe %.1f ratio %.2f' % (tl1, tl2, tr, tr / tl1), {k: round(v, 1) for k, v in T.items()}, flush=True)
