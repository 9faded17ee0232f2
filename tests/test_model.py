import pytest
import torch
import torch.nn.functional as F

from xiangqi_gpt.errors import ConfigError
from xiangqi_gpt.model.gpt import GPT, GPTConfig, KVCache, candidate_tree
from xiangqi_gpt.data.tokenizer import get_tokenizer

BLOCK = 24
ATOL = 1e-5


def tiny(tokenizer="move", seed=0, **kw):
    torch.manual_seed(seed)
    cfg = dict(block_size=BLOCK, n_layer=2, n_head=2, n_embd=32, tokenizer=tokenizer)
    cfg.update(kw)
    model = GPT(GPTConfig(**cfg)).eval()
    with torch.no_grad():  # larger than the 0.02 init, so that positions and history visibly matter
        for p in model.parameters():
            p.mul_(8.0 if p.dim() >= 2 else 1.0)
    return model


def random_ids(model, n, seed=1, batch=None):
    g = torch.Generator().manual_seed(seed)
    shape = (n,) if batch is None else (batch, n)
    return torch.randint(5, model.config.vocab_size, shape, generator=g)


@torch.no_grad()
def window_logprobs(model, tokens):
    """Reference: log-probs after ``tokens`` from one plain forward over the model's context window."""
    start = model.context_start(len(tokens))
    logits, _ = model(torch.tensor([tokens[start:]]))
    return F.log_softmax(logits[0, -1].float(), dim=-1)


def test_causal_future_tokens_do_not_change_past_logits():
    model = tiny()
    x = random_ids(model, BLOCK, batch=2)
    base, _ = model(x)
    for j in [1, 7, BLOCK - 1]:
        y = x.clone()
        y[:, j:] = random_ids(model, BLOCK - j, seed=j, batch=2)
        new, _ = model(y)
        torch.testing.assert_close(new[:, :j], base[:, :j], atol=ATOL, rtol=0)
        assert not torch.allclose(new[:, j], base[:, j], atol=1e-3)


def test_forward_loss_and_ignore_index():
    model = tiny()
    x = random_ids(model, 10, batch=2)
    y = random_ids(model, 10, seed=2, batch=2)
    y[0, :3] = -100
    logits, loss = model(x, y)
    assert logits.shape == (2, 10, model.config.vocab_size)
    expected = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1), ignore_index=-100)
    torch.testing.assert_close(loss, expected)
    with pytest.raises(ValueError, match="longer than the model's block_size"):
        model(random_ids(model, BLOCK + 1, batch=1))


def test_kv_cache_matches_full_forward():
    model = tiny()
    x = random_ids(model, BLOCK, batch=2)
    full, _ = model(x)
    logits, cache = model.prefill(x[:, :5])
    torch.testing.assert_close(logits, full[:, 4], atol=ATOL, rtol=0)
    for t in range(5, 12):
        torch.testing.assert_close(model.step(cache, x[:, t]), full[:, t], atol=ATOL, rtol=0)
    logits, cache = model.prefill(x[:, 12:], cache)  # a multi-token chunk after a cache
    torch.testing.assert_close(logits, full[:, -1], atol=ATOL, rtol=0)
    assert cache.length == BLOCK
    with pytest.raises(ValueError, match="block_size"):
        model.step(cache, x[:, 0])


def test_generate_greedy_matches_forward_within_block():
    model = tiny()
    start = [0] + random_ids(model, 4).tolist()
    out = model.generate(start, 10, temperature=0)[0].tolist()
    assert out[:5] == start and len(out) == 15
    for t in range(5, 15):
        logits, _ = model(torch.tensor([out[:t]]))
        assert out[t] == int(logits[0, -1].argmax())


def test_generate_beyond_block_size_follows_the_window_rule():
    model = tiny()
    start = [0] + random_ids(model, 10).tolist()
    out = model.generate(start, 3 * BLOCK, temperature=0)[0].tolist()
    assert len(out) == 11 + 3 * BLOCK
    for t in range(11, len(out)):
        assert out[t] == int(window_logprobs(model, out[:t]).argmax()), t


