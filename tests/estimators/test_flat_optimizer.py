"""The optimizer steps each parameter group as one flat tensor; the parameters are views into it only while training."""

import pickle

import numpy as np
import pytest
import torch
from skorch.callbacks import Callback

from dim_sklearn import SiteNetRegressor
from dim_sklearn.training import flat_groups, link_flat_groups, unlink_flat_groups

QUICK = dict(max_epochs=2, random_state=0)


class PerParameterAdamW(torch.optim.AdamW):
    """AdamW as torch gives it, one parameter tensor at a time (a subclass is not flattened)."""


def _owns_storage(param: torch.Tensor) -> bool:
    return param.untyped_storage().nbytes() == param.numel() * param.element_size()


def _small_module(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.LayerNorm(7), torch.nn.Linear(7, 1))


def test_flat_groups_update_every_element_as_the_parameters_one_by_one():
    one_by_one, flat = _small_module(0), _small_module(0)
    options = dict(lr=1e-2, weight_decay=1e-2, amsgrad=True, eps=1e-7)
    reference = torch.optim.AdamW(one_by_one.parameters(), **options)
    named = list(flat.named_parameters())
    optimizer = torch.optim.AdamW(flat_groups([{"params": [p for _, p in named]}], named), **options)
    assert [len(group["params"]) for group in optimizer.param_groups] == [1]
    link_flat_groups(optimizer, dict(named))
    x = torch.randn(16, 5)
    for _ in range(5):
        for module, opt in ((one_by_one, reference), (flat, optimizer)):
            opt.zero_grad(set_to_none=False)
            (module(x) ** 2).mean().backward()
            opt.step()
    for a, b in zip(one_by_one.parameters(), flat.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    assert not any(_owns_storage(p) for p in flat.parameters())  # views while linked
    unlink_flat_groups(optimizer, dict(named))
    assert all(_owns_storage(p) and _owns_storage(p.grad) for p in flat.parameters())
    for a, b in zip(one_by_one.parameters(), flat.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_fine_tuning_steps_flat_groups_with_the_same_result_as_per_parameter_steps(structures, targets):
    flat = SiteNetRegressor(**QUICK).fit(structures, targets)
    (group,) = flat.optimizer_.param_groups
    names = [name for name, _ in flat.module_.named_parameters()]
    assert sorted(group["flat_names"]) == sorted(names) and len(group["params"]) == 1
    assert group["params"][0].numel() == sum(p.numel() for p in flat.module_.parameters())
    assert all(_owns_storage(p) for p in flat.module_.parameters())  # no views after fit

    one_by_one = SiteNetRegressor(optimizer=PerParameterAdamW, **QUICK).fit(structures, targets)
    assert len(one_by_one.optimizer_.param_groups[0]["params"]) == len(names)
    # the same updates but for the order of the sums in the gradient norm (clipping)
    np.testing.assert_allclose(flat.predict(structures), one_by_one.predict(structures), rtol=1e-3, atol=1e-4)
    unclipped = [
        SiteNetRegressor(gradient_clip=None, **QUICK, **extra).fit(structures, targets).predict(structures)
        for extra in ({}, {"optimizer": PerParameterAdamW})
    ]
    np.testing.assert_allclose(*unclipped, rtol=1e-5, atol=1e-6)


def test_a_pickled_net_trains_on_as_the_original_and_pickles_at_its_size(structures, targets):
    net = SiteNetRegressor(**QUICK).fit(structures, targets)
    restored = pickle.loads(pickle.dumps(net))
    for model in (net, restored):
        model.partial_fit(structures, targets)
    np.testing.assert_array_equal(restored.predict(structures), net.predict(structures))
    assert len(restored.history) == 3
    one_by_one = SiteNetRegressor(optimizer=PerParameterAdamW, **QUICK).fit(structures, targets)
    # one more copy of the weights (the optimizer's flat tensor), not one per parameter
    weights = sum(p.numel() * p.element_size() for p in net.module_.parameters())
    assert len(pickle.dumps(net)) < len(pickle.dumps(one_by_one)) + 1.1 * weights


def test_parameter_groups_keep_their_options(structures, targets):
    net = SiteNetRegressor(optimizer__param_groups=[("encoder.*", {"lr": 0.0})], **QUICK)
    initial = {k: v.clone() for k, v in net.initialize().module_.state_dict().items()}
    net.fit(structures, targets)
    assert [len(group["params"]) for group in net.optimizer_.param_groups] == [1, 1]
    assert net.optimizer_.param_groups[0]["lr"] == 0.0
    after = net.module_.state_dict()
    assert all(torch.equal(after[k], v) for k, v in initial.items() if k.startswith("encoder."))
    assert not torch.equal(after["head.0.weight"], initial["head.0.weight"])


def test_frozen_parameters_and_other_optimizers_get_the_parameters_one_by_one(structures, targets):
    frozen = SiteNetRegressor(freeze_encoder=True, **QUICK).initialize()
    subclass = SiteNetRegressor(optimizer=PerParameterAdamW, **QUICK).initialize()
    for net in (frozen, subclass):
        assert all("flat_names" not in group for group in net.optimizer_.param_groups)
        assert len(net.optimizer_.param_groups[0]["params"]) == len(list(net.module_.parameters()))


class _Fails(Callback):
    def on_epoch_end(self, net, **kwargs):
        raise RuntimeError("a failing callback")


def test_an_error_during_training_leaves_parameters_of_their_own(structures, targets):
    net = SiteNetRegressor(callbacks=[_Fails()], **QUICK)
    with pytest.raises(RuntimeError, match="a failing callback"):
        net.fit(structures, targets)
    assert all(_owns_storage(p) for p in net.module_.parameters())
