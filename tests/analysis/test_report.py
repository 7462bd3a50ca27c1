"""The report: its HTML tables are the scores.json they came from, the page opens in headless Chromium with
every image decoded, the slides hold a page per table and figure, Markdown tables read back as written."""
import html.parser
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from analysis_helpers import LANGS, random_bank, save_bank

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "decode"))
from decode_helpers import headless_chromium, needs_chromium  # noqa: E402

from espnet_ext.analysis import gather, weights
from espnet_ext.analysis.report import MAX_SLIDES, Section, slide_count, slide_plan, write_report
from espnet_ext.lora.adapter_files import read_adapter_weights
from espnet_ext.scoring.results import Table


def _counts(errors, tokens):
    return {"rate": 100 * errors / tokens, "errors": errors, "substitutions": errors, "deletions": 0, "insertions": 0,
            "ref_tokens": tokens}


def write_decode(decode_dir: Path, test_set: str, seed: int, routed_wrong=()):
    """A scored decode of 5 utterances per language with seeded per-utterance errors, lid.json, a decode log."""
    rng = np.random.default_rng(seed)
    utts = {f"{lang}-u{i}": {"lang": lang, "word_errors": int(rng.integers(0, 5)), "words": 8,
                             "char_errors": int(rng.integers(0, 9)), "chars": 40} for lang in LANGS for i in range(5)}
    scores = {}
    for lang in LANGS + ["all"]:
        mine = [u for u in utts.values() if lang in ("all", u["lang"])]
        scores[lang] = {"utterances": len(mine), "wer": _counts(sum(u["word_errors"] for u in mine), 8 * len(mine)),
                        "cer": _counts(sum(u["char_errors"] for u in mine), 40 * len(mine))}
    decode_dir.mkdir(parents=True)
    (decode_dir / "scores.json").write_text(json.dumps({"test_set": test_set, "scores": scores, "utterances": utts}))
    lid = {u: {"lang": "pa" if u in routed_wrong else d["lang"], "posteriors": {d["lang"]: 0.95}} for u, d in utts.items()}
    (decode_dir / "lid.json").write_text(json.dumps(lid))
    (decode_dir / "log").mkdir()
    (decode_dir / "log/decode.1.log").write_text("x decode INFO decoded 20 utterances in 10.0 s (peak memory 812 MB) -> y\n")


@pytest.fixture(scope="module")
def exp_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("exp")
    write_decode(root / "whisper_tiny_zeroshot/decode_test_all_none", "test_all", 0)
    trained = root / "whisper_tiny_all_r4"
    write_decode(trained / "decode_test_all_oracle", "test_all", 1)
    write_decode(trained / "decode_test_all_hard", "test_all", 2, routed_wrong=("hi-u0", "hi-u1"))
    save_bank(random_bank(scale=1.0), trained / "adapters")
    return root


@pytest.fixture(scope="module")
def report(exp_root, tmp_path_factory):
    report_dir = tmp_path_factory.mktemp("report")
    figures = report_dir / "figures"
    figures.mkdir()
    exp_dir = exp_root / "whisper_tiny_all_r4"
    result = weights.weight_analysis(exp_dir / "adapters")
    weights.plot_similarity(result, figures / "weight_similarity")
    weights.plot_dendrogram(result, figures / "weight_dendrogram")
    weights.plot_spectra(result, figures / "weight_spectra")
    sections = gather.results_sections(exp_root, exp_dir, figures)
    sections.append(gather.weight_section(result, figures, "weights.json"))
    sections.append(gather.efficiency_section(exp_root, 10_000_000, figures, exp_dir))
    sections.append(gather.not_in_report(["Layer importance: `./run.sh --stage 7 --studies layers`."]))
    write_report("Test report", "subtitle", sections, report_dir)
    return report_dir, sections