def test_generate_samples_valid_tokens_with_top_k():
    model = tiny()
    g = torch.Generator().manual_seed(0)
    out = model.generate(torch.zeros(3, 1, dtype=torch.long), 30, temperature=1.0, top_k=5, generator=g)
    assert out.shape == (3, 31) and int(out.max()) < model.config.vocab_size
    # top_k=1 is greedy
    a = model.generate([0, 7], 5, top_k=1, generator=g)
    b = model.generate([0, 7], 5, temperature=0)
    assert torch.equal(a, b)


@pytest.mark.parametrize("tokenizer", ["move", "char"])
def test_context_start_rule(tokenizer):
    model = tiny(tokenizer)
    hop, own = model.window_hop, model.context_reserve
    assert own == get_tokenizer(tokenizer).tokens_per_move - 1
    assert model.context_start(BLOCK - own) == 0 and model.context_start(BLOCK - own + 1) > 0
    for n in range(BLOCK + 1, 5 * BLOCK):
        for reserve in (0, 3, 5):
            s = model.context_start(n, reserve)
            max_ctx = BLOCK - max(reserve, own)
            assert s % hop == 0 and 0 < n - s <= max_ctx and n - s > max_ctx - hop


def test_char_generate_beyond_block_size_follows_the_window_rule():
    model = tiny("char")
    out = model.generate([0, 7, 8, 9, 10], 2 * BLOCK, temperature=0)[0].tolist()
    for t in range(5, len(out)):
        assert out[t] == int(window_logprobs(model, out[:t]).argmax()), t


@pytest.mark.parametrize("length", [1, 9, BLOCK, BLOCK + 1, 3 * BLOCK + 5])
def test_next_logprobs_equals_forward_over_window(length):
    model = tiny()
    history = [0] + random_ids(model, length - 1, seed=length).tolist()
    lp = model.next_logprobs(history)
    assert lp.shape == (model.config.vocab_size,) and lp.dtype == torch.float32
    torch.testing.assert_close(lp, window_logprobs(model, history), atol=ATOL, rtol=0)


@torch.no_grad()
def manual_score(model, history, cand, reserve):
    start = model.context_start(len(history), reserve)
    seq = history[start:] + cand
    logits, _ = model(torch.tensor([seq[:-1]]))
    logp = F.log_softmax(logits[0].float(), dim=-1)
    n = len(history) - start
    return sum(float(logp[n - 1 + j, tok]) for j, tok in enumerate(cand))


@pytest.mark.parametrize("tokenizer", ["move", "char"])
@pytest.mark.parametrize("plies", [0, 3, 40])
def test_score_candidates_equals_manual_log_probs(tokenizer, plies):
    model = tiny(tokenizer)
    tok = get_tokenizer(tokenizer)
    moves = tok.tokens[5:] if tokenizer == "move" else get_tokenizer("move").tokens[5:]
    rng = torch.Generator().manual_seed(plies)
    pick = lambda k: [moves[i] for i in torch.randint(0, len(moves), (k,), generator=rng).tolist()]
    history = [0] + tok.encode_moves(pick(plies))  # 40 plies of char tokens is 161 > block_size
    candidates = [tok.move_ids(m) for m in pick(12)]
    scores = model.score_candidates(history, candidates)
    assert scores.shape == (12,) and scores.dtype == torch.float32
    m = tok.tokens_per_move
    expected = torch.tensor([manual_score(model, history, c, m - 1) for c in candidates])
    torch.testing.assert_close(scores, expected, atol=1e-4, rtol=0)
    assert len(set(scores.tolist())) > 1


def test_score_candidates_shared_prefixes_and_duplicates():
    model = tiny("char")
    tok = get_tokenizer("char")
    history = [0] + tok.encode_moves(["h2e2", "h9g7", "h0g2"])
    moves = ["b0c2", "b0a2", "b2b9", "b2b3", "b2e2", "b2b9", "g3g4", "g3g4", "i0h0"]  # shared from-squares, repeats
    candidates = [tok.move_ids(m) for m in moves]
    scores = model.score_candidates(history, candidates)
    expected = torch.tensor([manual_score(model, history, c, 3) for c in candidates])
    torch.testing.assert_close(scores, expected, atol=1e-4, rtol=0)
    assert scores[2] == scores[5] and scores[6] == scores[7]


