"""Magpie composition features beside DIM vectors: the FeatureUnion a matminer user builds."""

import numpy as np
from matminer.featurizers.composition import ElementProperty
from sklearn.ensemble import RandomForestRegressor
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline, make_union
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from dim_sklearn import DeepInfoMaxFeaturizer, load_dataset


def compositions(structures):
    return [s.composition for s in structures]


structures, targets = load_dataset("mp_cs419")
y = targets["formation_energy_per_atom"].to_numpy()
train, test = train_test_split(np.arange(len(y)), test_size=0.2, random_state=0)

# 1. Pretrain once on every training structure; no labels (the study runs 40 epochs, 2 keep this quick).
dim = DeepInfoMaxFeaturizer(max_epochs=2, random_state=0).fit([structures[i] for i in train])

# 2. Each block scaled, side by side. FrozenEstimator: fitting the pipeline on the labelled few fits the
#    scalers and the forest only; the encoder is not pretrained again (also under clone and GridSearchCV).
#    matminer runs a featurizer in a forked process pool by default; a fork taken once torch has started its
#    threads can hang, so Magpie runs in-process (it takes seconds).
element_property = ElementProperty.from_preset("magpie")
element_property.set_n_jobs(1)
magpie = make_pipeline(FunctionTransformer(compositions), element_property, StandardScaler())
features = make_union(magpie, make_pipeline(FrozenEstimator(dim), StandardScaler()))
model = make_pipeline(features, RandomForestRegressor(random_state=0))

labelled = np.random.default_rng(0).choice(train, size=100, replace=False)
model.fit([structures[i] for i in labelled], y[labelled])
mae = np.abs(model.predict([structures[i] for i in test]) - y[test]).mean()
print(f"Magpie + DIM, 100 labels: test MAE {mae:.3f} eV/atom on {len(test)} test structures")
