"""The published numbers of Dong et al. (2016), Table 1, for side-by-side comparison.

Mean and std over 30 random 2/3-1/3 splits; VGG+L1LR and VGG+LR are the paper's methods, the
other six are the baselines it quotes (from Huang et al., 2014).
"""

METRICS = ('average_precision', 'coverage', 'hamming_loss', 'one_error', 'ranking_loss')
METHODS = ('VGG+L1LR', 'VGG+LR', 'MIMLfast', 'DBA', 'KISAR', 'MIMLkNN', 'MIMLSVM', 'RankLSIM')

# TABLE1[dataset][method] = ((mean, std) per metric, in METRICS order)
TABLE1 = {
    'msrc_v2': {
        'VGG+L1LR': ((.933, .010), (.102, .006), (.033, .003), (.060, .017), (.018, .003)),
        'VGG+LR': ((.851, .016), (.140, .012), (.051, .003), (.149, .024), (.045, .007)),
        'MIMLfast': ((.688, .017), (.238, .014), (.100, .007), (.295, .025), (.108, .009)),
        'DBA': ((.326, .016), (.837, .018), (.140, .006), (.415, .026), (.675, .017)),
        'KISAR': ((.666, .018), (.254, .015), (.086, .004), (.341, .031), (.131, .010)),
        'MIMLkNN': ((.591, .018), (.312, .020), (.131, .007), (.440, .031), (.165, .013)),
        'MIMLSVM': ((.685, .018), (.256, .018), (.084, .003), (.320, .029), (.125, .011)),
        'RankLSIM': ((.687, .013), (.239, .013), (.110, .004), (.302, .208), (.107, .007)),
    },
    'scene': {
        'VGG+L1LR': ((.948, .006), (.082, .006), (.070, .004), (.082, .010), (.038, .005)),
        'VGG+LR': ((.926, .004), (.096, .004), (.090, .004), (.114, .007), (.055, .004)),
        'MIMLfast': ((.770, .015), (.207, .012), (.188, .009), (.351, .023), (.189, .014)),
        'DBA': ((.600, .013), (.334, .011), (.269, .009), (.386, .025), (.348, .012)),
        'KISAR': ((.772, .012), (.204, .008), (.194, .005), (.351, .020), (.185, .010)),
        'MIMLkNN': ((.757, .011), (.222, .009), (.196, .007), (.370, .018), (.207, .011)),
        'MIMLSVM': ((.750, .012), (.225, .010), (.200, .008), (.380, .021), (.212, .011)),
        'RankLSIM': ((.738, .011), (.237, .010), (.204, .007), (.392, .019), (.222, .010)),
    },
}

BASELINES = METHODS[2:]


def best_baseline(dataset: str) -> dict:
  """{metric: (method, mean)}: the best of the six baselines on each metric."""
  out = {}
  for k, metric in enumerate(METRICS):
    higher = metric == 'average_precision'
    pick = (max if higher else min)(BASELINES, key=lambda m: TABLE1[dataset][m][k][0])
    out[metric] = (pick, TABLE1[dataset][pick][k][0])
  return out


def metrics_beaten(dataset: str, means: dict, method: str = 'VGG+L1LR') -> list[str]:
  """The metrics on which `means` ({metric: mean}) is better than the paper's `method` on
  `dataset` (higher average precision, lower everything else); a tie is not better."""
  out = []
  for k, metric in enumerate(METRICS):
    theirs = TABLE1[dataset][method][k][0]
    ours = means[metric]
    if (ours > theirs) if metric == 'average_precision' else (ours < theirs):
      out.append(metric)
  return out