class _Tables(html.parser.HTMLParser):
    """Every <table> of a page as (title of the <h3> before it, rows of cell texts, header first)."""

    def __init__(self):
        super().__init__()
        self.tables, self._title, self._cell, self._in_h3 = [], "", None, False

    def handle_starttag(self, tag, attrs):
        if tag == "h3":
            self._in_h3, self._title = True, ""
        elif tag == "table":
            self.tables.append((self._title, []))
        elif tag == "tr":
            self.tables[-1][1].append([])
        elif tag in ("td", "th"):
            self._cell = ""

    def handle_endtag(self, tag):
        if tag == "h3":
            self._in_h3 = False
        elif tag in ("td", "th"):
            self.tables[-1][1][-1].append(self._cell)
            self._cell = None

    def handle_data(self, data):
        if self._in_h3:
            self._title += data
        elif self._cell is not None:
            self._cell += data


def test_html_tables_equal_the_scores_json_they_came_from(exp_root, report):
    parser = _Tables()
    parser.feed((report[0] / "index.html").read_text(encoding="utf-8"))
    tables = dict(parser.tables)
    routing = tables["Routing: whisper_tiny_all_r4 on test_all"]
    header, rows = routing[0], {row[0]: row for row in routing[1:]}
    decode_dirs = {"none (zero-shot)": exp_root / "whisper_tiny_zeroshot/decode_test_all_none",
                   "oracle": exp_root / "whisper_tiny_all_r4/decode_test_all_oracle",
                   "hard": exp_root / "whisper_tiny_all_r4/decode_test_all_hard"}
    assert set(rows) == set(decode_dirs)
    for system, decode_dir in decode_dirs.items():
        scores = json.loads((decode_dir / "scores.json").read_text())["scores"]
        for lang in LANGS + ["all"]:
            cell = rows[system][header.index(f"{lang} WER / CER")]
            assert cell == f"{scores[lang]['wer']['rate']:.2f} / {scores[lang]['cer']['rate']:.2f}", (system, lang)
    assert rows["hard"][header.index("routed to true lang %")] == "90.0"  # 2 of 20 routed to pa
    efficiency = tables["Efficiency on test_all"]
    oracle = json.loads((decode_dirs["oracle"] / "scores.json").read_text())["scores"]["all"]
    lora_row = next(row for row in efficiency[1:] if "LoRA r4" in row[0])
    columns = efficiency[0]
    assert [lora_row[columns.index(c)] for c in ("WER", "CER")] == [f"{oracle['wer']['rate']:.2f}", f"{oracle['cer']['rate']:.2f}"]
    assert lora_row[columns.index("decode peak MB")] == "812" and lora_row[columns.index("decode ms/utt")] == "500"
    assert lora_row[columns.index("training peak MB")] == ""  # no train.log in this exp


def test_readme_names_every_figure_and_the_slides_have_a_page_each(report):
    report_dir, sections = report
    figures = [f for s in sections for f in s.figures]
    assert len(figures) >= 5 and all(f.png.is_file() and f.png.with_suffix(".pdf").is_file() for f in figures)
    readme = (report_dir / "README.md").read_text(encoding="utf-8")
    assert all(f"](figures/{f.png.name})" in readme for f in figures)
    pdf = (report_dir / "slides.pdf").read_bytes()
    pages = pdf.count(b"/Type /Page\n") + pdf.count(b"/Type /Page ") + pdf.count(b"/Type /Page>")
    on_slides = [s for s in sections if s.on_slides]
    assert pages == slide_count(sections) == 1 + sum(max(1, bool(s.tables) + bool(s.figures)) for s in on_slides)
    assert pages <= MAX_SLIDES  # this small report is under the budget: every table and figure has its page
    assert "Not in this report" in readme and all(s.title != "Not in this report" for s in on_slides)


