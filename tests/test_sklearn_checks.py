"""scikit-learn's estimator checks on both estimators, with the checks that cannot apply listed and explained.

scikit-learn's checks feed estimators 2-D numeric arrays; ours take a 1-D sequence of pymatgen Structures and
declare it in their tags (``input_tags.two_d_array=False``), which makes ``parametrize_with_checks`` skip them
entirely. To run the checks that do apply (cloning, parameters, repr, unfitted errors, tags), the estimators are
given here, and only here, the default 2-D tag; every check that then fits on numeric arrays is an expected
failure, with the reason. A check that starts to fail, or an expected failure that starts to pass, shows up.
"""

from __future__ import annotations

from sklearn.utils.estimator_checks import parametrize_with_checks

from dim_sklearn import DeepInfoMaxFeaturizer, SiteNetRegressor

_NUMERIC_X = "fits on 2-D numeric arrays; X here is a sequence of pymatgen Structures (a ValueError names it)"
_NUMERIC_CHECKS = (
    "check_fit_score_takes_y",
    "check_estimators_overwrite_params",
    "check_dont_overwrite_parameters",
    "check_estimators_fit_returns_self",
    "check_readonly_memmap_input",
    "check_n_features_in_after_fitting",
    "check_positive_only_tag_during_fit",
    "check_estimators_dtypes",
    "check_complex_data",
    "check_dtype_object",
    "check_estimators_empty_data_messages",
    "check_pipeline_consistency",
    "check_estimators_nan_inf",
    "check_estimator_sparse_tag",
    "check_estimator_sparse_array",
    "check_estimator_sparse_matrix",
    "check_estimators_pickle",
    "check_f_contiguous_array_estimator",
    "check_methods_sample_order_invariance",
    "check_methods_subset_invariance",
    "check_fit2d_1sample",
    "check_fit2d_1feature",
    "check_dict_unchanged",
    "check_fit_idempotent",
    "check_fit_check_is_fitted",
    "check_n_features_in",
    "check_fit2d_predict1d",
    "check_transformer_data_not_an_array",
    "check_transformer_general",
    "check_transformer_preserve_dtypes",
    "check_regressors_train",
    "check_regressor_data_not_an_array",
    "check_estimators_partial_fit_n_features",
    "check_regressors_no_decision_function",
    "check_supervised_y_2d",
    "check_regressors_int",
    "check_requires_y_none",
)
_SKORCH = "skorch's NeuralNet"
_EXCEPTIONS = {
    "DeepInfoMaxFeaturizer": {
        "check_mixin_order": "matminer's BaseFeaturizer lists BaseEstimator before TransformerMixin; the order is "
        "matminer's and cannot be changed in a subclass",
    },
    "SiteNetRegressor": {
        "check_no_attributes_set_in_init": f"{_SKORCH} sets history_, initialized_ and virtual_params_ in "
        "__init__ and keeps prefixed defaults (optimizer__eps, ...) as "
        "attributes; the device setting is stored as device_setting_ so that "
        "net.device reads resolved",
        "check_set_params": f"{_SKORCH}.get_params lists its internal _params_to_validate set, which the check "
        "overwrites with a float before set_params adds to it",
    },
}


class _TwoDTags:
    """Give an estimator scikit-learn's default input tag so that its checks run (see the module docstring)."""

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = True
        tags.input_tags.one_d_array = False
        return tags


class Featurizer(_TwoDTags, DeepInfoMaxFeaturizer):
    __doc__ = DeepInfoMaxFeaturizer.__doc__


class Regressor(_TwoDTags, SiteNetRegressor):
    __doc__ = SiteNetRegressor.__doc__


def _expected_failures(estimator) -> dict[str, str]:
    own = _EXCEPTIONS[type(estimator).__mro__[2].__name__]
    return {**{name: _NUMERIC_X for name in _NUMERIC_CHECKS}, **own}


@parametrize_with_checks([Featurizer(max_epochs=0), Regressor(max_epochs=1)], expected_failed_checks=_expected_failures)
def test_scikit_learn_checks(estimator, check):
    check(estimator)


def test_the_estimators_declare_structure_input():
    for estimator in (DeepInfoMaxFeaturizer(), SiteNetRegressor()):
        tags = estimator.__sklearn_tags__()
        assert tags.input_tags.one_d_array and not tags.input_tags.two_d_array
    assert DeepInfoMaxFeaturizer().__sklearn_tags__().transformer_tags is not None
    assert not DeepInfoMaxFeaturizer().__sklearn_tags__().target_tags.required
