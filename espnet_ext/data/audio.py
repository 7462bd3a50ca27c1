"""Audio in and out of the recipe: every corpus ends up as 16 kHz mono 16-bit WAV, conditioned alike.

Whisper and OWSM expect 16 kHz input, so data dirs hold 16 kHz audio only. All preparers send their
audio through the same chain (`condition`: mono downmix, resampling, edge-silence trimming, level
normalisation) so that synthetic and real corpora differ in content, not in loudness or padding.

Reading uses soundfile (libsndfile 1.2 here: WAV, FLAC, MP3 and Ogg Opus/Vorbis, which covers Common
Voice and MLS). Formats libsndfile cannot open at all, such as Kathbath's AAC `.m4a`, are decoded with
PyAV, which faster-whisper already requires.
"""
import logging
import os
from dataclasses import dataclass
from math import gcd
from pathlib import Path
from typing import TYPE_CHECKING, List, Optional, Sequence, Tuple, Union

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from espnet_ext.fileio import atomic_open
from espnet_ext.errors import UserError

if TYPE_CHECKING:
    from espnet_ext.data.kaldi import Utterance

PathLike = Union[str, os.PathLike]
log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
WINDOW_SEARCH_S = 5.0  # a long recording is cut at the quietest point of the last 5 s before each limit
SNDFILE_SUFFIXES = {f".{fmt.lower()}" for fmt in sf.available_formats()} | {".opus", ".oga"}


class AudioError(UserError, ValueError):
    """Audio that cannot be used, with the file named in the message (one string: picklable)."""


@dataclass(frozen=True)
class AudioInfo:
    """What the validator needs to know about a decoded file."""

    sample_rate: int
    channels: int
    frames: int

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate


def pad_batch(audios: "Sequence[np.ndarray]"):
    """Float32 torch tensors (speech [batch, samples] zero-padded, lengths [batch]) of 16 kHz clips."""
    import torch

    lengths = torch.tensor([len(a) for a in audios])
    speech = torch.zeros(len(audios), int(lengths.max()))
    for i, audio in enumerate(audios):
        speech[i, : len(audio)] = torch.from_numpy(np.asarray(audio, dtype=np.float32))
    return speech, lengths


def _read_with_pyav(path: Path) -> Tuple[np.ndarray, int]:
    """Decode a container libsndfile does not know (m4a/AAC) into float32 (frames, channels)."""
    import av  # imported here: only m4a-style corpora need it

    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        converter = av.AudioResampler(format="fltp")
        chunks = [out.to_ndarray() for frame in container.decode(stream) for out in converter.resample(frame)]
        sample_rate = stream.rate
    if not chunks:
        raise AudioError(f"{path}: no audio frames decoded")
    return np.concatenate(chunks, axis=1).T.astype(np.float32), sample_rate


def read_audio(path: PathLike) -> Tuple[np.ndarray, int]:
    """Decode a whole file to float32 (frames, channels); any failure names the file."""
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: audio file not found")
    try:
        if path.suffix.lower() in SNDFILE_SUFFIXES:
            wave, sample_rate = sf.read(str(path), dtype="float32", always_2d=True)
        else:
            wave, sample_rate = _read_with_pyav(path)
    except AudioError:
        raise
    except Exception as err:  # soundfile and PyAV raise many types for a damaged file; all mean the same
        raise AudioError(f"{path}: cannot decode audio ({err}); the file is corrupt or truncated") from None
    return wave, sample_rate


def probe_audio(path: PathLike) -> AudioInfo:
    """Decode the file completely (catching damage past the header) and report its shape."""
    wave, sample_rate = read_audio(path)
    return AudioInfo(sample_rate=sample_rate, channels=wave.shape[1], frames=wave.shape[0])


def to_mono(wave: np.ndarray) -> np.ndarray:
    """Average the channels of a (frames, channels) array; a 1-D array is already mono."""
    return wave if wave.ndim == 1 else wave.mean(axis=1)


