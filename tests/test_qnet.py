"""qnet: the stochastic quantized CNN (Sec. 4.3, App. B.5, B.6) and rf(M) on batch-coupled problems."""

import itertools
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from biasvar.engine import select_params
from biasvar.errors import DataError, SpecError
from biasvar.estimators import ScoreFunction, build, sample_onehot
from biasvar.problems.base import Problem, draw_loss, noise_requests
from biasvar.problems.qnet import QNet, levels_of_bits, parse_arch
from biasvar.problems.registry import make_problem
from biasvar.rng import draw_noise, stream_key

SMALL = "8C5-MP2-16C5-MP2-128FC-10FC"
MAIN = "32C5-MP2-64C5-MP2-512FC-10FC"
SPECS = ["st", "st(t=2)", "darn", "zgr", "st-zgr(alpha=0.5)", "gs(t=0.5)", "gs-st(t=0.5)",
         "gr-mc(t=0.5,M=10)", "rf(M=2)"]


def _grads(prob, spec, n=2, seed=0, params=None):
    est = build(spec)
    z = draw_noise(noise_requests(prob, est), stream_key(seed, spec), torch.arange(n), dtype=prob.batch.dtype)
    fn = torch.func.vmap(torch.func.grad(lambda p, zz: draw_loss(prob, est, p, zz)), in_dims=(None, 0))
    return fn(prob.params if params is None else params, z)


# -- architecture strings ----------------------------------------------------------------------------
def test_parse_the_papers_architectures():
    small = parse_arch(SMALL)
    assert [str(s) for s in small] == SMALL.split("-")
    assert [(s.kind, s.size, s.kernel) for s in small] == [("conv", 8, 5), ("pool", 2, 0), ("conv", 16, 5),
                                                           ("pool", 2, 0), ("fc", 128, 0), ("fc", 10, 0)]
    assert "-".join(map(str, parse_arch(MAIN.lower()))) == MAIN


@pytest.mark.parametrize("arch,match", [
    ("", "empty"),
    ("8C5-MPX-10FC", "cannot read token 'MPX'"),
    ("8C5-MP2", "must end with the class layer"),
    ("10FC-8C5-10FC", "after a fully connected layer"),
    ("MP2-10FC", "must follow a convolution"),
    ("8C5-MP2-MP2-10FC", "must follow a convolution"),
    ("0C5-10FC", "zero size"),
])
def test_bad_architecture_strings_say_what_is_expected(arch, match):
    with pytest.raises(SpecError, match=match) as e:
        QNet(arch=arch)
    assert "e.g. 8C5-MP2-16C5-MP2-128FC-10FC" in str(e.value)


def test_architecture_that_does_not_fit_the_image():
    with pytest.raises(SpecError, match="larger than its"):
        QNet(arch="8C30-10FC")
    with pytest.raises(SpecError, match="MP32 on a 24px"):
        QNet(arch="8C5-MP32-10FC")


@pytest.mark.parametrize("bits,K", [("T", 3), ("t", 3), ("ternary", 3), (1, 2), ("2", 4), (4, 16)])
def test_bits_to_levels(bits, K):
    assert levels_of_bits(bits) == K


@pytest.mark.parametrize("bits", ["0", "9", "two", 2.5, None])
def test_bad_bits_are_rejected(bits):
    with pytest.raises(SpecError, match="T \\(ternary"):
        levels_of_bits(bits)


# -- the network ---------------------------------------------------------------------------------------
def test_small_net_layers_params_and_nodes():
    net = QNet(arch=SMALL, weights_bits="T", acts_bits="T", placeholder_rows=3)
    assert [(L.kind, L.shape, L.K_w, L.K_a, L.pool) for L in net.layers] == [
        ("conv", (8, 1, 5, 5), 16, 3, 2), ("conv", (16, 8, 5, 5), 3, 3, 2),
        ("fc", (128, 256), 3, 3, 0), ("fc", (10, 128), 16, 0, 0)]  # first and last weights at 4 bits
    assert {k: tuple(v.shape) for k, v in net.params.items()} == {
        "layers.0.weight": (8, 1, 5, 5), "layers.0.gain": (8,), "layers.0.bias": (8,),
        "layers.1.weight": (16, 8, 5, 5), "layers.1.gain": (16,), "layers.1.bias": (16,),
        "layers.2.weight": (128, 256), "layers.2.gain": (128,), "layers.2.bias": (128,),
        "layers.3.weight": (10, 128), "layers.3.bias": (10,)}
    assert net.node_shapes(5) == {
        "w0": (1, 8, 1, 5, 5, 16), "a0": (5, 8, 24, 24, 3), "w1": (1, 16, 8, 5, 5, 3), "a1": (5, 16, 8, 8, 3),
        "w2": (1, 128, 256, 3), "a2": (5, 128, 3), "w3": (1, 10, 128, 16)}
    assert net.batch.shape == (3, 785) and net.kind == "qnet" and net.coupled
    assert select_params(net, net.measure_params) == ["layers.0.weight", "layers.0.gain", "layers.0.bias"]
    assert QNet(first_last_bits=None, weights_bits=2).layers[0].K_w == 4