@needs_chromium
def test_the_page_opens_in_headless_chromium_with_every_image_decoded(report):
    report_dir, sections = report
    with headless_chromium() as driver:
        driver.get((report_dir / "index.html").resolve().as_uri())
        decoded = driver.execute_script(
            "return Array.from(document.images).map(i => i.complete && i.naturalWidth > 0 && i.src.startsWith('data:'))")
        assert decoded and all(decoded)
        assert len(decoded) == sum(len(s.figures) for s in sections)
        assert driver.execute_script("return document.querySelectorAll('table').length") == sum(len(s.tables) for s in sections)


def test_markdown_tables_read_back_as_written():
    table = Table("Heads", ["head", "dev acc"], [["mlp", "98.2"], ["linear", "96.0"]], [False, True], "heads.md")
    text = "intro\n\n" + "\n".join(table.markdown()[2:]) + "\n\nOut-of-set, %:\n\n| x | y |\n|---|---:|\n| a | 1 |\n"
    first, second = gather.markdown_tables(text, "heads.md")
    assert (first.columns, first.rows, first.numeric) == (table.columns, table.rows, table.numeric)
    assert first.title == "intro" and second.title == "Out-of-set, %" and second.rows == [["a", "1"]]


def test_the_data_size_sentence_compares_one_language_rank_start_and_step_count_across_sizes():
    scratch = {"lang": "te", "rank": 16, "init_from": None, "steps": 100}
    rows = [dict(scratch, train_utterances=400, effective_rank=12.8),
            dict(scratch, train_utterances=25, effective_rank=9.1),
            dict(scratch, train_utterances=100, effective_rank=6.0, rank=8),
            dict(scratch, train_utterances=400, effective_rank=13.0, lang="hi"),
            dict(scratch, train_utterances=400, effective_rank=11.0, steps=320),  # the joint run: other steps
            dict(scratch, train_utterances=25, effective_rank=13.5, init_from="hi"),
            dict(scratch, train_utterances=400, effective_rank=13.1, init_from="hi")]
    said = gather.data_size_sentence(rows)
    assert "te r16 from scratch, 100 steps: 25 utts 9.1, 400 utts 12.8 (lower at the smallest size, as the hypothesis says)" in said
    assert "te r16 from hi's adapter, 100 steps: 25 utts 13.5, 400 utts 13.1 (higher at the smallest size)" in said
    assert "11.0" not in said  # the same size at other steps is another group, alone at its size
    assert gather.data_size_sentence(rows[2:5]) is None  # no language trained at two sizes with one rank and start
    close = [dict(scratch, train_utterances=100, effective_rank=13.18), dict(scratch, train_utterances=400, effective_rank=13.22)]
    assert gather.data_size_sentence(close).endswith("100 utts 13.2, 400 utts 13.2 (level).")  # no "lower" the reader cannot see


def test_over_the_page_budget_the_last_sections_tables_give_way_to_their_figures(tmp_path):
    from espnet_ext.analysis.report import Figure

    table = Table("t", ["a"], [["1"]])
    figure = Figure(tmp_path / "f.png", "caption", "source")
    sections = [Section(f"s{i}", "message", [], [table], [figure]) for i in range(12)]  # 1 + 24 pages
    plan = slide_plan(sections, max_pages=20)
    assert 1 + len(plan) == 20
    assert [(s.title, kind) for s, kind in plan if kind == "table"] == [(f"s{i}", "table") for i in range(7)]
    assert all((s, "figures") in plan for s in sections)  # every section keeps its message's figure page
    assert slide_count(sections) == 1 + len(slide_plan(sections))


