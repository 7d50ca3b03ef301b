"""The five MIML metrics as scikit-learn scorers, for `GridSearchCV`, `cross_validate`, ...

    search = GridSearchCV(MultiLabelLogisticRegression(), {'C': [0.1, 1, 10]},
                          scoring=scorers.SCORERS, refit='miml_average_precision')

Each scorer ranks the labels by the estimator's `decision_function` and computes the metric of
`miml_jax.metrics` on a 0/1 label matrix. As every scikit-learn scorer, greater is better: the
four losses (coverage, Hamming loss, one error, ranking loss) come negated.
"""

import functools

import numpy as np
from sklearn.metrics import make_scorer

from miml_jax import metrics


def _metric(y_true, y_score, *, name):
  return float(metrics.evaluate(np.asarray(y_true), np.asarray(y_score))[name])


SCORERS = {f'miml_{name}': make_scorer(functools.partial(_metric, name=name),
                                       greater_is_better=metrics.HIGHER_IS_BETTER[name],
                                       response_method='decision_function')
           for name in metrics.NAMES}