def test_config_rebuilds_the_same_network_and_the_registry_knows_it():
    net = QNet(arch="4C5-MP2-10FC", weights_bits=2, acts_bits=1, noise="logistic", sigma=0.4, seed=3)
    again = make_problem("qnet", net.config)
    assert again.config == net.config
    for k in net.params:
        assert torch.equal(again.params[k], net.params[k])
    assert not torch.equal(QNet(seed=4).params["layers.0.weight"], QNet(seed=3).params["layers.0.weight"])


def test_sample_is_called_in_order_with_the_declared_node_shapes():
    net = QNet(arch=SMALL, placeholder_rows=3)
    seen = []

    def sample(node, logits):
        seen.append((node, tuple(logits.shape)))
        return sample_onehot(logits, torch.zeros_like(logits))

    loss = net.forward(net.params, net.batch, sample)
    assert loss.shape == (3,) and torch.isfinite(loss).all()
    assert seen == list(net.node_shapes(3).items())


@pytest.mark.parametrize("spec", SPECS)
def test_every_estimator_forward_backward_on_a_tiny_batch(spec):
    net = QNet(arch=SMALL, placeholder_rows=4)
    g = _grads(net, spec, n=2)
    assert set(g) == set(net.params)
    for k, v in g.items():
        assert v.shape == (2, *net.params[k].shape) and torch.isfinite(v).all(), (spec, k)
    assert g["layers.0.weight"].abs().sum() > 0 and g["layers.3.bias"].abs().sum() > 0


def _rounded_network(net: QNet, params, x):
    """The deterministic quantized network written out independently with torch.nn.functional."""
    def q(eta, K):
        return torch.round(eta).clamp(0, K - 1)

    h = x[:, 1:].reshape(-1, 1, 28, 28)
    layers = [("conv", 16, 3, 2), ("conv", 3, 3, 2), ("fc", 3, 3, 0), ("fc", 16, 0, 0)]
    for i, (kind, Kw, Ka, pool) in enumerate(layers):
        w = params[f"layers.{i}.weight"]
        fan_in = math.prod(w.shape[1:])
        alpha = 2 * math.sqrt(3 / fan_in) / (Kw - 1)  # the grid [-r, r] in Kw levels
        c = (Kw - 1) / 2
        wq = alpha * (q(w / alpha + c, Kw) - c)
        if kind == "conv":
            h = F.conv2d(h, wq)
        else:
            h = F.linear(h.flatten(1), wq)
        if not Ka:
            return h + params[f"layers.{i}.bias"]
        h = F.batch_norm(h, None, None, params[f"layers.{i}.gain"], params[f"layers.{i}.bias"], training=True,
                         eps=1e-5)
        ca = (Ka - 1) / 2
        h = q(h + ca, Ka) - ca
        if pool:
            h = F.max_pool2d(h, pool)


def test_deterministic_mode_is_the_rounded_network():
    # float64, so the two implementations' rounding errors cannot flip a level at a half-integer
    net = QNet(arch=SMALL, placeholder_rows=64, seed=1, dtype=torch.float64)
    g = torch.Generator().manual_seed(5)
    params = {k: v + 0.3 * torch.randn(v.shape, generator=g, dtype=v.dtype) * v.std().clamp_min(0.1)
              for k, v in net.params.items()}
    ref = _rounded_network(net, params, net.batch)
    assert_close(net.deterministic_logits(params, net.batch), ref, rtol=1e-9, atol=1e-9)
    ev = net.evaluate(params, net.batch)
    labels = net.batch[:, 0].long()
    assert ev["accuracy"] == pytest.approx(float((ref.argmax(-1) == labels).float().mean()))
    assert ev["loss"] == pytest.approx(float(F.cross_entropy(ref, labels)), rel=1e-4)
    sto = net.evaluate(params, net.batch, deterministic=False, generator=torch.Generator().manual_seed(0))
    assert set(sto) == {"accuracy", "loss"} and sto["loss"] != ev["loss"]


