"""Phonetic probes: does an encoder layer, bare or with an adapter, know the consonant it heard?

The probe set is synthesised syllables whose phonetic features are known by construction
(`local/make_syllable_set.py`): every consonant of CONSONANTS before each vowel of VOWELS, and the vowels
alone, spoken by espeak-ng from phoneme input (`[[ka]]`) in each adapter language's voices, so the sound
is the same phoneme in every voice and no text-to-phoneme rule is involved. Each clip's transcript is the
syllable; its labels come from the table below. The features are the textbook values of these IPA
symbols (the IPA consonant chart: International Phonetic Association, Handbook of the IPA, 1999, pp. 3-10);
`r` is taken as an alveolar trill/tap and grouped with `l` as a liquid.

Tasks (linear probes on the clip's mean-pooled states, cross-validated, each with shuffled-label controls;
espnet_ext.analysis.representations does the probing): onset (consonant-vowel vs vowel alone), and, on the
consonant-vowel clips, voicing, place and manner of the consonant.
"""
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from espnet_ext.data.kaldi import read_data_dir
from espnet_ext.errors import UserError

#: consonant (espeak phoneme input = IPA letter here) -> (voicing, place, manner)
CONSONANTS = {
    "p": ("voiceless", "bilabial", "plosive"), "b": ("voiced", "bilabial", "plosive"),
    "t": ("voiceless", "alveolar", "plosive"), "d": ("voiced", "alveolar", "plosive"),
    "k": ("voiceless", "velar", "plosive"), "g": ("voiced", "velar", "plosive"),
    "m": ("voiced", "bilabial", "nasal"), "n": ("voiced", "alveolar", "nasal"),
    "f": ("voiceless", "labiodental", "fricative"), "v": ("voiced", "labiodental", "fricative"),
    "s": ("voiceless", "alveolar", "fricative"), "z": ("voiced", "alveolar", "fricative"),
    "l": ("voiced", "alveolar", "liquid"), "r": ("voiced", "alveolar", "liquid"),
}
VOWELS = ("a", "i", "u")
FEATURES = ("voicing", "place", "manner")


class NotASyllableSet(UserError, ValueError):
    """A data dir whose transcripts are not the syllables of local/make_syllable_set.py."""


def syllables() -> List[str]:
    """Every syllable of the probe set: each consonant before each vowel, then the vowels alone."""
    return [c + v for c in CONSONANTS for v in VOWELS] + list(VOWELS)


def syllable_tasks(texts: List[str], where: Path) -> Dict[str, tuple]:
    """The probe tasks of clips whose transcripts are `texts` (representations.Tasks, plus the clips each task
    reads: `onset` reads all, the consonant features the consonant-vowel clips)."""
    unknown = sorted(set(texts) - set(syllables()))
    if unknown:
        raise NotASyllableSet(f"{where}/text holds {unknown[:3]}, not syllables of local/make_syllable_set.py; "
                              "give the dir that script wrote (stage 7 writes data/syllables)")
    consonant = [t[:-1] if len(t) > 1 else None for t in texts]
    tasks = {"onset": (["consonant-vowel", "vowel"], np.array([0 if c else 1 for c in consonant]),
                       np.arange(len(texts)))}
    cv = np.array([i for i, c in enumerate(consonant) if c])
    for k, feature in enumerate(FEATURES):
        classes = list(dict.fromkeys(values[k] for values in CONSONANTS.values()))
        tasks[feature] = (classes, np.array([classes.index(CONSONANTS[consonant[i]][k]) for i in cv]), cv)
    return tasks


def phonetic_probes(loaded, syllable_dir: Path, batch_size: int = 16, folds: int = 5) -> Dict[str, Any]:
    """Probe accuracy (and shuffled-label control) of onset, voicing, place and manner on every encoder layer,
    for the bare base and each adapter (representations.state_features); a JSON-ready dict shaped like
    representation_analysis' (its `plot_probes` draws it)."""
    from espnet_ext.analysis.representations import BASE, probes_by_layer, state_features
    from espnet_ext.lid.features import PooledFeatures
    from espnet_ext.lora.inject import bank_info

    text = {u.utt_id: u.text for u in read_data_dir(syllable_dir)}
    syllable_tasks(list(text.values()), syllable_dir)  # refuse another dir before encoding anything
    states = state_features(loaded, syllable_dir, batch_size)
    tasks = syllable_tasks([text[u] for u in states[BASE].utt_ids], syllable_dir)  # in the features' order
    probes: Dict[str, Dict] = {}
    for task, (classes, labels, rows) in tasks.items():
        subset = {name: PooledFeatures([f.utt_ids[i] for i in rows], [f.langs[i] for i in rows],
                                       {layer: x[rows] for layer, x in f.layers.items()})
                  for name, f in states.items()}
        probes.update(probes_by_layer(subset, folds, {task: (classes, labels)}))
    layout = bank_info(loaded.asr_model).layout
    return {"probe_dir": str(syllable_dir), "utterances": len(text), "layers": sorted(states[BASE].layers),
            "states": list(states), "tap_layer": None if layout.kind == "per_language" else layout.tap_layer,
            "folds": folds, "probes": probes,
            "classes": {task: classes for task, (classes, _, _) in tasks.items()}}


def best_layers(result: Dict[str, Any], state: str = "base") -> Dict[str, Optional[int]]:
    """Per task, the layer where `state`'s probe is most selective (accuracy over its control)."""
    return {task: result["layers"][int(np.argmax(by_state[state]["selectivity"]))]
            for task, by_state in result["probes"].items() if state in by_state}