def test_robustness_section_draws_every_condition_and_names_each_systems_worst(tmp_path):
    root, figures = tmp_path / "exp", tmp_path / "figures"
    figures.mkdir()
    for i, test_set in enumerate(("test_all", "test_all_tel", "test_all_snr5")):
        write_decode(root / "whisper_tiny_zeroshot" / f"decode_{test_set}_none", test_set, 10 + i)
        write_decode(root / "whisper_tiny_all_r4" / f"decode_{test_set}_oracle", test_set, 20 + i)
    assert gather.robustness_section(tmp_path / "nothing", figures) is None
    section = gather.robustness_section(root, figures)
    [table] = section.tables
    assert [row[:2] for row in table.rows][::2] == [["clean", "zero-shot base"], ["tel", "zero-shot base"],
                                                     ["snr5", "zero-shot base"]]
    rate = {test_set: json.loads((root / "whisper_tiny_all_r4" / f"decode_{test_set}_oracle/scores.json").read_text())
            ["scores"]["all"]["wer"]["rate"] for test_set in ("test_all", "test_all_tel", "test_all_snr5")}
    worst = max(("tel", "snr5"), key=lambda c: rate[f"test_all_{c}"])
    assert (f"whisper_tiny_all_r4 on test_all: {rate['test_all']:.1f}% WER clean, worst {worst} "
            f"({rate[f'test_all_{worst}']:.1f}%).") in section.paragraphs
    assert [f.png.name for f in section.figures] == ["robustness_test_all.png"]
    assert (figures / "robustness_test_all.png").stat().st_size > 10_000


def test_lid_headline_names_the_best_head_with_its_seeds_and_its_weakest_language(tmp_path):
    lid = tmp_path / "lid"
    lid.mkdir()
    (lid / "heads.md").write_text("| head | test acc |\n|---|---:|\n| mlp | 96.4 |\n| asp x3 | 99.2 |\n")

    def report(accuracy, per_language, members):
        return {"members": members, "eval": {"test": {
            "accuracy": accuracy, "under_2s": {"accuracy": 1.0, "n": 22},
            "per_language": {lang: {"accuracy": a, "n": 100} for lang, a in per_language.items()}}}}

    (lid / "heads.json").write_text(json.dumps({"mlp": report(0.964, {"hi": 0.98, "pa": 0.84}, 1),
                                                "asp": report(0.992, {"hi": 0.97, "pa": 0.98}, 3)}))
    message = gather.lid_section(tmp_path).message
    assert message.startswith("Best head asp x3: 99.2% of test utterances right; its weakest language hi (97%)")
    assert "clips under 2 s 100% (n=22)" in message


