"""Degraded audio for robustness tests: telephone band, low-bitrate codecs, additive noise, room
reverberation and voice shift.

The adapters are trained on clean 16 kHz audio; these transforms build the test conditions that show how
far that carries (local/make_degraded.py writes one data dir per condition), and training can apply the
same ones on the fly. Each transform is a function of a 1-D 16 kHz waveform (a float numpy array, or a
CPU torch tensor, which `np.asarray` views without a copy) and, where it is random, of an explicit
`np.random.Generator`, so a caller decides what the randomness depends on. Every one returns float32
numpy samples of the input's length: a degraded utterance keeps its utt2dur and its transcript's
alignment, so it is scored like the clean one.

`apply_condition` draws a condition's parameters (noise kind, room, pitch shift) and applies it; the
parameters come back as `{file: value}` for the data dir's per-utterance lists (`utt2snr`, `utt2rt60`).
"""
import io
import re
import shutil
import subprocess
from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
from scipy.signal import butter, fftconvolve, sosfilt, sosfiltfilt

from espnet_ext.data.audio import SAMPLE_RATE, resample
from espnet_ext.errors import UserError

TELEPHONE_RATE = 8000
TELEPHONE_BAND = (300.0, 3400.0)  # Hz: the narrowband telephone channel (ITU-T G.712)
TELEPHONE_ORDER = 8  # per band edge; run forwards and backwards, so 16th order and no phase shift
CODEC_KBPS = {"mp3": 16, "opus": 12}  # low-bitrate streaming / VoIP; MP3 at 16 kHz is MPEG-2 Layer III
ENCODERS = {"mp3": ("libmp3lame", "mp3"), "opus": ("libopus", "ogg")}  # FFmpeg encoder, container
NOISE_KINDS = ("pink", "brown", "babble")
NOISE_EXPONENTS = {"pink": 1.0, "brown": 2.0}  # power spectrum ~ 1 / f^exponent
NOISE_FLOOR_HZ = 50.0  # coloured noise is flat below this: its power stays where speech is, not in rumble
BABBLE_TALKERS = 5
RT60_RANGE = (0.2, 0.8)  # seconds: a furnished office to a bare hall
ROOM_RANGE = ((3.0, 3.0, 2.5), (10.0, 8.0, 4.0))  # metres, smallest and largest shoebox
WALL_MARGIN = 0.5  # metres between the walls and the talker or the microphone
SOUND_SPEED = 343.0  # m/s
HIGH_PASS_HZ = 40.0  # the room response is high-passed here (_high_pass)
BISECTION_STEPS = 20  # reflection coefficient to within 1e-6
VOICE_SEMITONES = (2.0, 5.0)  # magnitude of the pitch shift, up or down
FIXED_CONDITIONS = ("tel", "mp3", "opus", "reverb", "voice")
DEFAULT_CONDITIONS = ("tel", "mp3", "opus", "snr20", "snr10", "snr5", "reverb", "voice")
SNR_CONDITION = re.compile(r"snr(-?\d+(?:\.\d+)?)")

Params = Dict[str, str]


class DegradeError(UserError, ValueError):
    """A condition that cannot be built here (unknown name, missing tool); the message says the fix."""


def degraded_name(clean: str, condition: str) -> str:
    """The name of `clean`'s copy under `condition` (the data dir local/make_degraded.py writes beside it)."""
    return f"{clean}_{condition}"


def split_condition(set_name: str) -> Tuple[str, Optional[str]]:
    """(clean set, condition) of a degraded copy's name; (set_name, None) for any other set."""
    clean, _, condition = set_name.rpartition("_")
    if clean and (condition in FIXED_CONDITIONS or SNR_CONDITION.fullmatch(condition)):
        return clean, condition
    return set_name, None


def condition_order(condition: str) -> Tuple[int, str]:
    """Sort key: DEFAULT_CONDITIONS in their order (mild to harsh within a kind), then the others by name."""
    return (DEFAULT_CONDITIONS.index(condition), "") if condition in DEFAULT_CONDITIONS else (len(DEFAULT_CONDITIONS),
                                                                                           condition)


