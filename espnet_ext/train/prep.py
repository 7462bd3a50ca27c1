"""Turn a Kaldi data dir into the files ESPnet's trainer reads (what asr.sh's stages 2-4 would dump).

For one data set, under `<exp>/data/<train|valid>/`:

    wav.scp       utterance -> audio file that soundfile can read (segments are cut into wav/)
    text          utterance -> target token ids (text_int; see targets.py), the prompt included
    text_prev, text_ctc       OWSM only (see targets.py)
    lang          utterance -> index of its adapter in lora_conf.languages (text_int)
    speech_shape  utterance -> number of samples     (for ESPnet's length-sorted batch samplers)
    text_shape    utterance -> number of target ids
    dropped       utterances left out, with the reason (longer than the model can take)

Tokenising here, once, instead of in ESPnet's preprocessor keeps the exact prompt under our control
and lets the per-utterance language travel as an ordinary data file. Every file is written sorted and
atomically, so rerunning the preparation on a resumed run rewrites identical files.
"""
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import soundfile as sf

from espnet_ext.data.audio import SAMPLE_RATE, utterance_audio
from espnet_ext.data.kaldi import DataDirError, Utterance, read_data_dir, write_list

log = logging.getLogger(__name__)

MAX_SECONDS = 30.0  # Whisper's and OWSM's input window: longer audio would be cut off silently


@dataclass(frozen=True)
class PreparedSet:
    """One prepared data set: its ESPnet data files and shape files, and what it holds."""

    files: Tuple[Tuple[Path, str, str], ...]  # (path, data name, ESPnet loader type)
    shape_files: Tuple[Path, ...]
    per_language: Dict[str, int]  # utterances kept, by language
    source: Path  # the Kaldi data dir it came from

    def espnet_args(self, mode: str) -> List[str]:
        """`--<mode>_data_path_and_name_and_type` and `--<mode>_shape_file` options (mode: train|valid)."""
        args: List[str] = []
        for path, name, kind in self.files:
            args += [f"--{mode}_data_path_and_name_and_type", f"{path},{name},{kind}"]
        for shape in self.shape_files:
            args += [f"--{mode}_shape_file", str(shape)]
        return args


def _cut_segment(utt: Utterance, wav_dir: Path) -> Tuple[str, int]:
    """Write the utterance's segment of its recording as a WAV of its own: ESPnet reads whole files."""
    samples = utterance_audio(utt)
    path = wav_dir / f"{utt.utt_id}.wav"
    wav_dir.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), samples, SAMPLE_RATE, subtype="FLOAT")
    return str(path), len(samples)


def _audio(utt: Utterance, wav_dir: Path, data_dir: Path) -> Tuple[str, int]:
    """(path ESPnet will read, number of samples), after checking the file exists and has the format the
    models need."""
    if not Path(utt.wav).is_file():
        raise DataDirError(data_dir / "wav.scp", None, f"{utt.wav} (utterance {utt.utt_id}) not found",
                           "restore the file, or rerun data preparation, which writes it again")
    try:
        info = sf.info(utt.wav)
    except (RuntimeError, sf.LibsndfileError) as err:
        raise ValueError(
            f"{data_dir}/wav.scp: {utt.wav} (utterance {utt.utt_id}) cannot be read by soundfile, which "
            f"ESPnet's data loader uses ({err}); convert it to WAV or FLAC (e.g. with "
            "espnet_ext.data.audio) and rerun data preparation"
        ) from None
    if info.samplerate != SAMPLE_RATE or info.channels != 1:
        raise ValueError(
            f"{data_dir}/wav.scp: {utt.wav} (utterance {utt.utt_id}) is {info.samplerate} Hz with "
            f"{info.channels} channel(s); training needs {SAMPLE_RATE} Hz mono. Resample it "
            f"(sox in.wav -r {SAMPLE_RATE} -c 1 out.wav) and rerun data preparation"
        )
    if utt.segment is not None:
        return _cut_segment(utt, wav_dir)
    return utt.wav, info.frames


