import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from teaforn import FeedbackScale, TeaForN, level_weights, teaforn_loss

V, C, T, B = 11, 16, 9, 3


class TinyTransformer(nn.Module):
    """A small causal transformer split into embed / decode / head (positions added inside decode)."""

    def __init__(self):
        super().__init__()
        self.tok = nn.Embedding(V, C)
        self.pos = nn.Parameter(torch.randn(T, C) * 0.1)
        self.layer = nn.TransformerEncoderLayer(C, nhead=2, dim_feedforward=32, dropout=0.0, batch_first=True)
        self.norm = nn.LayerNorm(C)
        self.out = nn.Linear(C, V)

    def embed(self, ids):
        return self.tok(ids)

    def decode(self, x):
        t = x.size(1)
        mask = nn.Transformer.generate_square_subsequent_mask(t)
        return self.norm(self.layer(x + self.pos[:t], src_mask=mask, is_causal=True))

    def head(self, h):
        return self.out(h)


class TinyGRU(nn.Module):
    """A recurrent decoder: TeaForN must not assume a transformer."""

    def __init__(self):
        super().__init__()
        self.tok = nn.Embedding(V, C)
        self.gru = nn.GRU(C, C, batch_first=True)
        self.out = nn.Linear(C, V)

    def embed(self, ids):
        return self.tok(ids)

    def decode(self, x):
        return torch.tanh(self.gru(x)[0])

    def head(self, h):
        return self.out(h)


def data(seed=0):
    g = torch.Generator().manual_seed(seed)
    seq = torch.randint(0, V, (B, T + 1), generator=g)
    return seq[:, :-1], seq[:, 1:].clone()


@pytest.fixture(params=[TinyTransformer, TinyGRU])
def model(request):
    torch.manual_seed(0)
    return request.param().eval()


def run(model, x, y, **kw):
    return teaforn_loss(model.embed, model.decode, model.head, x, y, **kw)


def test_n1_is_plain_cross_entropy(model):
    x, y = data()
    y[0, 2] = -100
    plain = F.cross_entropy(model.head(model.decode(model.embed(x))).reshape(-1, V), y.reshape(-1))
    out = run(model, x, y, n=1)
    assert torch.equal(out.loss, plain)
    assert torch.equal(out.level_losses[0], plain)
    assert out.level_counts == [B * T - 1]


def test_total_is_weighted_sum_of_levels(model):
    x, y = data()
    out = run(model, x, y, n=3, weights="decay", return_logits=True)
    assert len(out.level_losses) == len(out.level_logits) == 3
    expected = out.level_losses[0] + 0.5 * out.level_losses[1] + 0.25 * out.level_losses[2]
    torch.testing.assert_close(out.loss, expected)
    assert all(0 <= float(a) <= 1 for a in out.level_accuracy)
    # deeper levels are different predictions, not copies of level 1
    assert not torch.allclose(out.level_logits[0][:, 1:], out.level_logits[1][:, 1:])


def test_module_matches_function(model):
    x, y = data()
    module = TeaForN(n=3, weights=[1.0, 0.3, 0.1])
    a = module(model.embed, model.decode, model.head, x, y)
    b = run(model, x, y, n=3, weights=[1.0, 0.3, 0.1])
    assert torch.equal(a.loss, b.loss)


def test_warmup_masking(model):
    x, y = data()
    masked = run(model, x, y, n=3, return_logits=True)
    assert masked.level_counts == [B * T, B * (T - 1), B * (T - 2)]
    unmasked = run(model, x, y, n=3, mask_warmup=False, return_logits=True)
    assert unmasked.level_counts == [B * T] * 3
    l1, l2, l3 = unmasked.level_logits
    # the warm-up positions only repeat lower levels: position 0 is level 1, position 1 of level 3 is level 2
    torch.testing.assert_close(l2[:, 0], l1[:, 0])
    torch.testing.assert_close(l3[:, 0], l1[:, 0])
    torch.testing.assert_close(l3[:, 1], l2[:, 1])