def test_score_candidates_mixed_lengths_and_edge_cases():
    model = tiny("char")
    history = [0] + random_ids(model, 30, seed=3).tolist()
    candidates = [[7], [7, 8], [9, 10, 11, 12], [5, 6, 7]]
    scores = model.score_candidates(history, candidates)
    expected = [manual_score(model, history, c, 3) for c in candidates]
    torch.testing.assert_close(scores, torch.tensor(expected), atol=1e-4, rtol=0)
    assert model.score_candidates(history, []).shape == (0,)
    with pytest.raises(ValueError, match="at least one token"):
        model.score_candidates(history, [[5], []])
    with pytest.raises(ValueError, match="history"):
        model.score_candidates([], [[5]])
    with pytest.raises(ValueError, match="token ids must lie"):
        model.score_candidates(history, [[model.config.vocab_size]])


@pytest.mark.parametrize("tokenizer", ["move", "char"])
def test_cache_reuse_across_a_growing_game_gives_the_same_answers(tokenizer):
    model = tiny(tokenizer)
    m = get_tokenizer(tokenizer).tokens_per_move
    game = [0] + random_ids(model, 3 * BLOCK, seed=5).tolist()
    candidates = [random_ids(model, m, seed=s).tolist() for s in range(6)]
    cache = KVCache()
    for n in range(1, len(game), m):
        a = model.score_candidates(game[:n], candidates, cache=cache)
        b = model.score_candidates(game[:n], candidates)
        torch.testing.assert_close(a, b, atol=1e-4, rtol=0)
        assert cache.length == n - cache.start  # the cache holds the current window, candidates are not kept
    c2 = KVCache()
    for n in (5, 6, 30, 31, 29):  # histories that shrink or change also work: the cache is rebuilt
        torch.testing.assert_close(model.next_logprobs(game[:n], cache=c2), model.next_logprobs(game[:n]),
                                   atol=ATOL, rtol=0)
    other = game[:10]
    other[4] = (other[4] + 1) % model.config.vocab_size
    torch.testing.assert_close(model.next_logprobs(other, cache=c2), model.next_logprobs(other), atol=ATOL, rtol=0)


# --------------------------------------------------------------------------------------------------------------------
# tree_logprobs: the one tree layout (score_candidates, the search's policy, evaluate's char scoring)


def random_tree(n, seed, n_roots=1):
    """Parents of a random tree of n nodes with ``n_roots`` roots (nodes 0 .. n_roots - 1)."""
    g = torch.Generator().manual_seed(seed)
    return [-1] * n_roots + [int(torch.randint(0, i, (1,), generator=g)) for i in range(n_roots, n)]


def path_of(parents, i):
    path = []
    while i >= 0:
        path.append(i)
        i = parents[i]
    return path[::-1]


@torch.no_grad()
def plain_logprobs(model, tokens):
    """Reference: the log-probs after ``tokens`` from one plain causal forward pass over exactly them."""
    logits, _ = model(torch.tensor([tokens]))
    return F.log_softmax(logits[0, -1].float(), dim=-1)


@pytest.mark.parametrize("tokenizer", ["move", "char"])
def test_tree_logprobs_equals_a_plain_forward_per_node(tokenizer):
    """Every node's row is what a plain forward pass over the history and the node's own path gives."""
    model = tiny(tokenizer)
    history = [0] + random_ids(model, 12, seed=4).tolist()
    _, cache = model.prefill(history)
    parents = random_tree(9, seed=1)
    tokens = random_ids(model, 9, seed=2).tolist()
    logp = model.tree_logprobs(cache, tokens, parents)
    assert logp.shape == (9, model.config.vocab_size) and logp.dtype == torch.float32
    for i in range(9):
        expected = plain_logprobs(model, history + [tokens[j] for j in path_of(parents, i)])
        torch.testing.assert_close(logp[i], expected, atol=ATOL, rtol=0)
    assert cache.length == len(history)                       # the cache is read, not extended
    rows = model.tree_logprobs(cache, tokens, parents, rows=[7, 2])
    torch.testing.assert_close(rows, logp[[7, 2]], atol=ATOL, rtol=0)
    assert len(set(logp[:, 5].tolist())) > 1                   # the nodes really differ