def _check_languages(utterances: Sequence[Utterance], languages: Sequence[str], data_dir: Path) -> None:
    foreign = sorted({u.lang for u in utterances} - set(languages))
    if foreign:
        example = next(u.utt_id for u in utterances if u.lang in foreign)
        raise ValueError(
            f"{data_dir}/utt2lang: languages {foreign} (e.g. utterance {example}) have no adapter; the "
            f"bank holds {list(languages)}. Add them to lora_conf.languages or train on a data dir "
            "without them"
        )


def prepare_set(data_dir: Path, out_dir: Path, targets, languages: Sequence[str]) -> PreparedSet:
    """Write the ESPnet files of Kaldi dir `data_dir` into `out_dir` (see the module docstring)."""
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    utterances = read_data_dir(data_dir)
    if not utterances:
        raise ValueError(f"{data_dir} holds no utterances; rerun data preparation (stage 1)")
    _check_languages(utterances, languages, data_dir)
    lists: Dict[str, Dict[str, str]] = {name: {} for name in ("wav.scp", "lang", "speech_shape", "text_shape")}
    lists.update({name: {} for name in targets.names})
    dropped: Dict[str, str] = {}
    for utt in utterances:
        path, samples = _audio(utt, out_dir / "wav", data_dir)
        ids = targets.encode(utt.text, utt.lang)
        reason = _too_long(samples, len(ids["text"]), targets.max_length)
        if reason:
            dropped[utt.utt_id] = reason
            continue
        lists["wav.scp"][utt.utt_id] = path
        lists["lang"][utt.utt_id] = str(languages.index(utt.lang))
        lists["speech_shape"][utt.utt_id] = str(samples)
        lists["text_shape"][utt.utt_id] = str(len(ids["text"]))
        for name, values in ids.items():
            lists[name][utt.utt_id] = " ".join(map(str, values))
    return _write(data_dir, out_dir, lists, dropped, targets.names, utterances)


def _too_long(samples: int, target_length: int, max_length) -> str:
    if samples > MAX_SECONDS * SAMPLE_RATE:
        return f"audio {samples / SAMPLE_RATE:.1f} s > {MAX_SECONDS:g} s"
    if max_length is not None and target_length > max_length:
        return f"target {target_length} tokens > the decoder's {max_length}"
    return ""


def _write(data_dir, out_dir, lists, dropped, target_names, utterances) -> PreparedSet:
    write_list(out_dir / "dropped", dropped)
    if not lists["wav.scp"]:
        raise ValueError(f"{data_dir}: every utterance was too long to train on (see {out_dir / 'dropped'})")
    for name, pairs in lists.items():
        write_list(out_dir / name, pairs)
    if dropped:
        log.warning("%s: left out %d utterances too long to train on (listed in %s)", data_dir, len(dropped),
                    out_dir / "dropped")
    kept = [u for u in utterances if u.utt_id in lists["wav.scp"]]
    per_language: Dict[str, int] = {}
    for utt in kept:
        per_language[utt.lang] = per_language.get(utt.lang, 0) + 1
    return _prepared_set(data_dir, out_dir, target_names, dict(sorted(per_language.items())))


def _prepared_set(data_dir: Path, out_dir: Path, target_names: Sequence[str],
                  per_language: Dict[str, int]) -> PreparedSet:
    files = [(out_dir / "wav.scp", "speech", "sound"), (out_dir / "lang", "lang", "text_int")]
    files += [(out_dir / name, name, "text_int") for name in target_names]
    return PreparedSet(files=tuple(files), shape_files=(out_dir / "speech_shape", out_dir / "text_shape"),
                       per_language=per_language, source=data_dir)


def prepared_elsewhere(data_dir: Path, out_dir: Path, targets) -> PreparedSet:
    """The files that `prepare_set(data_dir, out_dir, targets, ...)` writes, without reading or writing
    any (`per_language` is left empty): for the processes of a multi-process training other than rank 0,
    which prepares them (espnet_ext/train/pipeline.py)."""
    return _prepared_set(Path(data_dir), Path(out_dir), targets.names, {})
