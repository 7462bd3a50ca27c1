"""Transcribing users' own recordings with a trained system: what `espnet-lora-transcribe` and the demo
page run. The base, the adapters and the LID head load once (`Transcriber`); every request then goes:

1. the file read (any format soundfile or PyAV reads), mixed to mono, resampled to 16 kHz;
2. recordings longer than the model's window (Whisper: 30 s) cut into windows at low-energy points
   (espnet_ext.data.audio.cut_points: the quietest 100 ms of the last 5 s before each limit);
3. per window, the language over time (espnet_ext.lid.segments: the frame tagger on one encoder pass
   where stage 4 trained one, `<exp>/lid/tagger`, else the routing head on 1 s sliding stretches, each
   encoded alone up to the LID tap), cut into segments by Viterbi decoding; neighbouring segments of
   one language across a window cut are joined;
4. each segment decoded alone with its language forced: its adapter, or the base model on its 30 s
   window for a LID-only language (English); the transcripts joined in time order.

Input the LID cannot judge is said so: silence (RMS below SILENCE_RMS) gives no segment and an empty
transcript; a segment whose confidence is below `min_confidence` (default: the threshold router's tau)
or shorter than MIN_LID_SECONDS is marked "unknown / low confidence" and still decoded
as hard routing decodes it (the top language's adapter; the routers' `min_confidence` fallback to the
base model is off by default, since the bare base is far worse on hi/pa/te).
"""
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from espnet_ext.data.audio import SAMPLE_RATE, cut_points, read_audio, resample, to_mono
from espnet_ext.decode.search import SearchConfig
from espnet_ext.decode.transcribe import make_backend, transcribe_batch
from espnet_ext.errors import UserError
from espnet_ext.lid.heads import CONFIG_NAME as LID_CONFIG, DEFAULT_HEAD, TaggerHead
from espnet_ext.lid.segments import (
    DEFAULT_MIN_SEGMENT_S, FRAMES_PER_SECOND, SAMPLES_PER_FRAME, FrameSegment, frames_in, is_tagger, language_track,
    snap_to_pauses, tap_encoder, track_settings, viterbi_segments,
)
from espnet_ext.routing.routers import DEFAULT_TAU

SILENCE_RMS = 1e-3  # below this RMS (full scale 1.0) a recording is silence
MIN_LID_SECONDS = 0.5  # shorter speech is too little for the LID to judge
UNKNOWN = "unknown / low confidence"
TIMELINE_STEP_S = 0.1  # FileResult.timeline's resolution (the track itself moves every HOP_SECONDS)


@dataclass
class SegmentResult:
    start: float  # seconds from the start of the file
    end: float
    lang: str
    confidence: float  # mean top posterior over the segment's frames
    low_confidence: bool
    text: str = ""


@dataclass
class FileResult:
    file: str
    duration: float
    posteriors: Dict[str, float]  # over the whole recording (the mean of the frames' posteriors)
    lang: str  # the language spoken longest, or "unknown / low confidence"
    routing: str  # what decoded it, in words
    segments: List[SegmentResult] = field(default_factory=list)
    text: str = ""
    # the language over time: every TIMELINE_STEP_S, the posteriors in `languages` order
    languages: List[str] = field(default_factory=list)
    timeline: List[List[float]] = field(default_factory=list)

    def as_dict(self) -> Dict:
        return asdict(self)


def load_user_audio(path) -> np.ndarray:
    """Mono 16 kHz float32 of any file read_audio decodes; AudioError (naming the file) otherwise."""
    wave, rate = read_audio(path)
    return resample(to_mono(wave).astype(np.float32), rate, SAMPLE_RATE)


def segment_head(exp_dir: Path) -> str:
    """The head under `exp_dir/lid/` that finds segments by default: the frame tagger if trained."""
    return TaggerHead.kind if (Path(exp_dir) / "lid" / TaggerHead.kind / LID_CONFIG).is_file() else DEFAULT_HEAD