def test_tree_logprobs_roots_follow_their_own_history_prefix():
    """Several positions of one game in one call: each root (and its subtree) sees only the first ``context``
    tokens of the cache, at the rotary positions of its own sequence."""
    model = tiny("char")
    history = [0] + random_ids(model, 15, seed=6).tolist()
    _, cache = model.prefill(history)
    parents = random_tree(12, seed=3, n_roots=3)
    tokens = random_ids(model, 12, seed=7).tolist()
    root_context = {0: 16, 1: 5, 2: 9}
    root = [path_of(parents, i)[0] for i in range(12)]
    context = [root_context[r] for r in root]
    logp = model.tree_logprobs(cache, tokens, parents, context=context)
    for i in range(12):
        expected = plain_logprobs(model, history[:context[i]] + [tokens[j] for j in path_of(parents, i)])
        torch.testing.assert_close(logp[i], expected, atol=ATOL, rtol=0)


def test_tree_logprobs_mirror_ensemble_mixes_like_next_logprobs():
    """With the mirror ensemble on, after ``history_logprobs`` filled ``cache.mirror``, every node's row is
    ``next_logprobs`` of the history plus its path (which mixes); ``mirror=False`` is the plain model."""
    model = tiny()
    model.set_mirror_ensemble(0.35)
    history = [0] + random_ids(model, 10, seed=8).tolist()
    cache = KVCache()
    torch.testing.assert_close(model.history_logprobs(history, 2, cache), model.next_logprobs(history),
                               atol=ATOL, rtol=0)
    parents = [-1, 0, 0, 1, -1]
    tokens = random_ids(model, 5, seed=9).tolist()
    mixed = model.tree_logprobs(cache, tokens, parents)
    plain = model.tree_logprobs(cache, tokens, parents, mirror=False)
    for i in range(5):
        path = history + [tokens[j] for j in path_of(parents, i)]
        torch.testing.assert_close(mixed[i], model.next_logprobs(path), atol=ATOL, rtol=0)
        torch.testing.assert_close(plain[i], plain_logprobs(model, path), atol=ATOL, rtol=0)
    assert not torch.allclose(mixed, plain, atol=1e-3)
    with pytest.raises(ValueError, match="cache.mirror"):
        model.tree_logprobs(model.prefill(history)[1], tokens, parents)


def test_tree_logprobs_rejects_bad_trees():
    model = tiny()
    _, cache = model.prefill([0, 5, 6])
    with pytest.raises(ValueError, match="at least one node"):
        model.tree_logprobs(cache, [], [])
    with pytest.raises(ValueError, match="one parent per token"):
        model.tree_logprobs(cache, [5, 6], [-1])
    with pytest.raises(ValueError, match="earlier node"):
        model.tree_logprobs(cache, [5, 6], [-1, 1])
    with pytest.raises(ValueError, match="context must lie in 0..3"):
        model.tree_logprobs(cache, [5], [-1], context=[4])
    with pytest.raises(ValueError, match="block_size"):
        model.tree_logprobs(cache, [5] * BLOCK, list(range(-1, BLOCK - 1)))
    with pytest.raises(ValueError, match="token ids must lie"):
        model.tree_logprobs(cache, [model.config.vocab_size], [-1])


def test_candidate_tree_shares_prefixes():
    tokens, parents, nodes = candidate_tree([[1, 2, 3], [1, 2, 4], [1, 5], [7], [1, 5, 6], [8, 2, 3], [1, 2, 3]])
    assert tokens == [1, 2, 5, 8, 2] and parents == [-1, 0, 0, -1, 3]
    assert nodes == [[0, 1], [0, 1], [0], [], [0, 2], [3, 4], [0, 1]]


@pytest.mark.parametrize("length", [5, BLOCK - 1, 2 * BLOCK + 3])
def test_history_logprobs_leaves_room_for_the_reserve(length):
    """``history_logprobs(h, reserve)`` is the plain forward over the window that leaves ``reserve`` positions
    free; ``reserve=0`` is ``next_logprobs``."""
    model = tiny()
    history = [0] + random_ids(model, length - 1, seed=length).tolist()
    for reserve in (0, 3):
        cache = KVCache()
        lp = model.history_logprobs(history, reserve, cache)
        start = model.context_start(len(history), reserve)
        assert cache.start == start and cache.length == len(history) - start <= BLOCK - reserve
        torch.testing.assert_close(lp, plain_logprobs(model, history[start:]), atol=ATOL, rtol=0)
    torch.testing.assert_close(model.history_logprobs(history), model.next_logprobs(history), atol=0, rtol=0)


