"""The LSTM encoder-decoder with Luong attention: shapes, padding, decoding, input checks, state dicts."""

import pytest
import torch

from nnatlas.models import create_model, get_model_info
from nnatlas.models.seq2seq import LSTMSeq2Seq

V = 9
VARIANTS = [
    {},
    {"attention": "dot"},
    {"input_feeding": True},
    {"bidirectional": False, "num_layers": 1},
]


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny recurrent steps: a second thread only adds synchronisation (and spin-waits on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _model(**kwargs):
    torch.manual_seed(0)
    defaults = {"vocab_size": V, "d_model": 16, "dropout": 0.0, "max_len": 40}
    return create_model("lstm_seq2seq", **{**defaults, **kwargs}).eval()


def _src(B=3, S=7):
    src = torch.randint(3, V, (B, S))
    src[1, 4:] = 0  # a padded row
    return src


def test_registered_as_seq2seq_with_d_model_as_the_width():
    info = get_model_info("lstm_seq2seq")
    assert info.task == "seq2seq" and info.extra["vocab_size"] == 16
    model = _model(d_model=24, num_layers=3)
    assert isinstance(model, LSTMSeq2Seq)
    assert model.hidden_size == model.d_model == 24 and model.decoder.hidden_size == 24
    assert model.decoder.num_layers == 3 and len(model.encoder) == 3
    assert model.encoder[0].fwd.hidden_size == 12  # each direction has half the width


@pytest.mark.parametrize("kwargs", VARIANTS, ids=str)
def test_forward_shapes_and_padding_changes_nothing(kwargs):
    model = _model(**kwargs)
    src, tgt = _src(), torch.randint(3, V, (3, 6))
    logits = model(src, tgt)
    assert logits.shape == (3, 6, V) and torch.isfinite(logits).all()
    # Extra padding columns, and a row's padding removed: the same logits (padding is never read).
    padded = torch.cat([src, torch.zeros(3, 3, dtype=torch.long)], dim=1)
    torch.testing.assert_close(model(padded, tgt), logits, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(model(src[1:2, :4], tgt[1:2]), logits[1:2], atol=1e-6, rtol=1e-5)
    # ... while a real token does change them.
    other = src.clone()
    other[1, 0] = 3 if src[1, 0] != 3 else 4
    assert not torch.allclose(model(other, tgt)[1], logits[1])


@pytest.mark.parametrize("kwargs", VARIANTS, ids=str)
def test_the_decoder_looks_left_only(kwargs):
    model = _model(**kwargs)
    src, tgt = _src(), torch.randint(3, V, (3, 6))
    tgt2 = tgt.clone()
    tgt2[:, 4] = (tgt[:, 4] - 3 + 1) % (V - 3) + 3
    a, b = model(src, tgt), model(src, tgt2)
    torch.testing.assert_close(a[:, :4], b[:, :4], atol=0, rtol=0)
    assert not torch.allclose(a[:, 4:], b[:, 4:])


@pytest.mark.parametrize("kwargs", VARIANTS, ids=str)
def test_greedy_decoding_is_the_argmax_of_teacher_forcing_on_its_own_output(kwargs):
    model = _model(**kwargs)
    src = _src()
    out = model.generate(src, 12, eos_id=None)
    assert out.shape == (3, 12)
    dec_in = torch.cat([torch.full((3, 1), model.bos_id), out[:, :-1]], dim=1)
    assert torch.equal(model(src, dec_in).argmax(dim=-1), out)
    # A beam of one is greedy decoding.
    assert torch.equal(model.generate(src, 12, method="beam", beam_size=1, eos_id=None), out)


def test_decoding_stops_at_the_end_token_and_pads_after_it():
    model = _model()
    with torch.no_grad():
        model.head.bias[model.eos_id] += 3.0  # make the end token likely
    src = _src()
    for method in ("greedy", "beam"):
        out = model.generate(src, 12, method=method, beam_size=3)
        assert out.shape[0] == 3 and out.shape[1] <= 12
        for row in out.tolist():
            if model.eos_id in row:
                end = row.index(model.eos_id)
                assert all(t == model.pad_id for t in row[end + 1 :])


def test_beam_search_finds_a_sequence_at_least_as_likely_as_greedy():
    model = _model()
    src = _src()

    def logprob(out):
        dec_in = torch.cat([torch.full((3, 1), model.bos_id), out[:, :-1]], dim=1)
        logp = model(src, dec_in).log_softmax(-1).gather(-1, out.unsqueeze(-1)).squeeze(-1)
        return logp.sum(dim=1)

    greedy = model.generate(src, 8, eos_id=None)
    beam = model.generate(src, 8, method="beam", beam_size=4, eos_id=None, length_penalty=0.0)
    assert (logprob(beam) >= logprob(greedy) - 1e-5).all()


def test_an_overfit_model_reverses_its_training_sequences():
    torch.manual_seed(0)
    model = create_model("lstm_seq2seq", vocab_size=8, d_model=32, num_layers=1, dropout=0.0, max_len=10)
    src = torch.randint(3, 8, (8, 4))
    tgt = torch.cat([torch.ones(8, 1, dtype=torch.long), src.flip(1), torch.full((8, 1), 2)], dim=1)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(60):
        loss = torch.nn.functional.cross_entropy(model(src, tgt[:, :-1]).flatten(0, 1), tgt[:, 1:].flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    assert torch.equal(model.generate(src, 8), tgt[:, 1:])
    beam = model.generate(src, 8, method="beam", beam_size=3)  # may run on while other beams are open
    assert torch.equal(beam[:, :5], tgt[:, 1:]) and (beam[:, 5:] == model.pad_id).all()


def test_attention_weights_are_recorded_and_ignore_padding():
    model = _model()
    src, tgt = _src(), torch.randint(3, V, (3, 5))
    with model.record_attention() as maps:
        model(src, tgt)
    w = maps["decoder.attention"]
    assert w.shape == (3, 1, 5, 7)
    torch.testing.assert_close(w.sum(-1), torch.ones(3, 1, 5))
    assert (w[1, :, :, 4:] == 0).all()
    assert model._last_weights is None and not model._recording


@pytest.mark.parametrize(
    ("call", "needle"),
    [
        (lambda m: m(torch.tensor([[3, 9]]), torch.tensor([[1, 3]])), "src token ids must lie in [0, 9)"),
        (lambda m: m(torch.tensor([[3, 4]]), torch.tensor([[1, -1]])), "tgt token ids must lie in [0, 9)"),
        (lambda m: m(torch.zeros(2, 3), torch.ones(2, 2, dtype=torch.long)), "int64 token ids"),
        (lambda m: m(torch.full((1, 41), 3), torch.ones(1, 2, dtype=torch.long)), "max_len=40"),
        (lambda m: m.generate(torch.full((1, 3), 3), 41), "exceeds the model's max_len=40"),
        (lambda m: m.generate(torch.full((1, 3), 3), 0), "max_len must be a positive int"),
        (lambda m: m.generate(torch.full((1, 3), 3), 5, method="sample"), "method must be one of"),
        (lambda m: m.generate(torch.full((1, 3), 3), 5, method="beam", beam_size=0), "beam_size"),
        (lambda m: m.generate(torch.full((1, 3), 3), 5, eos_id=99), "eos_id must lie in [0, 9)"),
    ],
)
def test_bad_inputs_raise_value_error(call, needle):
    with pytest.raises(ValueError, match=None) as e:
        call(_model())
    assert needle in str(e.value)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"attention": "concat"}, "attention must be one of general, dot"),
        ({"d_model": 15}, "hidden_size must be even"),
        ({"num_layers": 0}, "num_layers must be a positive int"),
        ({"vocab_size": 1}, "src_vocab_size must be an int >= 2"),
        ({"dropout": 1.0}, "dropout must lie in [0, 1)"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs, needle):
    with pytest.raises(ValueError) as e:
        _model(**kwargs)
    assert needle in str(e.value)


def test_state_dict_round_trip_gives_the_same_outputs():
    model = _model()
    torch.manual_seed(1)
    other = create_model("lstm_seq2seq", vocab_size=V, d_model=16, dropout=0.0, max_len=40).eval()
    src, tgt = _src(), torch.randint(3, V, (3, 6))
    assert not torch.allclose(other(src, tgt), model(src, tgt))
    other.load_state_dict(model.state_dict())
    torch.testing.assert_close(other(src, tgt), model(src, tgt), atol=0, rtol=0)
    assert torch.equal(other.generate(src, 10), model.generate(src, 10))
