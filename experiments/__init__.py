"""The experiments run on dim-sklearn: the demo (the main job), the label-masking study and their protocol.

Not part of the installed library: this package lives beside it in the
repository, uses only ``dim_sklearn``'s public API, and needs the
``experiments`` extra (matplotlib for the plots, CHGNet for the study's
foundation-model baseline) and matbench (the study's Matbench fold). Run it
from the repository root::

    python -m experiments demo            # the main job, on the embedded data set
    python -m experiments study --quick   # the label-masking study (see experiments.study)

[`experiments.protocol`][experiments.protocol] holds what every experiment shares: targets, splits,
label subsets, budgets and the untrained baseline.
"""