@pytest.mark.parametrize("tokenizer,mirror", [("move", 0.0), ("char", 0.0), ("move", 0.3)])
def test_greedy_continuations_equal_generate(tokenizer, mirror):
    """Many prefixes of one history continued greedily at once give the tokens of one ``generate`` per prefix."""
    model = tiny(tokenizer)
    model.set_mirror_ensemble(mirror)
    history = [0] + random_ids(model, 12, seed=12).tolist()
    ends = [1, 4, 9, 13, 4]
    out = model.greedy_continuations(history, ends, 8)
    for n, tokens in zip(ends, out):
        assert tokens == model.generate(history[:n], 8, temperature=0)[0, n:].tolist()
    assert len({tuple(t) for t in out}) > 2
    with pytest.raises(ValueError, match="do not fit"):
        model.greedy_continuations(history, [13], BLOCK)
    with pytest.raises(ValueError, match="prefix length"):
        model.greedy_continuations(history, [0, 5], 2)


def test_kv_cache_fork_is_independent():
    model = tiny()
    model.set_mirror_ensemble(0.3)
    history = [0] + random_ids(model, 9, seed=11).tolist()
    cache = KVCache()
    model.next_logprobs(history, cache)
    fork = cache.fork()
    assert (fork.length, fork.start, fork.tokens) == (cache.length, cache.start, cache.tokens)
    assert fork.mirror is not None and fork.mirror is not cache.mirror and fork.mirror.length == cache.length
    longer = history + [7, 8]
    torch.testing.assert_close(model.next_logprobs(longer, fork), model.next_logprobs(longer), atol=ATOL, rtol=0)
    assert fork.length == cache.length + 2 and fork.mirror.length == cache.length + 2
    assert cache.length == len(history) and cache.tokens == history and cache.mirror.length == len(history)
    torch.testing.assert_close(model.next_logprobs(history, cache), model.next_logprobs(history), atol=ATOL, rtol=0)
    fork.clear()
    assert cache.length == len(history)


def test_weight_tying_and_param_count():
    model = tiny()
    assert model.lm_head.weight is model.tok_emb.weight
    unique = {id(p): p.numel() for p in model.parameters()}
    assert model.num_params() == sum(unique.values())
    assert model.num_params(exclude_embedding=True) == model.num_params() - model.tok_emb.weight.numel()
    model.zero_grad()
    x = random_ids(model, 8, batch=1)
    model(x, x)[1].backward()
    assert model.tok_emb.weight.grad is model.lm_head.weight.grad


def test_teaforn_plugs_in():
    teaforn = pytest.importorskip("teaforn")
    model = tiny()
    x = random_ids(model, 12, batch=2)
    y = random_ids(model, 12, seed=9, batch=2)
    _, loss = model(x, y)
    out = teaforn.teaforn_loss(model.embed, model.decode, model.head, x, y, n=1)
    torch.testing.assert_close(out.loss, loss, atol=0, rtol=0)
    out = teaforn.TeaForN(n=3)(model.embed, model.decode, model.head, x, y)
    out.loss.backward()
    assert torch.isfinite(out.loss) and model.blocks[0].attn.qkv.weight.grad is not None


def test_config_defaults_and_round_trip():
    cfg = GPTConfig()
    assert cfg.vocab_size == get_tokenizer("move").vocab_size
    assert GPTConfig(tokenizer="char").vocab_size == 24
    assert GPTConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("kwargs, message", [
    (dict(n_embd=100, n_head=3), "not divisible by n_head"),
    (dict(n_embd=36, n_head=4), "must be even"),
    (dict(n_layer=0), "n_layer must be a positive integer"),
    (dict(n_head=2.5), "n_head must be a positive integer"),
    (dict(block_size=1), "block_size must be at least 2 tokens"),
    (dict(block_size=4, tokenizer="char"), "block_size must be at least 5 tokens"),
    (dict(vocab_size=100), "smaller than the move tokenizer's 2091"),
    (dict(tokenizer="bpe"), "tokenizer must be one of move, char"),
    (dict(dropout=1.0), "dropout must be a number in"),
    (dict(bias="yes"), "bias must be true or false"),
])
def test_config_errors_are_clear(kwargs, message):
    with pytest.raises(ConfigError, match=message) as info:
        GPTConfig(**kwargs)
    assert "\n" not in str(info.value)


