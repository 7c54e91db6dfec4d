"""The encoder-decoder Transformer: teacher forcing, cached decoding, beam search, input checks."""

import itertools

import pytest
import torch

from nnatlas.models import create_model, get_model_info
from nnatlas.models.seq2seq import TransformerSeq2Seq

V = 9


def _model(**kwargs):
    torch.manual_seed(0)
    defaults = {"vocab_size": V, "d_model": 32, "dim_feedforward": 64, "dropout": 0.0, "max_len": 40}
    return create_model("transformer_seq2seq", **{**defaults, **kwargs}).eval()


def _src(B=3, S=7):
    src = torch.randint(3, V, (B, S))
    src[1, 4:] = 0  # a padded row
    return src


def test_registered_as_seq2seq_with_tied_output_projection():
    assert get_model_info("transformer_seq2seq").task == "seq2seq"
    model = _model()
    assert isinstance(model, TransformerSeq2Seq)
    assert model.head.weight is model.tgt_embed.weight
    untied = _model(tie_embeddings=False)
    assert untied.head.weight is not untied.tgt_embed.weight


@pytest.mark.parametrize("positional", ["sinusoidal", "learned"])
def test_forward_is_causal_in_the_target(positional):
    model = _model(positional=positional)
    src, tgt = _src(), torch.randint(3, V, (3, 6))
    logits = model(src, tgt)
    assert logits.shape == (3, 6, V)
    # Changing target token 4 leaves the predictions at positions 0..3 unchanged (the decoder looks left).
    tgt2 = tgt.clone()
    tgt2[:, 4] = (tgt[:, 4] - 3 + 1) % (V - 3) + 3
    logits2 = model(src, tgt2)
    assert torch.equal(logits[:, :4], logits2[:, :4])
    assert not torch.allclose(logits[:, 4:], logits2[:, 4:])
    # Padding in the source is ignored: extra padding does not change the result.
    padded = torch.cat([src, torch.zeros(3, 3, dtype=torch.long)], dim=1)
    torch.testing.assert_close(model(padded, tgt), logits, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("method", ["greedy", "beam"])
@pytest.mark.parametrize("norm_first", [True, False])
def test_cached_decoding_gives_exactly_the_tokens_of_full_recomputation(method, norm_first):
    model = _model(norm_first=norm_first)
    src = _src()
    for eos in (None, -1):
        cached = model.generate(src, 30, method=method, beam_size=3, eos_id=eos, use_cache=True)
        full = model.generate(src, 30, method=method, beam_size=3, eos_id=eos, use_cache=False)
        assert torch.equal(cached, full)
    assert cached.shape[0] == 3


def test_decoding_a_chunk_after_the_cache_equals_the_full_pass():
    # decode() aligns its causal mask to the end of the keys when positions are cached (lower right).
    model = _model()
    src, tgt = _src(), torch.randint(3, V, (3, 8))
    memory, kpm = model.encode(src)
    full = model.decode(tgt, memory, kpm)
    cache = model.decoder.new_cache()
    parts = [model.decode(tgt[:, a:b], memory, kpm, cache=cache) for a, b in ((0, 3), (3, 4), (4, 8))]
    assert len(cache) == 8
    torch.testing.assert_close(torch.cat(parts, dim=1), full, atol=1e-5, rtol=1e-5)


def test_greedy_stops_at_the_end_token_and_pads_after_it():
    model = _model()
    src = _src()
    free = model.generate(src, 12, eos_id=None)
    assert free.shape == (3, 12)
    # Declare the token that row 0 emits at step 2 the end token: row 0 must stop right there.
    eos = int(free[0, 2])
    out = model.generate(src, 12, eos_id=eos)
    first = int((free[0] == eos).nonzero()[0])
    assert torch.equal(out[0, : first + 1], free[0, : first + 1])
    assert torch.all(out[0, first + 1 :] == model.pad_id)
    for row in range(3):  # every row: identical to free decoding up to its first end token, padding after
        hits = (free[row] == eos).nonzero()
        stop = int(hits[0]) if len(hits) else out.shape[1] - 1
        assert torch.equal(out[row, : stop + 1], free[row, : stop + 1])
        assert torch.all(out[row, stop + 1 :] == model.pad_id)
    if all(len((free[r] == eos).nonzero()) for r in range(3)):
        assert out.shape[1] < 12  # decoding ended once every row had stopped


def _log_prob(model, src, seq):
    tgt = torch.cat([torch.tensor([[model.bos_id]]), seq.view(1, -1)], dim=1)
    logp = torch.log_softmax(model(src, tgt[:, :-1]), dim=-1)  # (1, T, V)
    return logp[0, torch.arange(seq.numel()), seq].sum().item()


def test_beam_search_finds_the_most_probable_sequence():
    # With beam_size >= V^(T-1) beam search is exhaustive, so it must return the argmax over all V^T
    # sequences (brute force, scored by teacher-forced log-probabilities).
    model = _model(vocab_size=4, d_model=16, dim_feedforward=32)
    src = torch.tensor([[3, 2, 3, 3]])
    T = 3
    best = max(itertools.product(range(4), repeat=T), key=lambda s: _log_prob(model, src, torch.tensor(s)))
    out = model.generate(src, T, method="beam", beam_size=4 ** (T - 1), eos_id=None, length_penalty=0.0)
    assert tuple(out[0].tolist()) == best
    # beam_size=1 is greedy decoding.
    assert torch.equal(model.generate(src, T, method="beam", beam_size=1), model.generate(src, T))


def test_gradients_reach_every_parameter():
    model = _model().train()
    logits = model(_src(), torch.randint(3, V, (3, 5)))
    logits.logsumexp(-1).mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_bad_input_raises_value_error():
    model = _model()
    src = _src()
    with pytest.raises(ValueError, match=r"src token ids must lie in \[0, 9\)"):
        model(torch.full((1, 3), V), torch.ones(1, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="tgt token ids"):
        model(src, torch.full((3, 2), -1))
    with pytest.raises(ValueError, match="max_len=40"):
        model(torch.ones(1, 41, dtype=torch.long), torch.ones(1, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="max_len=40"):
        model.generate(src, 41)
    with pytest.raises(ValueError, match="int64 token ids"):
        model(src.float(), torch.ones(3, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="method"):
        model.generate(src, 5, method="sample")
    with pytest.raises(ValueError, match="positional"):
        _model(positional="rotary")
