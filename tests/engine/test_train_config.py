"""TrainConfig from a method's recipe and options: round trips, the presets' frozen shapes, config.json."""

from __future__ import annotations

import json

import pytest

from unsegcli.errors import UsageError
from unsegcli.methods.move.config import MAEConfig


def test_train_config_round_trips_and_presets_set_the_frozen_shapes(tmp_path):

    from unsegcli.config import PRESETS
    from unsegcli.engine.config import TrainConfig
    from unsegcli.methods.move.config import MoveOptions
    from unsegcli.methods.sempart.config import SempartLossConfig
    from unsegcli.pipelines.train import config_for_method, write_config

    cfg = config_for_method("move", {"steps": 5}, arch="demo")
    assert TrainConfig.from_dict(cfg.to_dict(), MoveOptions) == cfg
    assert cfg.model == PRESETS["demo"] and cfg.options.mae == MAEConfig.tiny(96) and cfg.options.disc_resolution == 96
    assert cfg.options.disc_net == "test_efficientnet"  # timm's test model: a small discriminator
    real = config_for_method("move", {"steps": 5}, arch="vits16").options
    assert real.mae == MAEConfig() and real.disc_resolution == 224  # MAE ViT-L/16 and the official 224
    assert real.disc_net == "tf_efficientnet_lite0"  # Projected GAN's feature network
    sp = config_for_method("sempart", {"steps": 5}, options={"reduction_sr": "sum"})
    assert TrainConfig.from_dict(sp.to_dict(), SempartLossConfig) == sp
    selfcfg = config_for_method("self", {"steps": 5}, masks=True)
    assert selfcfg.options is None and TrainConfig.from_dict(selfcfg.to_dict()) == selfcfg
    # the run folder's config.json is the effective configuration, every default resolved
    written = json.loads(write_config(tmp_path, sp).read_text())
    assert written["options"]["reduction_sr"] == "sum" and written["options"]["lambda_sr"] == 20.0
    assert written["batch_size"] == 8 and written["model"]["backbone"]["patch_size"] == 8


def test_config_for_method_fills_the_recipe_and_checks_parameters():
    from unsegcli.config import PRESETS
    from unsegcli.pipelines.train import config_for_method

    move = config_for_method(None, {"steps": 5, "batch_size": None})
    assert (move.objective, move.batch_size, move.crop, move.lr, move.betas) == (
        "move", 32, 224, 2e-4, (0.9, 0.95)  # MOVE sec. 3 and the official train.py
    )  # fmt: skip
    assert move.options.lr_d is None and move.options.inpainter == "mae"  # D's lr follows the segmenter's
    given = {"epochs": 2, "lr": 3e-4, "infer_size": 96}
    sp = config_for_method("sempart", given, arch="tiny", options={"tau": 0.3, "lambda_sr": None})
    assert (sp.batch_size, sp.crop, sp.betas) == (8, 320, (0.9, 0.999))  # Sempart's recipe (sempart.config)
    assert (sp.lr, sp.epochs, sp.steps) == (3e-4, 2, None)  # the given lr wins
    assert sp.options.tau == 0.3 and sp.options.lambda_sr == 20.0 and sp.preprocess.size == 96
    assert sp.model == PRESETS["tiny"]
    assert config_for_method(None, {"steps": 1}, masks=True).objective == "self"
    errors = [
        ((None, {"steps": 1, "epochs": 1}), {}, "give exactly one of steps or epochs"),
        (("self", {"steps": 1}), {}, "method self needs from_masks"),
        (("move", {"steps": 1}), {"masks": True}, "method move does not train on masks: drop from_masks"),
        (("move", {"steps": 1}), {"options": {"lambda_sr": 2.0}}, "lambda_sr: not an option of method move"),
        (("sempart", {"steps": 1}), {"options": {"tau": 1.0}}, "tau must be in [-1, 1), not 1.0"),
        (("move", {"steps": 1, "lr_d": 1.0, "nope": 1}), {}, "not training parameters: lr_d, nope"),
    ]
    for args, kwargs, message in errors:
        with pytest.raises(UsageError) as e:
            config_for_method(*args, **kwargs)
        assert e.value.message == message