def check_condition(name: str) -> None:
    """Refuse a condition name before any audio is written."""
    if name not in FIXED_CONDITIONS and not SNR_CONDITION.fullmatch(name):
        raise DegradeError(f"--conditions: unknown condition {name!r} (fix: choose from "
                           f"{' '.join(FIXED_CONDITIONS)} or snr<dB>, e.g. snr10)")


def fit_length(wave: np.ndarray, length: int) -> np.ndarray:
    """Crop or zero-pad to `length` samples: resampling and codecs may be a few samples off."""
    return np.pad(wave, (0, max(0, length - len(wave))))[:length].astype(np.float32)


def telephone_band(wave) -> np.ndarray:
    """A telephone channel: down to 8 kHz, band-pass 300-3400 Hz (zero phase), back up to 16 kHz."""
    wave = np.asarray(wave, dtype=np.float32)
    narrow = resample(wave, SAMPLE_RATE, TELEPHONE_RATE)
    sos = butter(TELEPHONE_ORDER, TELEPHONE_BAND, btype="bandpass", fs=TELEPHONE_RATE, output="sos")
    band = sosfiltfilt(sos, narrow).astype(np.float32)
    return fit_length(resample(band, TELEPHONE_RATE, SAMPLE_RATE), len(wave))


def codec(wave, name: str, kbps: Optional[int] = None) -> np.ndarray:
    """Encode with FFmpeg's MP3 or Opus encoder at a constant `kbps` (default CODEC_KBPS) and decode
    again, in memory. PyAV is used rather than libsndfile because it takes the bitrate in kbit/s,
    where libsndfile only offers a 0-1 quality scale. The decoders drop the encoder delay, so the
    output is aligned with the input."""
    import av  # imported here: training without codec conditions never needs it

    wave = np.asarray(wave, dtype=np.float32)
    encoder, container = ENCODERS[name]
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container) as out:
        stream = out.add_stream(encoder, rate=SAMPLE_RATE, layout="mono")
        stream.bit_rate = 1000 * (kbps or CODEC_KBPS[name])
        frame = av.AudioFrame.from_ndarray(wave[None, :], format="flt", layout="mono")
        frame.rate = SAMPLE_RATE
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    buffer.seek(0)
    with av.open(buffer) as inp:
        to_float = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        frames = [o for frame in inp.decode(audio=0) for o in to_float.resample(frame)] + to_float.resample(None)
    return fit_length(np.concatenate([f.to_ndarray()[0] for f in frames]), len(wave))


def power(wave) -> float:
    """Mean power, floored so that silence does not divide by zero; numpy or torch alike."""
    return max(float((wave ** 2).mean()), 1e-10)


def mix_at_snr(clean, noise, snr_db: float):
    """`clean + noise`, the noise scaled so the mixture is at `snr_db` exactly (measured over the whole
    utterance). Works on numpy arrays and torch tensors of the same length."""
    return clean + noise * (power(clean) / (power(noise) * 10 ** (snr_db / 10))) ** 0.5


