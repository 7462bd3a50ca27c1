"""Error breakdown: known alignments give known counts of unseen-word errors, boundary errors, confusions."""
from espnet_ext.analysis import error_breakdown as eb


def test_a_merge_and_a_split_are_boundary_errors_and_a_substitution_is_not():
    refs = {"u1": "ab cd ef", "u2": "abcd ef", "u3": "ab cd"}
    hyps = {"u1": "abcd ef", "u2": "ab cd ef", "u3": "ab ce"}
    result = eb.breakdown(refs, hyps, {u: "it" for u in refs}, {"it": {"ab", "ef"}})["it"]
    assert result["error_regions"] == 3 and result["boundary_regions"] == 2
    # reference words: u1 ab cd ef, u2 abcd ef, u3 ab cd; seen: ab (x2), ef (x2); wrong: u1 ab cd, u2 abcd, u3 cd
    assert (result["seen_words"], result["seen_errors"]) == (4, 1)
    assert (result["unseen_words"], result["unseen_errors"]) == (3, 3)
    assert result["top_confusions"][0] == ("d->e", 1)


def test_phonetically_close_characters_by_place_length_voicing_and_accent():
    assert eb.close_kind("क", "ग") == "place"     # Devanagari ka/ga: velar, voicing
    assert eb.close_kind("ਤ", "ਧ") == "place"     # Gurmukhi ta/dha: dental, voicing and aspiration
    assert eb.close_kind("ట", "ణ") == "place"     # Telugu tta/nna: retroflex, nasality
    assert eb.close_kind("क", "प") is None        # velar against labial
    assert eb.close_kind("ਣ", "ਨ") == "retroflex"  # Gurmukhi nna/na
    assert eb.close_kind("ड", "द") == "retroflex" and eb.close_kind("ड", "ध") is None  # same column only
    assert eb.close_kind("ష", "శ") == "sibilant"   # Telugu ssa/sha
    assert eb.close_kind("ि", "ी") == "length"    # vowel signs i/ii
    assert eb.close_kind("ఉ", "ఊ") == "length"    # Telugu letters u/uu
    assert eb.close_kind("क", "ਗ") is None        # two scripts are never close
    assert eb.close_kind("p", "b") == "voicing" and eb.close_kind("e", "è") == "accent"
    assert eb.close_kind("p", "t") is None and eb.close_kind("a", "a") is None


def test_character_substitutions_are_counted_with_the_close_ones():
    result = eb.breakdown({"u": "कल पल"}, {"u": "गल मल"}, {"u": "hi"}, {})["hi"]  # क->ग close, प->म close
    assert (result["char_substitutions"], result["close_substitutions"]) == (2, 2)
    result = eb.breakdown({"u": "कल"}, {"u": "पल"}, {"u": "hi"}, {})["hi"]  # velar -> labial: not close
    assert (result["char_substitutions"], result["close_substitutions"]) == (1, 0)


def test_chance_draws_the_replacement_as_often_as_the_system_writes_it():
    # क replaced: the system wrote ग twice (close to क) and प twice (not): half would be close by chance
    assert eb.close_by_chance({"क->प": 3}, {"ग": 2, "प": 2, "क": 5}) == 50.0
    assert eb.close_by_chance({"क->प": 1}, {"प": 1}) == 0.0


def test_languages_are_kept_apart_and_a_missing_hypothesis_deletes_every_word():
    refs = {"a": "uno due", "b": "ek do"}
    result = eb.breakdown(refs, {"b": "ek do"}, {"a": "it", "b": "hi"}, {})
    assert list(result) == ["it", "hi"]
    assert result["it"]["unseen_errors"] == 2 and result["hi"]["unseen_errors"] == 0
    assert result["hi"]["error_regions"] == 0 and eb.rate(0, 0) != eb.rate(0, 0)  # nan where nothing was counted


def test_text_is_normalised_as_scoring_does():
    result = eb.breakdown({"u": "Ciao, mondo!"}, {"u": "ciao mondo"}, {"u": "it"}, {"it": {"ciao", "mondo"}})["it"]
    assert result["seen_errors"] == 0 and result["error_regions"] == 0


def test_report_section_reads_the_decode_its_reference_and_the_training_text(tmp_path):
    import json

    from espnet_ext.analysis.gather import errors_section

    train, test, exp = tmp_path / "data/train_all", tmp_path / "data/test_all", tmp_path / "exp/sys"
    for d in (train, test, exp / "decode_test_all_oracle", exp / "adapters/hi"):
        d.mkdir(parents=True)
    (train / "text").write_text("t1 ek do\nt2 uno\n")
    (train / "utt2lang").write_text("t1 hi\nt2 it\n")
    (test / "text").write_text("a ek teen\nb uno due\n")
    (exp / "decode_test_all_oracle/text").write_text("a ek tin\nb uno due\n")
    (exp / "decode_test_all_oracle/scores.json").write_text(json.dumps(
        {"ref_text": str(test / "text"), "utterances": {"a": {"lang": "hi"}, "b": {"lang": "it"}}}))
    (exp / "adapters/hi/adapter_config.json").write_text(json.dumps({"train_data": {"dir": str(train)}}))
    section = errors_section(exp, tmp_path)
    rows = {row[0]: row for row in section.tables[0].rows}
    assert rows["hi"][1:5] == ["2", "50", "0.0", "100.0"]  # teen unseen and wrong, ek seen and right
    assert rows["it"][1:5] == ["2", "50", "0.0", "0.0"]
    assert (tmp_path / "errors_seen_unseen.png").is_file() and section.message == "Error rates on words seen and unseen in training"  # no ratio of a 0% rate
