"""scikit-learn's estimator checks on both estimators, with the checks that cannot apply listed and explained.

scikit-learn's checks feed estimators 2-D numeric arrays; ours take a 1-D sequence of pymatgen Structures and
declare it in their tags (``input_tags.two_d_array=False``), which makes ``parametrize_with_checks`` skip them
entirely. To run the checks that do apply (cloning, parameters, repr, unfitted errors, tags), the estimators are
given here, and only here, the default 2-D tag; every check that then fits on numeric arrays is an expected
failure, whose reason names the tests of ``test_sklearn_contract.py`` that check its substance on structures. A
check that starts to fail, or an expected failure that starts to pass, shows up.
"""

from __future__ import annotations

import re
from pathlib import Path

from sklearn.utils.estimator_checks import parametrize_with_checks

from dim_sklearn import DeepInfoMaxFeaturizer, SiteNetRegressor

_CONTRACT = "test_sklearn_contract.py"
_ON_STRUCTURES = {  # each check that fits on numeric arrays -> the tests that check its substance on structures
    "check_fit_score_takes_y": "test_the_featurizer_ignores_y_and_fit_transform_is_fit_then_transform, "
    "test_a_regressor_in_a_pipeline_predicts_and_scores_as_on_its_own",
    "check_estimators_overwrite_params": "test_fit_changes_neither_the_parameters_nor_the_input",
    "check_dont_overwrite_parameters": "test_fit_sets_only_trailing_underscore_attributes_and_outputs_set_none",
    "check_estimators_fit_returns_self": "test_fit_returns_self_and_fitting_again_gives_the_same_outputs",
    "check_readonly_memmap_input": "test_any_sequence_of_structures_gives_the_same_outputs (a read-only object "
    "array), test_fit_changes_neither_the_parameters_nor_the_input",
    "check_n_features_in_after_fitting": "test_output_shapes_and_types (structures have no numeric columns: no "
    "n_features_in_)",
    "check_positive_only_tag_during_fit": "test_numbers_and_broken_structures_are_refused_naming_their_position "
    "(structures have no sign; numbers are refused)",
    "check_estimators_dtypes": "test_output_shapes_and_types, "
    "test_targets_as_a_list_integers_a_column_or_a_series_fit_the_same",
    "check_complex_data": "test_unusable_targets_give_clear_errors (complex targets)",
    "check_dtype_object": "test_any_sequence_of_structures_gives_the_same_outputs (object arrays), "
    "test_numbers_and_broken_structures_are_refused_naming_their_position (strings, numbers)",
    "check_estimators_empty_data_messages": "test_no_structures",
    "check_pipeline_consistency": "test_a_pipeline_gives_what_its_steps_give_by_hand, "
    "test_a_regressor_in_a_pipeline_predicts_and_scores_as_on_its_own",
    "check_estimators_nan_inf": "test_numbers_and_broken_structures_are_refused_naming_their_position (NaN "
    "coordinates), test_unusable_targets_give_clear_errors (NaN and infinite targets)",
    "check_estimator_sparse_tag": "test_numbers_and_broken_structures_are_refused_naming_their_position (a "
    "sparse matrix holds no structures and is refused)",
    "check_estimator_sparse_array": "test_numbers_and_broken_structures_are_refused_naming_their_position",
    "check_estimator_sparse_matrix": "test_numbers_and_broken_structures_are_refused_naming_their_position",
    "check_estimators_pickle": "test_pickle_and_clone_round_trips",
    "check_f_contiguous_array_estimator": "test_any_sequence_of_structures_gives_the_same_outputs (memory layout "
    "has no counterpart; the container does not matter)",
    "check_methods_sample_order_invariance": "test_outputs_do_not_depend_on_the_order_or_company_of_the_structures",
    "check_methods_subset_invariance": "test_outputs_do_not_depend_on_the_order_or_company_of_the_structures",
    "check_fit2d_1sample": "test_one_structure",
    "check_fit2d_1feature": "test_one_structure (one column has no counterpart; the one-site crystal of "
    "six_crystals() is in every test)",
    "check_dict_unchanged": "test_fit_sets_only_trailing_underscore_attributes_and_outputs_set_none",
    "check_fit_idempotent": "test_fit_returns_self_and_fitting_again_gives_the_same_outputs",
    "check_fit_check_is_fitted": "test_check_is_fitted_before_and_after_fit",
    "check_n_features_in": "test_output_shapes_and_types",
    "check_fit2d_predict1d": "test_a_structure_not_in_a_sequence_is_refused",
    "check_transformer_data_not_an_array": "test_any_sequence_of_structures_gives_the_same_outputs",
    "check_transformer_general": "test_the_featurizer_ignores_y_and_fit_transform_is_fit_then_transform, "
    "test_outputs_do_not_depend_on_the_order_or_company_of_the_structures",
    "check_transformer_preserve_dtypes": "test_output_shapes_and_types (float64 vectors: preserves_dtype is empty)",
    "check_regressors_train": "test_targets_as_a_list_integers_a_column_or_a_series_fit_the_same, "
    "test_unusable_targets_give_clear_errors",
    "check_regressor_data_not_an_array": "test_any_sequence_of_structures_gives_the_same_outputs",
    "check_estimators_partial_fit_n_features": "test_partial_fit_continues_from_where_the_last_call_stopped",
    "check_regressors_no_decision_function": "test_the_regressor_offers_no_classifier_methods (itself an expected "
    "failure: skorch's predict_proba)",
    "check_supervised_y_2d": "test_targets_as_a_list_integers_a_column_or_a_series_fit_the_same ((n, 1) targets "
    "are documented and fit as (n,), without scikit-learn's DataConversionWarning)",
    "check_regressors_int": "test_targets_as_a_list_integers_a_column_or_a_series_fit_the_same",
    "check_requires_y_none": "test_unusable_targets_give_clear_errors",
}
_SKORCH = "skorch's NeuralNet"
_EXCEPTIONS = {
    "DeepInfoMaxFeaturizer": {
        "check_mixin_order": "matminer's BaseFeaturizer lists BaseEstimator before TransformerMixin; the order is "
        "matminer's and cannot be changed in a subclass",
    },
    "SiteNetRegressor": {
        "check_no_attributes_set_in_init": f"{_SKORCH} sets history_, initialized_ and virtual_params_ in "
        "__init__ and keeps prefixed defaults (optimizer__eps, ...) as "
        "attributes",
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
    numeric = {
        name: f"fits on 2-D numeric arrays, which X here is not; on structures: {_CONTRACT}::{tests}"
        for name, tests in _ON_STRUCTURES.items()
    }
    return {**numeric, **own}


@parametrize_with_checks([Featurizer(max_epochs=0), Regressor(max_epochs=1)], expected_failed_checks=_expected_failures)
def test_scikit_learn_checks(estimator, check):
    check(estimator)


def test_each_check_on_numeric_arrays_names_existing_tests_on_structures():
    contract = (Path(__file__).parent / _CONTRACT).read_text()
    defined = set(re.findall(r"^def (test_\w+)\(", contract, flags=re.MULTILINE))
    for check, tests in _ON_STRUCTURES.items():
        named = set(re.findall(r"\btest_\w+", tests))
        assert named and named <= defined, (check, named - defined)


def test_the_estimators_declare_structure_input():
    for estimator in (DeepInfoMaxFeaturizer(), SiteNetRegressor()):
        tags = estimator.__sklearn_tags__()
        assert tags.input_tags.one_d_array and not tags.input_tags.two_d_array
    assert DeepInfoMaxFeaturizer().__sklearn_tags__().transformer_tags is not None
    assert not DeepInfoMaxFeaturizer().__sklearn_tags__().target_tags.required