def test_config_from_dict_rejects_unknown_keys():
    with pytest.raises(ConfigError, match="unknown model config key.*n_layers"):
        GPTConfig.from_dict({"n_layers": 4})


# --------------------------------------------------------------------------------------------------------------------
# forward_tokens: the public low-level pass (evaluate.py, formerly model._run)


@torch.no_grad()
def test_forward_tokens_plain_equals_forward_and_the_old_path():
    model = tiny()
    ids = random_ids(model, 11, batch=3)
    h, kv = model.forward_tokens(ids)
    old_h, old_kv = model._run(model.embed(ids), model.rope_cos[:11], model.rope_sin[:11])
    assert torch.equal(h, old_h)
    assert all(torch.equal(a, b) and torch.equal(c, d) for (a, c), (b, d) in zip(kv, old_kv))
    assert len(kv) == model.config.n_layer and kv[0][0].shape == (3, 2, 11, 16)
    torch.testing.assert_close(model.head(h), model(ids)[0], atol=ATOL, rtol=0)


@torch.no_grad()
def test_forward_tokens_with_cache_positions_and_mask_equals_the_old_path():
    """The call pattern of evaluate.py's trie scoring and batched free runs: new tokens at chosen positions after
    a cache, each seeing a masked part of it."""
    model = tiny("char")
    hist = random_ids(model, 9, batch=1)
    cache = KVCache()
    cache.append(model.forward_tokens(hist)[1])
    feed = random_ids(model, 4, seed=2, batch=1)
    pos = torch.tensor([9, 10, 5, 6])
    mask = torch.zeros(4, 13, dtype=torch.bool)
    mask[:2, :9] = True
    mask[2:, :5] = True
    for i, j in ((0, 0), (1, 0), (1, 1), (2, 2), (3, 2), (3, 3)):
        mask[i, 9 + j] = True
    h, kv = model.forward_tokens(feed, pos, cache, mask)
    old_h, old_kv = model._run(model.embed(feed), model.rope_cos[pos], model.rope_sin[pos], cache, mask)
    assert torch.equal(h, old_h) and all(torch.equal(a[0], b[0]) for a, b in zip(kv, old_kv))
    assert cache.length == 9                                   # read, not extended
    # Row 3 sees history[:5] and feed[2:4] at positions 5, 6: a plain forward over that sequence.
    ref = model.decode(model.embed(torch.cat([hist[:, :5], feed[:, 2:]], dim=1)))
    torch.testing.assert_close(h[0, 3], ref[0, -1], atol=ATOL, rtol=0)


@torch.no_grad()
def test_forward_tokens_default_mask_and_positions_extend_a_cache():
    model = tiny()
    ids = random_ids(model, 14, batch=2)
    cache = KVCache()
    cache.append(model.forward_tokens(ids[:, :8])[1])
    h, kv = model.forward_tokens(ids[:, 8:], cache=cache)     # positions 8..13, causal over cache + new
    full, _ = model.forward_tokens(ids)
    torch.testing.assert_close(h, full[:, 8:], atol=ATOL, rtol=0)
    cache.append(kv)
    assert cache.length == 14


def test_forward_tokens_rejects_bad_shapes():
    model = tiny()
    cache = KVCache()
    cache.append(model.forward_tokens(random_ids(model, 5, batch=1))[1])
    with pytest.raises(ValueError, match="positions must lie"):
        model.forward_tokens(random_ids(model, 2, batch=1), torch.tensor([0, BLOCK]))
    with pytest.raises(ValueError, match="positions must have shape"):
        model.forward_tokens(random_ids(model, 2, batch=1), torch.tensor([0]))
    with pytest.raises(ValueError, match="mask must have shape"):
        model.forward_tokens(random_ids(model, 2, batch=1), cache=cache, mask=torch.ones(2, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="longer than"):
        model.forward_tokens(random_ids(model, BLOCK, batch=1), cache=cache)
    with pytest.raises(ValueError, match="batch, time"):
        model.forward_tokens(random_ids(model, 3))
