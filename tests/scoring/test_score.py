"""Scoring a decode dir end to end: sclite and jiwer agree, and the files a person reads say the right thing."""
import json
import os
import subprocess
import sys
import logging
import shutil
from pathlib import Path

import jiwer
import pytest

from espnet_ext.bin.score import main
from espnet_ext.scoring.metrics import char_error_counts, word_error_counts
from espnet_ext.scoring.report import _realign
from espnet_ext.scoring.sclite import DEBIAN_SCLITE

pytestmark = pytest.mark.skipif(
    not (shutil.which("sclite") or Path(DEBIAN_SCLITE).exists()), reason="sclite missing: apt-get install sctk"
)

# uttid: (speaker, language, reference, hypothesis or None when the decoder produced none)
SAMPLE = {
    "hi1-u1": ("hi1", "hi", "नमस्ते दुनिया, आप कैसे हैं?", "नमस्ते दुनिया आप है"),  # 1 del, 1 sub
    "hi1-u2": ("hi1", "hi", "मैं ठीक हूँ।", None),  # 3 del (missing hypothesis)
    "pa1-u3": ("pa1", "pa", "ਸਤ ਸ੍ਰੀ ਅਕਾਲ ਜੀ", "ਸਤ ਸ੍ਰੀ ਅਕਾਲ ਜੀ ਜੀ"),  # 1 ins
    "te1-u4": ("te1", "te", "నమస్కారం మీరు ఎలా ఉన్నారు", "నమస్కారం మీరు ఎల ఉన్నారు"),  # 1 sub
    "spk-it-u5": ("spk-it", "it", "L'acqua è fredda.", "la acqua e fredda"),  # 2 sub
    "spk-it-u6": ("spk-it", "it", "Buongiorno a tutti", "Buongiorno a tutti!"),  # correct
}


def write_sample(tmp_path, sample=SAMPLE):
    data, decode = tmp_path / "data/test", tmp_path / "exp/model/decode_test_oracle"
    data.mkdir(parents=True)
    decode.mkdir(parents=True)
    (data / "text").write_text("".join(f"{u} {ref}\n" for u, (_, _, ref, _) in sample.items()))
    (data / "utt2spk").write_text("".join(f"{u} {spk}\n" for u, (spk, _, _, _) in sample.items()))
    (data / "utt2lang").write_text("".join(f"{u} {lang}\n" for u, (_, lang, _, _) in sample.items()))
    (decode / "text").write_text("".join(f"{u} {hyp}\n" for u, (_, _, _, hyp) in sample.items() if hyp is not None))
    return data, decode


@pytest.fixture
def scored(tmp_path, caplog):
    data, decode = write_sample(tmp_path)
    with caplog.at_level(logging.WARNING):
        assert main(["--decode_dir", str(decode), "--ref_text", str(data / "text")]) == 0
    return decode, json.loads((decode / "scores.json").read_text()), caplog.text


def test_sclite_counts_equal_jiwer_per_language_and_overall(scored):
    _, scores, _ = scored
    langs = {"hi", "pa", "te", "it", "all"}
    assert list(scores["scores"]) == ["hi", "pa", "te", "it", "all"]  # language table order, overall last
    for lang in langs:
        pairs = [(ref, hyp or "") for _, l, ref, hyp in SAMPLE.values() if lang in (l, "all")]
        refs, hyps = zip(*pairs)
        for unit, counts in (("wer", word_error_counts(refs, hyps)), ("cer", char_error_counts(refs, hyps))):
            assert scores["scores"][lang][unit] == counts.as_dict(), (lang, unit)