def test_rf_runs_M_independent_passes_with_their_own_weights_and_batch_statistics():
    """rf(M) on qnet: pass m's loss and log-probability are those of a plain forward pass with noise m
    (its own weight sample and batch-norm statistics), one unit per pass (``coupled``)."""
    net = QNet(arch="4C5-MP4-16FC-10FC", placeholder_rows=5, seed=2)
    M = 3
    captured = {}

    class Capture(ScoreFunction):
        def surrogate(self, f, logq):
            captured.update(f=f, logq=logq)
            return f.mean()

    est = Capture(build(f"rf(M={M})").spec, M)
    z = draw_noise(noise_requests(net, est), stream_key(0, "rf"), torch.arange(1))
    z = {node: {k: v[0] for k, v in d.items()} for node, d in z.items()}  # G: [M, B or 1, ...]
    draw_loss(net, est, net.params, z)
    for m in range(M):
        logq = []

        def sample(node, lg, m=m, logq=logq):
            y = sample_onehot(lg, z[node]["G"][m])
            logq.append((y * lg.log_softmax(-1)).sum())
            return y

        f = net.forward(net.params, net.batch, sample).mean()
        assert_close(captured["f"][m, 0], f, rtol=1e-5, atol=1e-6)
        assert_close(captured["logq"][m, 0], torch.stack(logq).sum(), rtol=1e-5, atol=1e-4)
    assert captured["f"].shape == (M, 1) and captured["logq"].shape == (M, 1)


def test_estimators_finite_when_quantizer_inputs_are_far_outside_the_levels():
    net = QNet(arch="4C5-MP4-16FC-10FC", placeholder_rows=4)
    params = dict(net.params)
    params["layers.0.weight"] = params["layers.0.weight"] * 1e3  # weight eta ~ +-1e3 levels
    params["layers.1.gain"] = params["layers.1.gain"] * 1e3  # activation eta ~ +-1e3
    for noise in ("triangular", "logistic"):
        net = QNet(arch="4C5-MP4-16FC-10FC", placeholder_rows=4, noise=noise)
        for spec in SPECS:
            g = _grads(net, spec, n=2, params=params)
            assert all(torch.isfinite(v).all() for v in g.values()), (noise, spec)


# -- data ----------------------------------------------------------------------------------------------
def test_make_batch_packs_labels_with_the_pixels():
    net = QNet()
    data = SimpleNamespace(images=torch.rand(10, 784), labels=torch.arange(10), name="fake", dynamic=False)
    x = net.make_batch(data, torch.tensor([3, 7]))
    assert x.shape == (2, 785) and x[:, 0].tolist() == [3.0, 7.0]
    assert torch.equal(x[:, 1:], data.images[[3, 7]])
    with pytest.raises(DataError, match="labelled"):
        unlabelled = SimpleNamespace(images=torch.rand(4, 784), labels=None, name="omniglot-d")
        net.make_batch(unlabelled, torch.arange(2))


def test_a_tiny_net_learns_a_separable_task_with_zgr():
    """Adam + zgr through draw_loss: deterministic accuracy on a bright-left vs bright-right task."""
    net = QNet(arch="4C3-MP2-10FC", image_size=8, placeholder_rows=64, seed=0)
    g = torch.Generator().manual_seed(0)

    def batch(n):
        y = torch.randint(2, (n,), generator=g)
        img = torch.rand(n, 8, 8, generator=g) * 0.3
        img[y == 0, :, :4] += 0.7
        img[y == 1, :, 4:] += 0.7
        return torch.cat([y[:, None].float(), img.flatten(1)], 1)

    est = build("zgr")
    params = {k: v.clone().requires_grad_(True) for k, v in net.params.items()}
    opt = torch.optim.Adam(params.values(), lr=3e-2)
    for step in range(60):
        x = batch(64)
        z = draw_noise(noise_requests(net, est, 64), stream_key(0, "train"), torch.tensor([step]))
        z = {node: {k: v[0] for k, v in d.items()} for node, d in z.items()}
        opt.zero_grad()
        draw_loss(net, est, params, z, x=x).backward()
        opt.step()
    test = batch(500)
    assert net.evaluate({k: v.detach() for k, v in params.items()}, test)["accuracy"] > 0.9


