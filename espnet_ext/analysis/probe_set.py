"""The probe subset the representation and layer-importance analyses share: the same few utterances per
language of a data dir, chosen by utterance id (no randomness), written as a Kaldi dir so every reader
of data dirs takes it."""
from pathlib import Path
from typing import Dict, List

from espnet_ext.data.kaldi import Utterance, read_data_dir, write_data_dir


def probe_subset(data_dir: Path, per_language: int, out_dir: Path) -> Path:
    """Write `out_dir`, the first `per_language` utterances (by id) of every language of `data_dir`;
    kept as it is when it already holds that selection (a rerun reads the same probe set)."""
    by_lang: Dict[str, List[Utterance]] = {}
    for utt in sorted(read_data_dir(data_dir), key=lambda u: u.utt_id):
        by_lang.setdefault(utt.lang, []).append(utt)
    chosen = sorted((u for utts in by_lang.values() for u in utts[:per_language]), key=lambda u: u.utt_id)
    out_dir = Path(out_dir)
    if (out_dir / "wav.scp").is_file() and [u.utt_id for u in read_data_dir(out_dir)] == [u.utt_id for u in chosen]:
        return out_dir
    write_data_dir(out_dir, chosen)
    return out_dir