def resample(wave: np.ndarray, orig_sr: int, target_sr: int = SAMPLE_RATE) -> np.ndarray:
    """Polyphase resampling of a mono signal (exact rational ratio, e.g. 22050 -> 16000 is 320/441)."""
    if orig_sr == target_sr:
        return wave
    divisor = gcd(orig_sr, target_sr)
    return resample_poly(wave, target_sr // divisor, orig_sr // divisor).astype(np.float32)


def _frame_rms(wave: np.ndarray, frame: int) -> np.ndarray:
    """RMS of consecutive non-overlapping frames (the last partial frame included)."""
    padded = np.pad(wave, (0, -len(wave) % frame))
    return np.sqrt(np.mean(padded.reshape(-1, frame) ** 2, axis=1))


def trim_silence(wave: np.ndarray, sample_rate: int, threshold_db: float = -40.0,
                 frame_s: float = 0.02, margin_s: float = 0.1) -> np.ndarray:
    """Cut leading and trailing frames quieter than `threshold_db` below the loudest frame.

    A margin is kept on each side so that soft word onsets and endings survive.
    """
    frame = max(1, int(frame_s * sample_rate))
    rms = _frame_rms(wave, frame)
    loud = np.flatnonzero(rms > rms.max() * 10 ** (threshold_db / 20)) if rms.max() > 0 else []
    if len(loud) == 0:
        raise AudioError("audio is silent")
    margin = int(margin_s * sample_rate)
    start = max(0, loud[0] * frame - margin)
    end = min(len(wave), (loud[-1] + 1) * frame + margin)
    return wave[start:end]


def normalize_level(wave: np.ndarray, target_rms_db: float = -20.0, peak_limit: float = 0.95) -> np.ndarray:
    """Scale to a common RMS level, lowering the gain where the peak would otherwise clip."""
    rms = float(np.sqrt(np.mean(wave ** 2)))
    if rms == 0:
        raise AudioError("audio is silent")
    gain = 10 ** (target_rms_db / 20) / rms
    peak = float(np.abs(wave).max())
    gain = min(gain, peak_limit / peak)
    return (wave * gain).astype(np.float32)


def condition(wave: np.ndarray, sample_rate: int) -> np.ndarray:
    """The chain every preparer applies: mono, 16 kHz, edges trimmed, level normalised."""
    mono = resample(to_mono(wave).astype(np.float32), sample_rate, SAMPLE_RATE)
    return normalize_level(trim_silence(mono, SAMPLE_RATE))


def write_wav(path: PathLike, wave: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Write 16-bit PCM mono WAV atomically; data dirs accept nothing but 16 kHz."""
    if sample_rate != SAMPLE_RATE:
        raise AudioError(f"{path}: refusing to write {sample_rate} Hz audio; resample to {SAMPLE_RATE} first")
    with atomic_open(path, "wb") as f:
        sf.write(f, np.clip(wave, -1.0, 1.0), sample_rate, format="WAV", subtype="PCM_16")


def convert_audio(src: PathLike, dst: PathLike, start: float = 0.0, end: Optional[float] = None) -> float:
    """Read any supported file (or its `start`-`end` seconds: a segment of a long recording), condition
    it and write it as a 16 kHz WAV; returns the duration."""
    wave, sample_rate = read_audio(src)
    if start or end is not None:
        if end is not None and (end <= start or start * sample_rate >= len(wave)):
            raise AudioError(f"{src}: segment {start:g}-{end:g} s lies outside the {len(wave) / sample_rate:g} s "
                             "recording")
        wave = wave[int(start * sample_rate) : None if end is None else int(end * sample_rate)]
    try:
        out = condition(wave, sample_rate)
    except AudioError as err:
        raise AudioError(f"{src}: {err}") from None
    write_wav(dst, out)
    return len(out) / SAMPLE_RATE


def existing_wav_duration(path: PathLike) -> Optional[float]:
    """Duration of `path` if it is already a usable 16 kHz mono WAV (so a rerun can skip it), else None."""
    try:
        info = probe_audio(path)
    except AudioError:
        return None
    usable = info.sample_rate == SAMPLE_RATE and info.channels == 1 and info.frames > 0
    return info.duration if usable else None


def utterance_audio(utt: "Utterance") -> np.ndarray:
    """The 16 kHz mono samples of one utterance (its segment of the recording, if it has one). A file at
    another rate (a user's decode set; training sets are refused at validation) is resampled, and said."""
    wave, rate = read_audio(utt.wav)
    wave = to_mono(wave)
    if utt.segment is not None:
        wave = wave[int(utt.segment.start * rate) : int(utt.segment.end * rate)]
    if rate != SAMPLE_RATE:
        log.info("%s: %d Hz audio, resampled to %d Hz", utt.wav, rate, SAMPLE_RATE)
        wave = resample(wave.astype(np.float32), rate, SAMPLE_RATE)
    return wave


def quietest_point(audio: np.ndarray, lo: int, hi: int, width: int) -> int:
    """The centre sample of the `width` samples of `audio[lo:hi]` with the least energy (`lo:hi` at
    least `width` long)."""
    energy = np.concatenate([[0.0], np.cumsum(audio[lo:hi].astype(np.float64) ** 2)])
    return lo + int(np.argmin(energy[width:] - energy[:-width])) + width // 2


def cut_points(audio: np.ndarray, max_seconds: float) -> List[int]:
    """Sample indices where a recording longer than `max_seconds` is cut: each at the quietest 100 ms
    of the last WINDOW_SEARCH_S seconds before the window's limit."""
    limit, hop, cuts, start = int(max_seconds * SAMPLE_RATE), SAMPLE_RATE // 10, [], 0
    while len(audio) - start > limit:
        lo = start + max(hop, limit - int(WINDOW_SEARCH_S * SAMPLE_RATE))
        start = quietest_point(audio, lo, start + limit, hop)
        cuts.append(start)
    return cuts