def test_a_wide_table_slide_stays_on_the_page():
    """A routing table's 15 columns of WERs and bootstrap intervals ran off both edges of the slide at 7 pt."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from espnet_ext.analysis.report import _table_slide

    langs = ["hi", "pa", "te", "it", "all"]
    columns = (["routing"] + [c for lang in langs for c in (f"{lang} WER / CER", f"{lang} WER vs oracle")]
               + ["routed to true lang %", "ms/utt", "WER where LID top posterior < 0.9 (n=22)", "there, WER vs hard"])
    rows = [[name] + ["102.65 / 85.91", "+360.6% [+290.9, +447.4]"] * 5 + ["100.0", "1313", "107.14", "+94.1% [+54.2, +153.1]"]
            for name in ("none (zero-shot)", "oracle", "hard", "soft", "threshold")]
    table = Table("Routing: whisper_base_all_r16 on test_all", columns, rows)
    fig = _table_slide(plt, Section("Routing", "wide", tables=[table]), table)
    renderer = fig.canvas.get_renderer()
    drawn = fig.axes[0].tables[0]
    extent, page = drawn.get_window_extent(renderer), fig.bbox
    assert page.x0 <= extent.x0 and extent.x1 <= page.x1
    assert drawn.get_celld()[0, 0].get_text().get_fontsize() < 7  # it had to shrink
    plt.close(fig)


def test_every_system_reads_against_the_default_training_with_its_interval(tmp_path, monkeypatch):
    """The ranks study's other ranks and the seeds' reruns, each against the default: the change and its CI from
    the two scores.json, blank for the default itself, and the seeds named as the chance yardstick."""
    default, other, seed = (tmp_path / name for name in ("tiny_all_r4", "tiny_all_r8", "tiny_all_r4_seed1"))
    for i, exp in enumerate((default, other, seed)):
        write_decode(exp / "decode_test_all_oracle", "test_all", 10 + i)
        save_bank(random_bank(scale=1.0), exp / "adapters")
    monkeypatch.chdir(tmp_path)  # the default named relative to here, as `analyze --exp_dir exp/...` names it
    section = gather.efficiency_section(tmp_path, 10_000_000, tmp_path / "figures", Path(default.name))
    table = section.tables[0]
    change = table.columns.index("WER vs tiny_all_r4")
    rows = {row[0].split()[0]: row for row in table.rows}
    assert rows["tiny_all_r4"][change] == ""
    scores = {name: json.loads((tmp_path / name / "decode_test_all_oracle/scores.json").read_text())
              for name in ("tiny_all_r4", "tiny_all_r8")}
    expected = gather.change_with_ci(scores["tiny_all_r8"], scores["tiny_all_r4"], None)
    assert rows["tiny_all_r8"][change] == expected and expected.endswith("]")
    said = " ".join(section.paragraphs)
    assert f"tiny_all_r8 (LoRA r4) {expected}" in said and "by chance alone" in said


def test_wer_against_model_size_draws_each_models_default_systems_once_two_sizes_were_decoded(tmp_path):
    """Two models (sizes as their decodes log them): the zero-shot and rank-4 lines, each point a model's
    default system with the WER of its scores.json; a tagged rerun stays out; "% of base" divides by each
    system's own base. One size decoded: no figure."""
    sizes = {"tiny_a": 1_000_000, "tiny_b": 4_000_000}
    names = ["tiny_a_zeroshot", "tiny_a_all_r4", "tiny_a_all_r4_aug", "tiny_b_zeroshot", "tiny_b_all_r4"]
    for i, name in enumerate(names):
        model = name[:6]
        decode_dir = tmp_path / name / ("decode_test_all_none" if name.endswith("zeroshot") else "decode_test_all_oracle")
        write_decode(decode_dir, "test_all", 20 + i)
        with (decode_dir / "log/decode.1.log").open("a") as log:
            log.write(f"x decode INFO loaded {model} ({sizes[model]} base parameters) in 1.0 s\n")
        if not name.endswith("zeroshot"):
            save_bank(random_bank(scale=1.0), tmp_path / name / "adapters")
    wer = {name: json.loads(next((tmp_path / name).glob("decode_*/scores.json")).read_text())["scores"]["all"]["wer"]["rate"]
           for name in names}
    figures = tmp_path / "figures"
    section = gather.efficiency_section(tmp_path, None, figures, tmp_path / "tiny_a_all_r4")
    assert (figures / "wer_vs_model_size.png").is_file()
    said = " ".join(section.paragraphs)
    assert (f"zero-shot: tiny_a {wer['tiny_a_zeroshot']:.2f}, tiny_b {wer['tiny_b_zeroshot']:.2f}; "
            f"LoRA r4: tiny_a {wer['tiny_a_all_r4']:.2f}, tiny_b {wer['tiny_b_all_r4']:.2f}.") in said
    table = section.tables[0]
    rows = {row[0].split()[0]: row for row in table.rows}
    share = table.columns.index("% of base")
    trainable = sum(read_adapter_weights(d).parameter_count() for d in (tmp_path / "tiny_a_all_r4/adapters").iterdir())
    assert float(rows["tiny_a_all_r4"][share]) == pytest.approx(100 * trainable / 1e6, abs=0.06)
    assert float(rows["tiny_b_all_r4"][share]) == pytest.approx(100 * trainable / 4e6, abs=0.06)
    for name in ("tiny_b_zeroshot", "tiny_b_all_r4"):
        (tmp_path / name).rename(tmp_path / f"old_{name}")
    alone = gather.efficiency_section(tmp_path, None, tmp_path / "figures_one", tmp_path / "tiny_a_all_r4")
    assert not (tmp_path / "figures_one" / "wer_vs_model_size.png").exists()
    assert all("model size" not in f.caption for f in alone.figures)
