"""Recipe metrics and time with the L2 folds capped at k Newton iterations from the final fit
(argv: features, variants such as none,1,2; splits in groups of 6, final fits cached in /tmp)."""
import sys, time, os
import numpy as np, jax
from miml_jax.features import read_feature_file
from miml_jax import splits, scaling, recipe, metrics
from miml_jax.solvers import fit_logistic
path = sys.argv[1]; variants = [None if v == 'none' else int(v) for v in sys.argv[2].split(',')]
G = 6
ff = read_feature_file(path)
X, Y = np.asarray(ff.features, np.float32), np.asarray(ff.labels, np.float64)
allmasks = splits.random_splits(len(X), 30, seed=0)
cachef = '/tmp/fin_' + os.path.basename(path) + '.npz'
if os.path.exists(cachef):
  z = np.load(cachef); fins = [{p: tuple(z[f'{g}_{p}_{i}'] for i in range(4)) for p in ('l1', 'l2')} for g in range(0, 30, G)]
else:
  fins = []
  for g in range(0, 30, G):
    masks = allmasks[g:g + G]
    shift, scale = scaling.fit_scaling(X, masks, 'standardize')
    fin = {}
    for pen in ('l1', 'l2'):
      f = fit_logistic(X, Y, penalty=pen, C=1.0, tol=1e-7, max_iter=20000, train_mask=masks, shift=shift, scale=scale)
      fin[pen] = tuple(np.asarray(a) for a in (f.coef, f.intercept, f.converged, f.n_iter))
    fins.append(fin)
  np.savez(cachef, **{f'{g}_{p}_{i}': fins[g // G][p][i] for g in range(0, 30, G) for p in ('l1', 'l2') for i in range(4)})
orig = recipe._held_out
cap = {}
def held(X, Y, rows, fm, on, grid, penalty, sk, max_iter, method, start=None):
  if penalty == 'l2' and cap.get('k'):
    max_iter = cap['k']
  t = time.perf_counter(); r = orig(X, Y, rows, fm, on, grid, penalty, sk, max_iter, method, start)
  T[penalty] = T.get(penalty, 0) + time.perf_counter() - t; return r
recipe._held_out = held
T = {}
oc = recipe._calibration
def cal(*a):
  t = time.perf_counter(); r = oc(*a); T['cal'] = T.get('cal', 0) + time.perf_counter() - t; return r
recipe._calibration = cal
for rep in range(2):
  for v in variants:
    cap['k'] = v; T.clear()
    t = time.perf_counter(); dec = []
    for g in range(0, 30, G):
      rs = recipe.fit_recipes(X, Y, allmasks[g:g + G], tol=1e-7, final=fins[g // G], seeds=np.arange(g, g + G))
      dec += [r.decision_function(X) for r in rs]
    dt = time.perf_counter() - t
    res = {k: [] for k in metrics.NAMES}
    for s in range(30):
      test = ~allmasks[s]
      m = metrics.evaluate(Y[test], dec[s][test])
      for k in res: res[k].append(float(m[k]))
    print('rep', rep, 'cap', v, 'time %.1f' % dt, ' '.join('%s %.5f' % (k[:8], np.mean(res[k])) for k in res), {k: round(x, 2) for k, x in T.items()}, flush=True)