# -- rf(M) on a batch-coupled problem is unbiased (enumeration) --------------------------------------
class _Coupled(Problem):
    """A shared 3-level node w and per-data-point 3-level nodes a_b, coupled through the batch mean."""

    kind = "test-coupled"
    coupled = True

    def __init__(self, B: int = 2) -> None:
        g = torch.Generator().manual_seed(0)
        self.params = {"lw": torch.randn(3, generator=g, dtype=torch.float64),
                       "la": torch.randn(B, 3, generator=g, dtype=torch.float64)}
        self.batch = torch.arange(B, dtype=torch.float64)[:, None]
        self.config = {}

    def node_shapes(self, batch_size):
        return {"w": (1, 3), "a": (batch_size, 3)}

    def forward(self, params, x, sample):
        lv = torch.arange(3, dtype=x.dtype)
        w = sample("w", params["lw"].unsqueeze(0)) @ lv  # [R]
        R = w.shape[0]
        la = params["la"][x[:, 0].long()]  # [N, 3]
        a = (sample("a", la) @ lv).reshape(R, -1)  # [R, B]
        f = (w[:, None] * a - a.mean(1, keepdim=True)) ** 2 + torch.sin(3 * a)
        return f.reshape(-1)

    def exact(self):
        lw = self.params["lw"].clone().requires_grad_(True)
        la = self.params["la"].clone().requires_grad_(True)
        B = la.shape[0]
        total = 0
        for xs in itertools.product(range(3), repeat=B + 1):
            w, a = float(xs[0]), torch.tensor(xs[1:], dtype=torch.float64)
            logp = lw.log_softmax(-1)[xs[0]] + la.log_softmax(-1)[torch.arange(B), a.long()].sum()
            f = ((w * a - a.mean()) ** 2 + torch.sin(3 * a)).mean()
            total = total + logp.exp() * f
        return dict(zip(("lw", "la"), torch.autograd.grad(total, (lw, la)), strict=True))


def test_rf_is_unbiased_on_a_batch_coupled_problem():
    """With ``coupled`` the leave-one-out baseline acts on whole passes: unbiased (5 SE). Treating the
    data points of a pass as independent units would be badly biased here (checked too)."""
    prob = _Coupled(B=2)
    n = 40_000
    ref = prob.exact()
    g = _grads(prob, "rf(M=3)", n=n)
    for k in ("lw", "la"):
        mean, se = g[k].mean(0), g[k].std(0) / math.sqrt(n)
        assert ((mean - ref[k]).abs() <= 5 * se + 1e-9).all(), (k, mean, ref[k], se)
    prob.coupled = False
    g = _grads(prob, "rf(M=3)", n=n)
    z = (g["la"].mean(0) - ref["la"]) / (g["la"].std(0) / math.sqrt(n))
    assert z.abs().max() > 10


def test_engine_measures_layer_0_and_keeps_all_its_draws(tmp_path):
    """Item 5 of the issue: the sampler engine on qnet, layer 0 only, every coordinate's draws kept."""
    from biasvar import engine, store
    from biasvar.snapshot import snapshot_of

    net = QNet(arch="4C5-MP4-16FC-10FC", placeholder_rows=6)
    for spec in ("zgr", "rf(M=4)"):
        path = engine.sample_run(snapshot_of(net), spec, n=8, runs_dir=tmp_path, params=net.measure_params,
                                 keep=256, device="cpu")
        run = store.read_run(path)
        assert run.n == 8 and run.dim == 4 * 25 + 4 + 4 and run.status == "complete"
        assert run.samples.shape == (8, run.dim) and int(run.block_nonfinite.sum()) == 0
        assert torch.isfinite(torch.as_tensor(run.samples)).all() and float(abs(run.samples).sum()) > 0
