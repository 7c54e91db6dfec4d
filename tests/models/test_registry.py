import pytest
from torch import nn

from nnatlas.models import create_model, get_model_info, list_models, register_model
from nnatlas.models import registry as reg


def test_list_models_filters_by_pattern_and_task():
    names = list_models()
    assert names == sorted(names) and "cifar_resnet20" in names
    assert list_models("cifar_resnet2*") == ["cifar_resnet20"]
    assert set(list_models(task="classification")) <= set(names)
    assert all(get_model_info(n).task == "classification" for n in list_models(task="classification"))
    with pytest.raises(ValueError, match="unknown task"):
        list_models(task="nosuchtask")


def test_unknown_model_suggests_closest_names_first():
    with pytest.raises(ValueError) as e:
        create_model("cifar_resnet21")
    msg = str(e.value)
    assert "unknown model 'cifar_resnet21'" in msg
    choices = msg.split("closest first): ")[1].split(", ")
    assert choices[0] in {"cifar_resnet20", "cifar_resnet110"}
    assert set(choices) == set(list_models())


def test_register_records_task_and_rejects_duplicates(monkeypatch):
    monkeypatch.setattr(reg, "_MODELS", dict(reg._MODELS))

    @register_model(task="seq2seq")
    def tiny_test_model(num_classes: int = 3):
        """A linear layer."""
        return nn.Linear(2, num_classes)

    info = get_model_info("tiny_test_model")
    assert info.task == "seq2seq" and info.description == "A linear layer."
    assert create_model("tiny_test_model", num_classes=7).out_features == 7
    with pytest.raises(ValueError, match="already registered"):
        register_model("tiny_test_model", task="seq2seq")(tiny_test_model)
    with pytest.raises(ValueError, match="task must be one of"):
        register_model("x", task="regression")
    with pytest.raises(ValueError, match="num_classes must be a positive int"):
        create_model("tiny_test_model", num_classes=0)


def test_cli_task_names_match_the_registry():
    from nnatlas.cli import models_cmd

    assert models_cmd.TASKS == reg.TASKS
