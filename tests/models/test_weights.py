"""``weights="torchvision"``: torchvision's weights API is the reference. No test touches the network:
the download is replaced by a torchvision model's state dict, or made to fail as it does offline."""

import urllib.error
import warnings

import pytest
import torch
import torchvision
from torchvision.models import get_model_weights

from nnatlas.models import create_model


def _patch_download(monkeypatch, name: str, **tv_kwargs) -> dict:
    """Make ``<Name>_Weights.get_state_dict`` return the state dict of a random torchvision model."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        state = torchvision.models.get_model(name, **tv_kwargs).state_dict()
    enum = get_model_weights(name)
    calls = []

    def fake_get_state_dict(self, *args, **kwargs):
        calls.append((self, kwargs))
        return state

    monkeypatch.setattr(enum, "get_state_dict", fake_get_state_dict)
    return {"state": state, "calls": calls, "enum": enum}


def test_resnet_loads_torchvisions_weights_through_the_weights_api(monkeypatch):
    patched = _patch_download(monkeypatch, "resnet18")
    model = create_model("resnet18", weights="torchvision", progress=False)
    ((member, kwargs),) = patched["calls"]
    assert member is patched["enum"].DEFAULT and kwargs == {"progress": False, "check_hash": True}
    for k, v in model.state_dict().items():
        assert torch.equal(v, patched["state"][k]), k
    create_model("resnet18", weights="torchvision:IMAGENET1K_V1")
    assert patched["calls"][-1][0] is patched["enum"].IMAGENET1K_V1


def _eval_outputs_agree(ours, ref) -> None:
    x = torch.randn(1, 3, 75, 75)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), ref.eval()(x), atol=1e-5, rtol=1e-5)


def test_pretrained_googlenet_behaves_as_torchvisions(monkeypatch):
    # torchvision's own builder with the same (patched) weights is the reference: input transform on,
    # auxiliary classifiers dropped (their weights are not trained) unless asked for, with a warning.
    _patch_download(monkeypatch, "googlenet", init_weights=False)
    ref = torchvision.models.googlenet(weights="DEFAULT")
    ours = create_model("googlenet", weights="torchvision")
    assert ours.transform_input is ref.transform_input is True
    assert ours.aux_logits is ref.aux_logits is False and ours.aux1 is ref.aux1 is None
    assert set(ours.state_dict()) == set(ref.state_dict())
    _eval_outputs_agree(ours, ref)
    with pytest.warns(UserWarning, match="not pretrained"):
        with_aux = create_model("googlenet", weights="torchvision", aux_logits=True)
    assert with_aux.aux_logits and with_aux.aux1 is not None and with_aux.aux2 is not None


def test_pretrained_inception_v3_behaves_as_torchvisions(monkeypatch):
    # torchvision keeps Inception-v3's (trained) auxiliary classifier; aux_logits=False drops it, a
    # combination torchvision's builder refuses although its code then drops the head: that is the reference.
    _patch_download(monkeypatch, "inception_v3", init_weights=False)
    ref = torchvision.models.inception_v3(weights="DEFAULT")
    ours = create_model("inception_v3", weights="torchvision")
    assert ours.transform_input is ref.transform_input is True
    assert ours.aux_logits is ref.aux_logits is True and ours.AuxLogits is not None
    assert set(ours.state_dict()) == set(ref.state_dict())
    ref.aux_logits, ref.AuxLogits = False, None
    no_aux = create_model("inception_v3", weights="torchvision", aux_logits=False)
    assert no_aux.AuxLogits is None and set(no_aux.state_dict()) == set(ref.state_dict())
    _eval_outputs_agree(no_aux, ref)


def test_offline_download_fails_with_a_clear_message(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path))  # an empty cache: torch.hub must download

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "urlopen", offline)
    url = get_model_weights("alexnet").DEFAULT.url
    with pytest.raises(RuntimeError) as e:
        create_model("alexnet", weights="torchvision", progress=False)
    msg = str(e.value)
    assert url in msg and "internet" in msg and str(tmp_path / "checkpoints") in msg
    assert url.rsplit("/", 1)[-1] in msg and "name resolution" in msg


def test_bad_weights_arguments_are_rejected_before_any_download(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("no download may start")

    monkeypatch.setattr(torch.hub, "urlopen", fail)
    with pytest.raises(ValueError, match="weights must be None, 'torchvision' or 'torchvision:<TAG>'"):
        create_model("resnet18", weights="imagenet")
    with pytest.raises(ValueError, match="unknown torchvision weights tag for resnet50 'V3'.*IMAGENET1K_V2"):
        create_model("resnet50", weights="torchvision:V3")
    with pytest.raises(ValueError, match="1000 classes; got num_classes=10"):
        create_model("vgg11", weights="torchvision", num_classes=10)
    with pytest.raises(ValueError, match="needs in_channels=3; got 1"):
        create_model("googlenet", weights="torchvision", in_channels=1)
    with pytest.raises(ValueError, match="torchvision layout"):
        create_model("alexnet", weights="torchvision", lrn=True)
    with pytest.raises(TypeError, match="weights must be None"):
        create_model("resnet18", weights=True)
