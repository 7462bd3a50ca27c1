"""Weight-space analysis: known answers of the similarities and ranks, and the factored SVD against the
dense matrices it avoids building."""
import pytest
import torch
from analysis_helpers import LANGS, random_bank, save_bank

from espnet_ext.analysis import weights
from espnet_ext.lora.adapter_files import AdapterFileError, read_adapter_weights
from espnet_ext.lora.inject import SHARED, language_banks


def _random(shape, seed):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.fixture(scope="module")
def bank_dir(tmp_path_factory):
    """A tiny shared_below bank saved as adapter files: pa's adapter is a copy of hi's, te's is hi's scaled."""
    model = random_bank(scale=1.0)
    with torch.no_grad():
        for bank in language_banks(model.asr_model).values():
            bank.lora_A[1].copy_(bank.lora_A[0])
            bank.lora_B[1].copy_(bank.lora_B[0])
            bank.lora_A[2].copy_(bank.lora_A[0] * 3)
            bank.lora_B[2].copy_(bank.lora_B[0])
    return save_bank(model, tmp_path_factory.mktemp("adapters"))


def test_factored_svd_is_the_svd_of_the_dense_update():
    a, b = _random((4, 30), 1), _random((20, 4), 2)
    update = weights.factored_svd(a, b, 0.5)
    dense = 0.5 * b @ a
    assert torch.allclose(update.u @ torch.diag(update.s) @ update.v.T, dense, atol=1e-10)
    assert torch.allclose(update.s, torch.linalg.svdvals(dense)[:4], atol=1e-10)
    assert torch.allclose(update.u.T @ update.u, torch.eye(4, dtype=torch.float64), atol=1e-10)


def test_cosine_from_factors_equals_the_dense_cosine():
    x = weights.factored_svd(_random((4, 30), 1), _random((20, 4), 2), 2.0)
    y = weights.factored_svd(_random((4, 30), 3), _random((20, 4), 4), 0.5)
    dense_x, dense_y = [u.u @ torch.diag(u.s) @ u.v.T for u in (x, y)]
    expected = float((dense_x * dense_y).sum() / (dense_x.norm() * dense_y.norm()))
    assert weights.cosine(x, y) == pytest.approx(expected, abs=1e-10)
    assert weights.cosine(x, x) == pytest.approx(1.0, abs=1e-10)
    flipped = weights.Update(-x.u, x.s, x.v)
    assert weights.cosine(x, flipped) == pytest.approx(-1.0, abs=1e-10)


def test_subspace_similarity_is_one_for_itself_and_zero_for_orthogonal_outputs():
    x = weights.factored_svd(_random((4, 30), 1), _random((20, 4), 2), 1.0)
    assert weights.subspace_similarity(x, x, 4) == pytest.approx(1.0, abs=1e-10)
    b = torch.zeros(20, 4, dtype=torch.float64)
    b[:4] = _random((4, 4), 5)
    c = torch.zeros(20, 4, dtype=torch.float64)
    c[10:14] = _random((4, 4), 6)
    assert weights.subspace_similarity(weights.factored_svd(_random((4, 30), 1), b, 1.0),
                                       weights.factored_svd(_random((4, 30), 7), c, 1.0), 4) == pytest.approx(0, abs=1e-10)


def test_effective_rank_of_a_rank_r_product():
    r = 5
    assert weights.effective_rank(torch.ones(r)) == pytest.approx(r)
    assert weights.effective_rank(torch.tensor([3.0, 0, 0])) == pytest.approx(1.0)
    for seed in range(5):
        update = weights.factored_svd(_random((r, 40), seed), _random((30, r), seed + 10), 1.0)
        assert 1.0 <= weights.effective_rank(update.s) <= r + 1e-9
    assert weights.energy_rank(torch.ones(10)) == 9  # 9 of 10 equal directions hold 90%
    assert weights.energy_rank(torch.tensor([10.0, 1, 1])) == 1
    assert weights.energy_rank(torch.tensor([1.0, 1.0, 0.0])) == 2