# Raw transcripts that only agree after normalisation: danda and punctuation glued to words, case,
# NFD accents and precomposed nukta letters (NFC), zero-width (non-)joiners and soft hyphens, typographic
# apostrophes and Italian elision, symbols, and the characters trn files give a meaning to ("(", "-").
RAW_SAMPLE = {
    "hi2-r1": ("hi2", "hi", "नमस्ते दुनिया।आप कैसे हैं?", "नमस्ते,  दुनिया आप कैसी हैं"),
    "hi2-r2": ("hi2", "hi", "\u0958लम और कि\u200dताब॥", "\u0915\u093cलम और किताबें"),
    "pa2-r3": ("pa2", "pa", "ਅੱਜ ਦੀ \u0a59ਬਰ: ਮੀਂਹ!", "ਅੱਜ ਦੀ ਖ\u0a3cਬਰ ਮੀਂਹ ਮੀਂਹ।"),
    "te2-r4": ("te2", "te", "నమస్కారం, మీరు ఎలా ఉన్నారు?", "నమస్కారం (మీరు) ఎల ఉన్నా\u200cరు"),
    "it2-r5": ("it2", "it", "L\u2019acqua è fredda, un po' troppo.", "LA ACQUA E\u0300 FREDDA-UN PO TROPPO"),
    "it2-r6": ("it2", "it", "Vado a scuola in bici\u00adcletta con un\u2019amica: costa 5€",
               "vado a scuola, in bicicletta con un amica costa 5 euro"),
}
# The same transcripts normalised by hand, following normalize.py's documented rules.
BY_HAND = {
    "hi2-r1": ("नमस्ते दुनिया आप कैसे हैं", "नमस्ते दुनिया आप कैसी हैं"),  # 1 sub
    "hi2-r2": ("\u0915\u093cलम और किताब", "\u0915\u093cलम और किताबें"),  # 1 sub
    "pa2-r3": ("ਅੱਜ ਦੀ ਖ\u0a3cਬਰ ਮੀਂਹ", "ਅੱਜ ਦੀ ਖ\u0a3cਬਰ ਮੀਂਹ ਮੀਂਹ"),  # 1 ins
    "te2-r4": ("నమస్కారం మీరు ఎలా ఉన్నారు", "నమస్కారం మీరు ఎల ఉన్నారు"),  # 1 sub
    "it2-r5": ("l' acqua è fredda un po troppo", "la acqua è fredda un po troppo"),  # 1 sub
    "it2-r6": ("vado a scuola in bicicletta con un' amica costa 5",
               "vado a scuola in bicicletta con un amica costa 5 euro"),  # 1 sub, 1 ins
}


def test_raw_text_scores_equal_jiwer_on_text_normalised_by_hand(tmp_path):
    """sclite on raw text (normalised by the project) counts what jiwer counts on hand-normalised text.

    The test above normalises both sides with the project's normaliser; here the expectation never
    touches it, so a wrong normalisation rule changes the scores and fails this test.
    """
    data, decode = write_sample(tmp_path, RAW_SAMPLE)
    assert main(["--decode_dir", str(decode), "--ref_text", str(data / "text")]) == 0
    scores = json.loads((decode / "scores.json").read_text())["scores"]
    assert list(scores) == ["hi", "pa", "te", "it", "all"]
    for lang in scores:
        refs, hyps = zip(*(BY_HAND[u] for u, (_, l, _, _) in RAW_SAMPLE.items() if lang in (l, "all")))
        for unit, process in (("wer", jiwer.process_words), ("cer", jiwer.process_characters)):
            out = process(list(refs), list(hyps))
            expected = {"substitutions": out.substitutions, "deletions": out.deletions,
                        "insertions": out.insertions, "ref_tokens": out.hits + out.substitutions + out.deletions}
            assert {k: scores[lang][unit][k] for k in expected} == expected, (lang, unit)
    assert scores["all"]["wer"]["errors"] == 7


def test_overall_word_counts_match_the_hand_count(scored):
    _, scores, _ = scored
    overall = scores["scores"]["all"]
    assert overall["utterances"] == 6
    assert {k: overall["wer"][k] for k in ("substitutions", "deletions", "insertions", "ref_tokens")} == {
        "substitutions": 4, "deletions": 4, "insertions": 1, "ref_tokens": 23,
    }
    assert overall["wer"]["rate"] == pytest.approx(100 * 9 / 23)
    assert scores["scores"]["hi"]["cer"]["deletions"] == 17  # "कैसे " + the anusvara of हैं, "मैं ठीक हूँ"


def test_missing_hypothesis_is_scored_empty_with_a_warning(scored):
    decode, scores, warnings = scored
    assert scores["missing_hypotheses"] == ["hi1-u2"]
    assert "1 of 6 utterances have no hypothesis" in warnings
    assert "मैं ठीक हूँ (hi1-hi1-u2)\n" in (decode / "ref.trn").read_text()
    assert " (hi1-hi1-u2)\n" in (decode / "hyp.trn").read_text().splitlines(keepends=True)