def test_gradient_flows_through_fed_back_vectors(model):
    """With only level 2 in the loss, the embeddings of tokens at positions >= 1 reach the loss solely through the
    fed-back level-1 outputs: they get a gradient, unless the feedback is detached."""
    x, y = data()
    x[:, 0] = 0
    x[:, 1:] = torch.randint(1, V, (B, T - 1), generator=torch.Generator().manual_seed(1))
    later = sorted(set(x[:, 1:-1].flatten().tolist()))  # tokens fed to level 1 at positions that level 2 reads

    def embedding_grad(detach):
        model.zero_grad()
        run(model, x, y, n=2, weights=[0.0, 1.0], detach=detach).loss.backward()
        return model.tok.weight.grad.clone()

    live, cut = embedding_grad(False), embedding_grad(True)
    assert cut[later].abs().sum() == 0
    assert live[later].abs().sum(dim=1).gt(0).all()
    assert live[0].abs().sum() > 0 and cut[0].abs().sum() > 0  # position 0 keeps its true embedding


def test_feedback_transform_is_trained(model):
    x, y = data()
    scale = FeedbackScale(n=3)
    out = TeaForN(n=3, feedback_transform=scale)(model.embed, model.decode, model.head, x, y)
    out.loss.backward()
    assert scale.scale.grad is not None and scale.scale.grad.abs().gt(0).all()
    # a transform changes the deeper levels only
    base = run(model, x, y, n=3)
    torch.testing.assert_close(out.level_losses[0], base.level_losses[0])
    with torch.no_grad():
        scale.scale.fill_(0.5)
    halved = TeaForN(n=3, feedback_transform=scale)(model.embed, model.decode, model.head, x, y)
    assert not torch.allclose(halved.level_losses[1], base.level_losses[1])


@pytest.mark.parametrize("k", [1, 2, 3])
def test_causality_level_k_sees_true_inputs_up_to_t_minus_k_plus_1(model, k):
    x, _ = data()
    y = torch.zeros_like(x)
    base = run(model, x, y, n=3, return_logits=True).level_logits[k - 1]
    for j in range(1, T):
        x2 = x.clone()
        x2[:, j] = (x2[:, j] + 1) % V
        new = run(model, x2, y, n=3, return_logits=True).level_logits[k - 1]
        for t in range(T):
            sees_j = t - k + 1 >= j
            changed = not torch.allclose(new[:, t], base[:, t], atol=1e-6, rtol=0)
            assert changed == sees_j, (k, j, t)


def test_expected_embedding_feed(model):
    x, y = data()
    out = run(model, x, y, n=3, feed="expected_embedding", weights=[0.0, 1.0, 1.0], embedding_weight=model.tok.weight)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    assert model.tok.weight.grad[x[:, 1:].flatten()].abs().sum() > 0
    hidden = run(model, x, y, n=3)
    assert not torch.allclose(out.level_losses[1], hidden.level_losses[1])
    # the matrix may be given as a callable, or found on an nn.Embedding used as embed
    a = run(model, x, y, n=2, feed="expected_embedding", embedding_weight=lambda: model.tok.weight)
    b = teaforn_loss(model.tok, model.decode, model.head, x, y, n=2, feed="expected_embedding")
    torch.testing.assert_close(a.loss, b.loss)
    with pytest.raises(ValueError, match="embedding matrix"):
        run(model, x, y, n=2, feed="expected_embedding")  # a bound method has no .weight


def test_gru_trains_all_levels():
    torch.manual_seed(0)
    model = TinyGRU()
    seq = torch.arange(T + 1).remainder(4).repeat(8, 1)  # 0 1 2 3 0 1 ...: every level can learn it exactly
    x, y = seq[:, :-1], seq[:, 1:]
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    first = None
    for _ in range(60):
        out = run(model, x, y, n=3)
        first = first or [l.item() for l in out.level_losses]
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    last = [l.item() for l in out.level_losses]
    assert all(b < 0.5 * a for a, b in zip(first, last)), (first, last)


def test_short_sequences_and_bad_arguments(model):
    x, y = data()
    out = run(model, x[:, :1], y[:, :1], n=3)  # T=1: levels 2 and 3 have no positions left after masking
    assert out.level_counts == [B, 0, 0] and torch.isfinite(out.loss)
    assert level_weights(3, "decay") == [1.0, 0.5, 0.25] and level_weights(2, "mean") == [0.5, 0.5]
    with pytest.raises(ValueError, match="schedule"):
        level_weights(2, "cosine")
    with pytest.raises(ValueError, match="needs 3 level weights"):
        level_weights(3, [1.0, 0.5])
    with pytest.raises(ValueError, match="n >= 1"):
        TeaForN(n=0)
    with pytest.raises(ValueError, match="feed"):
        TeaForN(n=2, feed="sampled")
