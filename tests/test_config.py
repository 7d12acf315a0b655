"""Override grammar: every setting reachable, unknown keys and bad values rejected with the valid ones."""
import pytest

from cascade import config as C


def test_defaults_are_the_thesis_values():
    cfg = C.load()
    assert cfg["stages"]["imdb"]["epochs"] == 60 and cfg["stages"]["imdb"]["patience"] == 5
    assert cfg["stages"]["agedb"]["epochs"] == 30 and cfg["stages"]["agedb"]["lr"] == 1e-4
    assert cfg["stages"]["fgnet"]["batch_size"] == 16 and cfg["stages"]["fgnet"]["patience"] == 3
    assert cfg["stages"]["head_only"] == {"epochs": 20, "batch_size": 48, "lr": 1e-3, "patience": 3,
                                          "augment": False, "select": "best_mae"}
    assert C.stage_params(C.load(["backbone=vgg16"]), "imdb", "full")["lr"] == 1e-4
    assert C.stage_params(C.load(["backbone=timm:resnet18"]), "imdb", "full")["lr"] == 0.01


def test_dotted_overrides_reach_every_level():
    cfg = C.load(["train.lr=1e-4", "data.root.fgnet=/x", "stages.imdb.epochs=7", "seed=3",
                  "stage=imdb", "augment.flip=false", "head.hidden=64,32",
                  "backbones.demo.stages.agedb.epochs=2"])
    assert cfg["train"]["lr"] == 1e-4 and cfg["data"]["root"]["fgnet"] == "/x"
    assert cfg["stages"]["imdb"]["epochs"] == 7 and cfg["seed"] == 3 and cfg["stage"] == ["imdb"]
    assert cfg["augment"]["flip"] is False and cfg["head"]["hidden"] == [64, 32]
    p = C.stage_params(cfg, "agedb", "full")
    assert p["epochs"] == 2 and p["lr"] == 1e-4          # train.lr wins over the stage table


def test_empty_stage_means_pretrained_only():
    assert C.load(["stage="])["stage"] == []
    assert C.load(["stage=agedb"])["stage"] == ["agedb"]


@pytest.mark.parametrize("override, needle", [
    ("train.lrr=1", "Did you mean: train.lr"),
    ("nonsense=1", "Top-level settings"),
    ("train.lr=abc", "expected float"),
    ("stages.imdb.epochs=1.5", "expected int"),
    ("augment.flip=maybe", "expected bool"),
    ("target=mnist", "Valid values: agedb, fgnet, adience, adience3, utkface, wiki"),
    ("stage=imdb,celeba", "Valid: imdb, agedb"),
    ("stage=imdb,imdb", "repeats"),
    ("target=agedb", "would have been trained on"),
    ("backbone=alexnet", "Valid values: demo"),
    ("train.mode=partial", "Valid values: head, full"),
    ("stages.fgnet.select=best", "Valid values: last, best_loss, best_mae"),
    ("stages.fgnet.protocol=kfold", "Valid values: adience, hard-subjects, holdout, lopo"),
    ("seed", "not key=value"),
    ("head.hidden=64,x", "expected list"),
])
def test_bad_overrides_list_what_is_valid(override, needle):
    with pytest.raises(C.ConfigError, match=None) as err:
        C.load([override])
    assert needle in str(err.value)


def test_thesis_mode_rule_and_head_only_parameters():
    cfg = C.load(["backbone=vgg16"])
    assert C.stage_mode(cfg, is_target=True, parent_is_root=True) == "head"
    assert C.stage_mode(cfg, is_target=True, parent_is_root=False) == "full"
    assert C.stage_mode(cfg, is_target=False, parent_is_root=True) == "full"
    head = C.stage_params(cfg, "fgnet", "head")
    assert (head["lr"], head["batch_size"], head["epochs"], head["augment"]) == (1e-3, 48, 20, False)
    forced = C.load(["train.mode=full"])
    assert C.stage_mode(forced, is_target=True, parent_is_root=True) == "full"


def test_rules_numbers_are_settings_shown_by_list_keys():
    """The numbers that used to hide in code are settings: listed, overridable, validated."""
    keys = "\n".join(C.list_keys(C.load()))
    for key in ("data.imdb_clean.min_face_score=1.0", "data.imdb_clean.age_range=[0, 100]",
                "regress.sklearn.svr.C=10.0", "regress.sklearn.ridge.n_alphas=15", "regress.sklearn.rf.n_estimators=200",
                "ensemble.hidden=[32]", "ensemble.max_iter=2000", "plan.gpus.a100=312.0", "plan.utilisation=0.35"):
        assert key in keys, key
    assert "split=" not in keys                     # the dead `stages.<s>.split` key is gone
    cfg = C.load(["plan.gpus.l40s=362", "regress.sklearn.svr.C=3", "ensemble.hidden=64,16"])
    assert cfg["plan"]["gpus"]["l40s"] == 362.0 and cfg["regress"]["sklearn"]["svr"]["C"] == 3.0
    assert cfg["ensemble"]["hidden"] == [64, 16]
    assert C.choices(cfg)["target"] == ("agedb", "fgnet", "adience", "adience3", "utkface", "wiki")
    for bad, needle in (("plan.utilisation=1.5", "plan.utilisation"), ("ensemble.hidden=0", "ensemble.hidden"),
                        ("data.imdb_clean.age_range=90,10", "age_range"), ("target=imdb", "target")):
        with pytest.raises(C.ConfigError, match=needle):
            C.load([bad])


@pytest.mark.parametrize("word,hint", [("stage=imbd", "Did you mean: imdb?"), ("target=fgent", "Did you mean: fgnet?"),
                                       ("backbone=resnet5", "Did you mean: resnet50"),
                                       ("data.crop=allign", "Did you mean: align?")])
def test_a_mistyped_choice_gets_a_did_you_mean(word, hint):
    with pytest.raises(C.ConfigError, match=hint.replace("?", r"\?")):
        C.load([word])