def test_trn_files_use_speaker_prefixed_ids_and_char_tokens(scored):
    decode, _, _ = scored
    ref_words = (decode / "ref.trn").read_text().splitlines()
    assert ref_words[0] == "नमस्ते दुनिया आप कैसे हैं (hi1-hi1-u1)"
    assert ref_words[4] == "l' acqua è fredda (spk_it-spk-it-u5)"  # sclite's speaker ends at the first '-'
    ref_chars = (decode / "score_cer/ref.trn").read_text().splitlines()
    assert ref_chars[2] == "ਸ ਤ <space> ਸ ੍ ਰ ੀ <space> ਅ ਕ ਾ ਲ <space> ਜ ੀ (pa1-pa1-u3)"


def test_sclite_reports_hold_speaker_summary_and_every_alignment(scored):
    decode, _, _ = scored
    for unit in ("wer", "cer"):
        report = (decode / f"score_{unit}/result.txt").read_text()
        assert "SYSTEM SUMMARY PERCENTAGES by SPEAKER" in report
        assert {"hi1", "pa1", "te1", "spk_it"} <= {line.split("|")[1].strip() for line in report.splitlines()
                                                   if line.strip().startswith("| ") and line.count("|") > 3}
        assert report.count("\nREF:") == len(SAMPLE)


def test_result_txt_summarises_and_shows_erroneous_alignments(scored):
    decode, _, _ = scored
    text = (decode / "result.txt").read_text()
    rows = {line.split()[0]: line.split() for line in text.splitlines() if line[:5].strip() in ("lang", "hi", "pa", "te", "it", "all")}
    assert rows["lang"] == ["lang", "utts", "words", "WER%", "sub", "del", "ins", "chars", "CER%", "sub", "del", "ins"]
    assert rows["all"] == ["all", "6", "23", "39.13", "4", "4", "1", "111", "20.72", "2", "18", "3"]
    assert rows["it"][:7] == ["it", "2", "7", "28.57", "2", "0", "0"]
    assert "Missing hypotheses, scored as empty: 1 (hi1-u2)" in text
    assert "score_wer/result.txt" in text and "score_cer/result.txt" in text
    assert "Utterances with word errors: 5 of 6" in text
    assert "spk-it-u6 [" not in text  # correct utterances are not listed
    block = text[text.index("te1-u4 [te, speaker te1] sub=1 del=0 ins=0 of 4 words"):].splitlines()[1:4]
    assert block[0].split()[1:] == ["నమస్కారం", "మీరు", "ఎలా", "ఉన్నారు"]
    assert block[2].split() == ["Eval:", "S"]


def test_realign_labels_each_column():
    block = "REF:  a ** c d\nHYP:  a X  C *\nEval:   I    D"
    ref, hyp, evals = _realign(block).splitlines()
    assert ref.split() == ["REF:", "a", "*", "c", "d"]
    assert hyp.split() == ["HYP:", "a", "X", "C", "*"]
    assert evals.split() == ["Eval:", "I", "D"]
    assert evals.index("I") == hyp.index("X") and evals.index("D") == hyp.index("*")


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d, dec: (dec / "text").write_text("xx-u9 ciao\n"), "have no reference"),
        (lambda d, dec: (d / "utt2lang").write_text("hi1-u1 hi\n"), "utt2lang: no entry for utterance"),
        (lambda d, dec: (d / "utt2lang").write_text((d / "utt2lang").read_text().replace(" te", " tel")),
         "unknown language code 'tel'"),
        (lambda d, dec: (d / "utt2spk").unlink(), "utt2spk: no such file"),
        (lambda d, dec: (d / "text").write_text("hi1-u1 a\nhi1-u1 b\n"), "text:2: duplicate key"),
        (lambda d, dec: [f.write_text(f.read_text().replace("hi1-u1", "hi1-u(1)"))
                         for f in (d / "text", d / "utt2spk", d / "utt2lang", dec / "text")],
         "rename the utterance so its id has no parentheses"),
    ],
)
def test_bad_input_names_the_file(tmp_path, capsys, mutate, message):
    data, decode = write_sample(tmp_path)
    mutate(data, decode)
    with pytest.raises(SystemExit) as exit_info:  # one line, exit status 1 (espnet_ext.bin.cli)
        main(["--decode_dir", str(decode), "--ref_text", str(data / "text")])
    err = str(exit_info.value.code)
    assert err.startswith("score.py: ") and message in err and "\n" not in err, err
    assert not (decode / "scores.json").exists()


def test_show_results_reads_what_score_writes(scored):
    decode, _, _ = scored
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, str(root / "local/show_results.py"), str(decode.parent.parent)],
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(root)}, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "| model | decode_test_oracle | test | all | 6 | 23 | 39.13 | 111 | 20.72 |" in out.stdout