class Transcriber:
    """A trained system loaded once: `exp_dir/adapters`, `exp_dir/lid/<head>` (default: `segment_head`),
    their base model. `switch_penalty` defaults to the one chosen on dev for the head's track."""

    def __init__(self, exp_dir: Path, head: Optional[str] = None, model_path: Optional[str] = None,
                 switch_penalty: Optional[float] = None, min_segment_s: float = DEFAULT_MIN_SEGMENT_S,
                 min_confidence: float = DEFAULT_TAU, search: Optional[SearchConfig] = None):
        from espnet_ext.bin.decode import load_adapters, load_lid_head
        from espnet_ext.lora.adapter_files import CONFIG_NAME, read_adapter_config
        from espnet_ext.lora.inject import adapter_names, route_for_tap
        from espnet_ext.models.registry import load_model

        exp_dir = Path(exp_dir)
        configs = sorted((exp_dir / "adapters").glob(f"*/{CONFIG_NAME}"))
        if not configs:
            raise UserError(f"{exp_dir}/adapters: no adapters there; give --exp the dir stage 3 trained "
                            "(e.g. exp/whisper_base_all_r16)")
        self.loaded = load_model(read_adapter_config(configs[0].parent)["base_model"], model_path=model_path)
        load_adapters(self.loaded, exp_dir / "adapters")
        self.head = load_lid_head(self.loaded, exp_dir / "lid" / (head or segment_head(exp_dir)))
        # who says how sure a segment's language is: the tagger, trained on in-set speech only, is as sure of
        # out-of-set speech (README, "Code-switched speech"), so the routing head judges its segments
        self.judge = load_lid_head(self.loaded, exp_dir / "lid" / DEFAULT_HEAD) if is_tagger(self.head) else None
        self.loaded.asr_model.eval()
        self._tap_state = lambda: route_for_tap(self.loaded.asr_model)
        self.encode_to_tap = tap_encoder(self.loaded, self.head.layer)
        self.backend = make_backend(self.loaded, pad_to_30s=False)
        self.base_backend = make_backend(self.loaded, pad_to_30s=True)
        self.window_s = self.loaded.family.window_samples / SAMPLE_RATE
        self.adapters = adapter_names(self.loaded.asr_model)
        self.settings = track_settings(self.head)
        self.switch_penalty = self.settings.switch_penalty if switch_penalty is None else switch_penalty
        self.min_confidence = min_confidence
        self.min_frames = frames_in(min_segment_s)
        self.search = search or SearchConfig()

    def language_track(self, audio: np.ndarray) -> torch.Tensor:
        """`[frames, languages]` posteriors of one window of the recording (espnet_ext.lid.segments)."""
        self._tap_state()
        return language_track(self.encode_to_tap, self.head, torch.from_numpy(audio))

    def confidence(self, track: torch.Tensor, audio: np.ndarray, seg: FrameSegment) -> float:
        """How sure the LID is of a segment's language: on the window track, the mean top posterior of its
        frames; on the tagger's, the routing head's posterior of that language on the segment encoded
        alone up to the tap."""
        if self.judge is None:
            return float(track[seg.start:seg.end].max(1).values.mean())
        piece = torch.from_numpy(audio[seg.start * SAMPLES_PER_FRAME:seg.end * SAMPLES_PER_FRAME])
        states = self.encode_to_tap(piece[None])
        posteriors = self.judge(states, torch.tensor([states.size(1)]))[0]
        return float(posteriors[list(self.judge.languages).index(self.head.languages[seg.lang])])

    def segments(self, audio: np.ndarray) -> Tuple[List[SegmentResult], torch.Tensor]:
        """The language segments of a whole recording (cut into windows first) and its frame posteriors."""
        bounds = [0] + cut_points(audio, self.window_s) + [len(audio)]
        found, tracks = [], []
        for lo, hi in zip(bounds, bounds[1:]):
            track = self.language_track(audio[lo:hi])
            tracks.append(track)
            offset = lo / SAMPLE_RATE
            path = viterbi_segments(track, self.switch_penalty, self.min_frames)
            for seg in snap_to_pauses(path, audio[lo:hi], self.settings.pause_reach_s):
                confidence = self.confidence(track, audio[lo:hi], seg)
                start = offset + seg.start / FRAMES_PER_SECOND
                end = min(hi / SAMPLE_RATE, offset + seg.end / FRAMES_PER_SECOND)
                found.append(SegmentResult(start, end, self.head.languages[seg.lang], confidence, False))
        joined: List[SegmentResult] = []
        for seg in found:  # the same language on both sides of a window cut is one segment
            if joined and joined[-1].lang == seg.lang:
                last = joined[-1]
                span = (last.end - last.start) + (seg.end - seg.start)
                last.confidence = ((last.end - last.start) * last.confidence + (seg.end - seg.start) * seg.confidence) / span
                last.end = seg.end
            else:
                joined.append(seg)
        joined[-1].end = len(audio) / SAMPLE_RATE
        for seg in joined:
            seg.low_confidence = seg.confidence < self.min_confidence or seg.end - seg.start < MIN_LID_SECONDS
        return joined, torch.cat(tracks)

    def transcribe(self, audio: np.ndarray, name: str = "<audio>") -> FileResult:
        duration = len(audio) / SAMPLE_RATE
        languages = list(self.head.languages)
        if len(audio) == 0 or float(np.sqrt(np.mean(audio.astype(np.float64) ** 2))) < SILENCE_RMS:
            return FileResult(name, duration, {lang: 0.0 for lang in languages}, UNKNOWN, "silence: nothing decoded",
                              languages=languages)
        segments, track = self.segments(audio)
        for seg in segments:  # a language without adapter: the base model on its 30 s window (decode_data_dir)
            backend = self.backend if seg.lang in self.adapters else self.base_backend
            piece = audio[round(seg.start * SAMPLE_RATE):round(seg.end * SAMPLE_RATE)]
            seg.text = transcribe_batch(backend, [piece], [seg.lang], self.search)[0].text
        texts = [seg.text for seg in segments]
        spoken = {}
        for seg in segments:
            spoken[seg.lang] = spoken.get(seg.lang, 0.0) + seg.end - seg.start
        lang = max(spoken, key=spoken.get)
        if all(seg.low_confidence for seg in segments):
            lang = UNKNOWN
        routing = ", ".join(f"{s.lang}: {'adapter ' + s.lang if s.lang in self.adapters else 'base model'}"
                            for s in segments)
        return FileResult(name, duration, dict(zip(languages, track.mean(0).tolist())), lang,
                          f"{self.head.kind} head on encoder layer {self.head.layer}, per segment ({routing})",
                          segments, " ".join(t for t in texts if t), languages,
                          [[round(p, 3) for p in row] for row in track[::round(TIMELINE_STEP_S * FRAMES_PER_SECOND)].tolist()])

    def transcribe_file(self, path) -> FileResult:
        return self.transcribe(load_user_audio(path), str(path))
