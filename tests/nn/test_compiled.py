"""The compiled pair blocks: the same losses and gradients as the eager ones, and eager code where compiling fails."""

import pytest
import torch
from crystals import six_crystals

from dim_sklearn import build_point_sets
from dim_sklearn.nn import DeepInfoMax, EncoderConfig, SiteNet, SiteNetEncoder
from dim_sklearn.nn import compiled as compiled_module
from dim_sklearn.nn.compiled import AUTO_COMPILE_PASSES, compile_available, resolve_compile, set_compiled
from dim_sklearn.nn.local_terms import local_terms
from dim_sklearn.pointsets import collate_point_sets
from dim_sklearn.pretrain import PretrainSettings, pretrain


@pytest.fixture(scope="module")
def batch(hand_built):
    return collate_point_sets(build_point_sets(hand_built[:12] + six_crystals()))


def _losses_and_gradients(model, batch):
    losses = model(batch, generator=torch.Generator().manual_seed(1))
    model.zero_grad(set_to_none=True)
    losses["loss"].backward()
    return losses, {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize(
    ("local_scrambled", "n_blocks"),
    [(True, 1), (False, 1), (True, 2)],
    ids=["five local terms", "four local terms", "two attention blocks"],
)
def test_compiled_blocks_give_the_eager_losses_gradients_and_vectors(batch, local_scrambled, n_blocks):
    if not compile_available():
        pytest.skip("torch.compile is not usable on this machine")
    torch.manual_seed(0)
    model = DeepInfoMax(SiteNetEncoder(EncoderConfig(n_blocks=n_blocks)), local_scrambled=local_scrambled)
    eager_losses, eager_grads = _losses_and_gradients(model, batch)
    with torch.no_grad():
        eager_vectors = model.encoder(batch)
    set_compiled(model, True)
    assert model.encoder.local.compiled_pairs and model.local_critic.compiled_pairs
    losses, grads = _losses_and_gradients(model, batch)
    with torch.no_grad():
        vectors = model.encoder(batch)
    for name, value in eager_losses.items():
        torch.testing.assert_close(losses[name], value, rtol=1e-5, atol=1e-6, msg=name)
    scale = max(float(g.abs().max()) for g in eager_grads.values())
    for name, value in eager_grads.items():
        torch.testing.assert_close(grads[name], value, rtol=1e-3, atol=1e-5 * scale, msg=name)
    torch.testing.assert_close(vectors, eager_vectors, rtol=1e-5, atol=1e-5)


def test_compiled_sitenet_gives_the_eager_outputs_and_gradients(batch):
    if not compile_available():
        pytest.skip("torch.compile is not usable on this machine")
    torch.manual_seed(0)
    model = SiteNet()
    weights = torch.randn(batch.n_crystals, model.config.output_dim, generator=torch.Generator().manual_seed(2))

    def outputs_and_gradients():
        model.zero_grad(set_to_none=True)
        out = model(batch)
        (out * weights).sum().backward()
        return out.detach(), {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}

    eager_out, eager_grads = outputs_and_gradients()
    set_compiled(model, True)
    out, grads = outputs_and_gradients()
    torch.testing.assert_close(out, eager_out, rtol=1e-5, atol=1e-5)
    assert grads.keys() == eager_grads.keys()
    scale = max(float(g.abs().max()) for g in eager_grads.values())
    for name, value in eager_grads.items():
        torch.testing.assert_close(grads[name], value, rtol=1e-3, atol=1e-5 * scale, msg=name)


def test_one_compilation_serves_batches_of_every_size(hand_built):
    if not compile_available():
        pytest.skip("torch.compile is not usable on this machine")
    torch.manual_seed(0)
    encoder = SiteNetEncoder().eval()
    sizes = ((0, 3), (3, 7), (10, 5))
    batches = [collate_point_sets(build_point_sets(hand_built[start : start + n])) for start, n in sizes]
    with torch.no_grad():
        eager = [encoder(b) for b in batches]
        set_compiled(encoder, True)
        torch._dynamo.reset()
        counters = torch._dynamo.utils.counters
        counters.clear()
        compiled = [encoder(b) for b in batches]
    assert counters["stats"]["unique_graphs"] == 1  # rows and keys symbolic: no recompiling per batch
    for vectors, expected in zip(compiled, eager):
        torch.testing.assert_close(vectors, expected, rtol=1e-5, atol=1e-5)


def test_auto_compiles_only_long_runs(monkeypatch):
    monkeypatch.setattr(compiled_module, "compile_available", lambda device_type="cpu": True)
    assert not resolve_compile("auto", AUTO_COMPILE_PASSES - 1)
    assert resolve_compile("auto", AUTO_COMPILE_PASSES)
    assert resolve_compile(True, 10) and not resolve_compile(False, 10**9)


def test_without_a_compiler_the_blocks_run_eagerly_with_a_warning(monkeypatch, hand_built):
    def broken(*args, **kwargs):
        raise RuntimeError("no C++ compiler found")

    monkeypatch.setattr(torch, "compile", broken)
    compile_available.cache_clear()
    try:
        with pytest.warns(RuntimeWarning, match="not usable here.*no C\\+\\+ compiler"):
            assert not resolve_compile(True, 10**6)
        torch.manual_seed(0)
        model = DeepInfoMax(SiteNetEncoder())
        settings = PretrainSettings(max_epochs=2, patience=5, batch_sites=40)
        history, _ = pretrain(model, build_point_sets(hand_built[:16]), settings, random_state=0, compile=True)
        assert len(history) == 2 and all(torch.isfinite(torch.tensor(row["valid_loss"])) for row in history)
        assert not model.encoder.local.compiled_pairs  # eager again after the run
    finally:
        compile_available.cache_clear()  # the next test asks the real compiler again


@pytest.mark.parametrize("scrambled", [True, False], ids=["five terms", "four terms"])
def test_fused_local_terms_backward_is_the_gradient_of_their_forward(scrambled):
    """The hand-written backward of ``local_terms`` against finite differences (float64, eager form)."""
    generator = torch.Generator().manual_seed(0)
    rows, keys, width, sites, n_distances = 3, 4, 5, 6, 7

    def tensor(*shape):
        return torch.randn(*shape, generator=generator, dtype=torch.float64, requires_grad=True)

    def index(high):
        return torch.randint(0, high, (rows, keys), generator=generator)

    key_sets = (index(sites), index(sites), index(sites) if scrambled else None)
    weights = tuple(torch.rand(rows, keys, generator=generator, dtype=torch.float64) for _ in range(2))

    def function(species, distance, folded, bias):
        return local_terms(species, distance, folded, bias, key_sets, (index_own, index_other), weights, compiled=False)

    index_own, index_other = index(n_distances), index(n_distances)
    assert torch.autograd.gradcheck(
        function, (tensor(sites, width), tensor(n_distances, width), tensor(rows, width), tensor(rows))
    )