def coloured_noise(length: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise whose power falls as 1/f^exponent (1: pink, 2: brown), shaped in the frequency
    domain; flat below NOISE_FLOOR_HZ. Unit power."""
    bins = length // 2 + 1
    spectrum = rng.standard_normal(bins) + 1j * rng.standard_normal(bins)
    freqs = np.fft.rfftfreq(length, 1 / SAMPLE_RATE)
    noise = np.fft.irfft(spectrum * np.maximum(freqs, NOISE_FLOOR_HZ) ** (-exponent / 2), length)
    return (noise / power(noise) ** 0.5).astype(np.float32)


def babble(talkers: Sequence[np.ndarray], length: int, rng: np.random.Generator) -> np.ndarray:
    """Several talkers at once: each at unit power, repeated to `length` and started at a random
    point, then summed. Unit power."""
    noise = sum(np.roll(np.resize(np.asarray(t, np.float32) / power(t) ** 0.5, length), rng.integers(length))
                for t in talkers)
    return (noise / power(noise) ** 0.5).astype(np.float32)


def draw_noise(length: int, rng: np.random.Generator, talkers: Sequence[np.ndarray] = ()) -> Tuple[np.ndarray, str]:
    """Pink, brown or (given other talkers' audio) babble noise, the kind drawn at random."""
    kinds = NOISE_KINDS if len(talkers) else NOISE_KINDS[:-1]
    kind = str(rng.choice(kinds))
    noise = babble(talkers, length, rng) if kind == "babble" else coloured_noise(length, NOISE_EXPONENTS[kind], rng)
    return noise, kind


@dataclass(frozen=True)
class Room:
    """A shoebox room (metres), talker and microphone positions in it, and its reverberation time."""

    size: Tuple[float, float, float]
    source: Tuple[float, float, float]
    mic: Tuple[float, float, float]
    rt60: float


def random_room(rng: np.random.Generator, rt60_range: Tuple[float, float] = RT60_RANGE) -> Room:
    """A room within ROOM_RANGE, talker and microphone anywhere WALL_MARGIN from the walls, and an
    RT60 drawn uniformly from `rt60_range`."""
    size = rng.uniform(*ROOM_RANGE)
    source, mic = (rng.uniform(WALL_MARGIN, size - WALL_MARGIN) for _ in range(2))
    return Room(tuple(size), tuple(source), tuple(mic), float(rng.uniform(*rt60_range)))


def _axis_images(source: float, mic: float, size: float, reach: float) -> Tuple[np.ndarray, np.ndarray]:
    """Along one axis, the image sources' offsets from the microphone and how many walls each
    reflects off: images at 2kL + s and 2kL - s, which reflect |2k| and |2k - 1| times."""
    most = int(np.ceil(reach / (2 * size))) + 1
    k = np.arange(-most, most + 1)
    offsets = np.concatenate([2 * k * size + source - mic, 2 * k * size - source - mic])
    return offsets, np.concatenate([np.abs(2 * k), np.abs(2 * k - 1)])


def _images(room: Room, length: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every image source heard within `length` samples of the direct sound (the image method of
    Allen & Berkley, 1979): its delay after the direct sound in samples, its 1/distance amplitude
    relative to the direct sound, and its number of wall reflections."""
    reach = SOUND_SPEED * length / SAMPLE_RATE + float(np.linalg.norm(np.subtract(room.source, room.mic)))
    (x, rx), (y, ry), (z, rz) = (_axis_images(s, m, l, reach) for s, m, l in zip(room.source, room.mic, room.size))
    distance = np.sqrt(x[:, None, None] ** 2 + y[None, :, None] ** 2 + z[None, None, :] ** 2)
    reflections = rx[:, None, None] + ry[None, :, None] + rz[None, None, :]
    direct = distance.min()
    heard = distance < direct + SOUND_SPEED * length / SAMPLE_RATE
    delay = (distance[heard] - direct) / SOUND_SPEED * SAMPLE_RATE
    return delay, direct / distance[heard], reflections[heard]


def decay_time(energy: np.ndarray) -> float:
    """RT60 in seconds from per-sample `energy`: a least-squares line through its Schroeder decay curve
    from -5 to -25 dB, extrapolated to -60 dB (T20 of ISO 3382). 0 when the curve has no such span."""
    curve = np.cumsum(energy[::-1])[::-1]
    level = 10 * np.log10(np.maximum(curve / curve[0], 1e-30))
    span = np.flatnonzero((level <= -5) & (level >= -25))
    if len(span) < 2:
        return 0.0
    slope = np.polyfit(span / SAMPLE_RATE, level[span], 1)[0]
    return -60 / slope if slope < 0 else np.inf


def _responses_by_reflections(delay: np.ndarray, gain: np.ndarray, reflections: np.ndarray,
                               length: int) -> np.ndarray:
    """The images' arrivals summed separately for each number of reflections, (reflections, length):
    with reflection coefficient b, the room's response is `b ** arange(rows) @ this`. Each arrival is
    split between the two nearest samples (linear fractional delay)."""
    whole = np.floor(delay).astype(int)
    frac = delay - whole
    rows = reflections.max() + 1
    index = reflections * (length + 1) + whole
    by_count = (np.bincount(index, gain * (1 - frac), minlength=rows * (length + 1))
                + np.bincount(index + 1, gain * frac, minlength=rows * (length + 1)))
    return by_count.reshape(rows, length + 1)[:, :length]


def _high_pass(response: np.ndarray) -> np.ndarray:
    """Remove what lies below HIGH_PASS_HZ: every image arrives with a positive sign, so the dense
    tail builds up a DC offset no real room has (Allen & Berkley filter it out the same way)."""
    return sosfilt(butter(2, HIGH_PASS_HZ, btype="highpass", fs=SAMPLE_RATE, output="sos"), response)


def room_impulse_response(room: Room) -> np.ndarray:
    """The room's impulse response from talker to microphone by the image method, starting at the
    direct sound (at about 1; the propagation delay is dropped so the output stays aligned) and
    lasting `room.rt60`, by when it has decayed 60 dB.

    The walls' reflection coefficient is found by bisection on the response's own measured decay, not
    from Sabine's or Eyring's formula: in a shoebox the image method's tail is dominated by the
    directions that reflect least, and with Eyring's coefficient it decayed 1.1 to 1.7 times slower
    than asked in random rooms of ROOM_RANGE."""
    length = int(room.rt60 * SAMPLE_RATE)
    by_count = _responses_by_reflections(*_images(room, length), length)
    counts = np.arange(len(by_count))
    low, high = 0.0, 1.0
    for _ in range(BISECTION_STEPS):
        beta = (low + high) / 2
        slower = decay_time(_high_pass(beta ** counts @ by_count) ** 2) > room.rt60
        low, high = (low, beta) if slower else (beta, high)
    return _high_pass(low ** counts @ by_count).astype(np.float32)


def reverberate(wave, response: np.ndarray) -> np.ndarray:
    """Convolve with a room response starting at the direct sound, keep the input's length (the tail
    past the end is cut, as Kaldi's wav-reverberate does) and its power."""
    wave = np.asarray(wave, dtype=np.float32)
    wet = fftconvolve(wave, response)[: len(wave)]
    return (wet * (power(wave) / power(wet)) ** 0.5).astype(np.float32)


def shift_voice(wave, semitones: float) -> np.ndarray:
    """Another voice: sox `pitch` moves the fundamental and the formants together by `semitones`
    (a WSOLA time stretch, then resampling back to the duration), as from a shorter or longer vocal tract; duration
    unchanged. sox has no effect that moves formants without the pitch, so the two shift as one."""
    if shutil.which("sox") is None:
        raise DegradeError("sox not found, needed for the voice condition (fix: apt-get install sox, or "
                           "leave voice out of --conditions)")
    wave = np.asarray(wave, dtype=np.float32)
    raw = ["-t", "f32", "-r", str(SAMPLE_RATE), "-c", "1"]
    done = subprocess.run(["sox", "-V1", "-D", *raw, "-", *raw, "-", "pitch", f"{100 * semitones:.1f}"],
                          input=wave.tobytes(), capture_output=True, check=True)
    return fit_length(np.frombuffer(done.stdout, dtype=np.float32), len(wave))


def apply_condition(name: str, wave, rng: np.random.Generator, talkers: Sequence[np.ndarray] = ()
                    ) -> Tuple[np.ndarray, Params]:
    """One condition (DEFAULT_CONDITIONS, or snr<dB> at any SNR) on a waveform, its parameters drawn
    from `rng`; `talkers` are other utterances, for babble noise. Returns the degraded samples and
    the parameters as `{per-utterance list file: value}`."""
    check_condition(name)
    wave = np.asarray(wave, dtype=np.float32)
    snr = SNR_CONDITION.fullmatch(name)
    if snr:
        noise, kind = draw_noise(len(wave), rng, talkers)
        return mix_at_snr(wave, noise, float(snr.group(1))).astype(np.float32), {"utt2snr": snr.group(1),
                                                                                 "utt2noise": kind}
    if name == "reverb":
        room = random_room(rng)
        return reverberate(wave, room_impulse_response(room)), {"utt2rt60": f"{room.rt60:.3f}"}
    if name == "voice":
        semitones = float(rng.uniform(*VOICE_SEMITONES) * rng.choice((-1, 1)))
        return shift_voice(wave, semitones), {"utt2semitones": f"{semitones:+.2f}"}
    return (telephone_band(wave), {}) if name == "tel" else (codec(wave, name), {})