def test_weight_analysis_of_a_bank(bank_dir):
    result = weights.weight_analysis(bank_dir)
    assert result["languages"] == LANGS  # the language table's order; the shared adapter is not a language
    assert result["rank"] == 4 and result["top_k"] == 2
    n = len(LANGS)
    for kind in ("cosine", "subspace"):
        for group in ("encoder", "decoder", "all"):
            matrix = torch.tensor(result["similarity"][kind][group])
            assert matrix.shape == (n, n) and torch.allclose(matrix, matrix.T)
            assert torch.allclose(torch.diagonal(matrix), torch.ones(n), atol=1e-6)
            assert matrix[0, 1] == pytest.approx(1.0, abs=1e-6)  # pa is a copy of hi
    # te = hi with A scaled by 3: another update along the same directions, so the same subspace; its cosine
    # is 1 as well (a positive multiple), while unrelated random adapters are far from both
    assert result["similarity"]["subspace"]["all"][0][2] == pytest.approx(1.0, abs=1e-6)
    assert result["similarity"]["cosine"]["all"][0][2] == pytest.approx(1.0, abs=1e-6)
    assert abs(result["similarity"]["cosine"]["all"][0][3]) < 0.3
    assert weights.most_similar_pair(result)[:2] in {("hi", "pa"), ("hi", "te"), ("pa", "te")}
    module = result["modules"][0]
    assert result["norm"]["te"][module] == pytest.approx(3 * result["norm"]["hi"][module], rel=1e-5)
    assert all(1 <= v <= 4 for v in result["effective_rank"]["it"].values())
    assert SHARED in result["singular_values"] and set(result["sites"]) == set(result["modules"])
    norms = weights.update_norms(bank_dir)
    assert set(norms) == set(LANGS) and norms["hi"][module] == pytest.approx(result["norm"]["hi"][module], rel=1e-5)


def test_figures_are_written(bank_dir, tmp_path):
    result = weights.weight_analysis(bank_dir)
    for plot in (weights.plot_similarity, weights.plot_dendrogram, weights.plot_spectra):
        paths = plot(result, tmp_path / plot.__name__)
        assert [p.suffix for p in paths] == [".png", ".pdf"]
        assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and paths[1].read_bytes()[:5] == b"%PDF-"


def test_module_sites():
    assert weights.module_site("encoder.encoders.blocks.3.attn.query") == weights.ModuleSite("encoder", 3, "attention")
    assert weights.module_site("decoder.decoders.blocks.5.mlp.2") == weights.ModuleSite("decoder", 5, "mlp")
    assert weights.module_site("decoder.decoders.2.feed_forward.w_1") == weights.ModuleSite("decoder", 2, "mlp")
    assert weights.module_site("decoder.decoders.2.src_attn.linear_q").part == "attention"


def test_reader_refuses_missing_factors(bank_dir, tmp_path):
    import json
    import shutil

    broken = tmp_path / "hi"
    shutil.copytree(bank_dir / "hi", broken)
    config = json.loads((broken / "adapter_config.json").read_text())
    config["modules"].append("decoder.decoders.blocks.0.mlp.9")
    (broken / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(AdapterFileError, match="lacks the factors"):
        read_adapter_weights(broken)
    adapter = read_adapter_weights(bank_dir / "hi")
    assert adapter.scaling == 2.0 and adapter.parameter_count() == sum(a.numel() + b.numel() for a, b in adapter.factors.values())


def test_same_language_similarity_of_a_bank_with_itself_is_one(bank_dir):
    same = weights.same_language_similarity(bank_dir, bank_dir)
    assert list(same) == LANGS  # the shared adapter is not a language
    assert all(v["cosine"] == pytest.approx(1.0, abs=1e-6) and v["subspace"] == pytest.approx(1.0, abs=1e-6)
               for v in same.values())


def test_probe_subset_spreads_over_speakers_and_nests(tmp_path):
    from espnet_ext.analysis.subsets import probe_subset
    from espnet_ext.data.kaldi import Utterance, read_data_dir, write_data_dir

    wav = tmp_path / "a.wav"
    wav.write_bytes(b"")
    utts = [Utterance(f"{lang}-s{s}-{i:02d}", f"{lang}-s{s}", "x", lang, str(wav), 1.0)
            for lang in ("hi", "te") for s in range(3) for i in range(4)]
    write_data_dir(tmp_path / "dev", utts)
    three = read_data_dir(probe_subset(tmp_path / "dev", 3, tmp_path / "p3"))
    assert sorted(u.utt_id for u in three if u.lang == "hi") == ["hi-s0-00", "hi-s1-00", "hi-s2-00"]  # one per voice
    five = {u.utt_id for u in read_data_dir(probe_subset(tmp_path / "dev", 5, tmp_path / "p5"))}
    assert {u.utt_id for u in three} < five and len(five) == 10
