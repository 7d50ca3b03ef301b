"""The console scripts `pip install` puts on the PATH, each the command `python -m` runs:

  miml-tag        miml_jax.tag                     train, predict, evaluate, review
  miml-table1     miml_jax.experiments.table1      the paper's Table 1
  miml-figure3    miml_jax.experiments.figure3     the paper's Figure 3
  miml-datasets   miml_jax.datasets                fetch the benchmark datasets
  miml-features   miml_jax.features                extract a dataset's features to a file
  miml-weights    miml_jax.weights.convert         convert VGG16 weights to our safe format
"""

import importlib
import sys

from absl import flags

from miml_jax.plumbing import cli

COMMANDS = {
    'miml-tag': 'miml_jax.tag',
    'miml-table1': 'miml_jax.experiments.table1',
    'miml-figure3': 'miml_jax.experiments.figure3',
    'miml-datasets': 'miml_jax.datasets.__main__',
    'miml-features': 'miml_jax.features.__main__',
    'miml-weights': 'miml_jax.weights.convert',
}


def _command(module_name: str):
  def command() -> None:
    module = importlib.import_module(module_name)
    # absl's --helpshort lists the key flags of the program it was started as, and --help shows
    # that program's docstring: the script stands for the module `python -m` would run.
    for flag in flags.FLAGS.get_key_flags_for_module(module_name):
      flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
    sys.modules['__main__'].__doc__ = module.__doc__
    cli.run(module.main)
  command.__doc__ = f'`python -m {module_name.removesuffix(".__main__")}`'
  return command


tag = _command(COMMANDS['miml-tag'])
table1 = _command(COMMANDS['miml-table1'])
figure3 = _command(COMMANDS['miml-figure3'])
datasets = _command(COMMANDS['miml-datasets'])
features = _command(COMMANDS['miml-features'])
weights = _command(COMMANDS['miml-weights'])
