"""The routers: weights that sum to 1, top-K sparsity, families, temperature and threshold limits,
the base-model fallback, and the registry the CLIs read."""
import pytest
import torch

from espnet_ext.bin import recipe_info
from espnet_ext.routing.routers import (
    ROUTINGS,
    SOFT_TEMPERATURE,
    HardRouter,
    HierarchicalRouter,
    SoftRouter,
    ThresholdRouter,
    bank_weights,
    make_router,
)

LANGS = ("hi", "pa", "te", "it")
P = torch.tensor([[0.50, 0.30, 0.15, 0.05],   # unsure, hi vs pa
                  [0.02, 0.01, 0.95, 0.02],   # sure, te
                  [0.30, 0.30, 0.40, 0.00]])  # top language te, top family Indo-Aryan


@pytest.mark.parametrize("router", [HardRouter(), SoftRouter(0.5), SoftRouter(2.0), ThresholdRouter(0.9, 2),
                                    HierarchicalRouter()])
def test_weights_are_distributions_and_the_token_is_the_heaviest_language(router):
    routing = router(P, LANGS)
    torch.testing.assert_close(routing.weights.sum(1), torch.ones(3))
    assert (routing.weights >= 0).all()
    assert routing.langs == [LANGS[i] for i in routing.weights.argmax(1).tolist()]


def test_hard_is_one_hot_argmax():
    assert HardRouter()(P, LANGS).weights.tolist() == [[1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 1, 0]]


def test_soft_temperature_limits():
    torch.testing.assert_close(SoftRouter(1.0)(P, LANGS).weights, P / P.sum(1, keepdim=True))
    torch.testing.assert_close(SoftRouter(1e-3)(P, LANGS).weights, HardRouter()(P, LANGS).weights)
    near_uniform = SoftRouter(1e3)(P[:2], LANGS).weights
    torch.testing.assert_close(near_uniform, torch.full((2, 4), 0.25), atol=2e-3, rtol=0)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        SoftRouter(0.0)


def test_threshold_is_hard_when_sure_and_top_k_renormalised_otherwise():
    weights = ThresholdRouter(tau=0.9, top_k=2)(P, LANGS).weights
    torch.testing.assert_close(weights[0], torch.tensor([0.625, 0.375, 0, 0]))
    assert weights[1].tolist() == [0, 0, 1, 0]
    assert ((weights > 0).sum(1) <= 2).all()
    assert ThresholdRouter(tau=0.0)(P, LANGS).weights.tolist() == HardRouter()(P, LANGS).weights.tolist()
    with pytest.raises(ValueError):
        ThresholdRouter(tau=1.5)


def test_hierarchical_picks_the_family_then_weights_within_it():
    routing = HierarchicalRouter()(P, LANGS)
    # row 3: p(Indo-Aryan) = 0.6 > p(Dravidian) = 0.4, so te (the top language) gets nothing
    torch.testing.assert_close(routing.weights[2], torch.tensor([0.5, 0.5, 0, 0]))
    assert routing.langs[2] == "hi"
    torch.testing.assert_close(routing.weights[0], torch.tensor([0.625, 0.375, 0, 0]))  # p(lang | Indo-Aryan)
    assert routing.weights[1].tolist() == [0, 0, 1, 0]  # te alone in its family
    families = {"indo_aryan": ["hi", "pa"], "dravidian": ["te"], "romance": ["it"]}
    for row in routing.weights:
        used = {f for f, members in families.items() for lang in members if row[LANGS.index(lang)] > 0}
        assert len(used) == 1


def test_low_confidence_and_lid_only_classes_fall_back_to_the_base_model():
    routing = SoftRouter(1.0, min_confidence=0.6)(P, LANGS)
    assert routing.weights[0].tolist() == [0, 0, 0, 0] and routing.langs[0] == "hi"  # unsure: base, hi token
    assert routing.weights[1].sum() == pytest.approx(1.0)
    other = HardRouter()(torch.tensor([[0.1, 0.1, 0.1, 0.1, 0.6]]), (*LANGS, "other"))
    assert bank_weights(other, (*LANGS, "other"), LANGS).tolist() == [[0, 0, 0, 0]]


def test_bank_weights_follow_the_bank_order_by_name():
    routing = HardRouter()(P, LANGS)
    assert bank_weights(routing, LANGS, ("it", "te", "pa", "hi"))[1].tolist() == [0, 1, 0, 0]


def test_registry_feeds_the_cli_choices_and_the_recipe():
    assert {"none", "oracle", "builtin", "hard", "soft", "threshold", "hierarchical"} == set(ROUTINGS)
    assert make_router("none") is None and make_router("soft", temperature=0.25).temperature == 0.25
    assert make_router("soft").temperature == SoftRouter().temperature == SOFT_TEMPERATURE
    assert recipe_info.routings("all").split() == list(ROUTINGS)
    assert recipe_info.routing_source("threshold") == "lid_head"
    with pytest.raises(ValueError, match="unknown routing"):
        recipe_info.routings("none magic")
    from espnet_ext.bin.decode import get_parser

    routing_action = next(a for a in get_parser()._actions if a.dest == "routing")
    assert list(routing_action.choices) == list(ROUTINGS)


def test_a_lid_only_class_wins_only_at_its_threshold():
    languages = ["hi", "pa", "te", "it", "en"]
    posteriors = torch.tensor([[0.05, 0.02, 0.0, 0.01, 0.92],   # English below its threshold: Hindi instead
                               [0.0, 0.0, 0.0, 0.01, 0.99],     # sure English: the base model, English token
                               [0.80, 0.10, 0.0, 0.0, 0.10]])
    for name in ("hard", "soft", "threshold", "hierarchical"):
        routing = make_router(name, lid_only_min={"en": 0.96})(posteriors, languages)
        assert routing.langs == ["hi", "en", "hi"], name
        assert routing.weights[0, 4] < 1e-6 and routing.weights[0].sum() == pytest.approx(1.0)
        assert bank_weights(routing, languages, ["hi", "pa", "te", "it"])[1].abs().sum() < 0.02  # ~ the base
    assert make_router("hard")(posteriors, languages).langs[0] == "en"  # no threshold: the argmax


def test_recipe_refuses_a_language_without_adapter_for_lang():
    assert recipe_info.langs("all").split() == ["hi", "pa", "te", "it"] and recipe_info.lid_only_langs() == "en"
    with pytest.raises(ValueError, match=r"--lang: en \(English\) is lid-only .* adapter languages: hi, pa, te, it"):
        recipe_info.langs("en")
