"""Language-ID features: an encoder's hidden states, mean-pooled over each utterance's valid frames.

The states come from the model family's one masked forward (espnet_ext.models.family), the pass
decoding runs, so a head trained on them sees at decoding time exactly what it was trained on; the
padding of a batch never reaches the pool.
"""
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from tqdm import tqdm

from espnet_ext.data.audio import pad_batch, utterance_audio
from espnet_ext.data.kaldi import read_data_dir
from espnet_ext.models.whisper_forward import frame_mask


def mean_pool(hidden: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """[batch, frames, width] -> [batch, width]: the mean over each row's first `lengths` frames."""
    mask = frame_mask(lengths.to(hidden.device), hidden.size(1)).to(hidden.dtype)[..., None]
    return (hidden * mask).sum(1) / mask.sum(1).clamp_min(1)


@dataclass
class PooledFeatures:
    """Pooled states of every encoder layer (0 = the input to block 1) for the utterances of a data dir."""

    utt_ids: List[str]
    langs: List[str]
    layers: Dict[int, np.ndarray]  # layer -> [utterances, width] float32


@torch.no_grad()
def pooled_layer_features(loaded, data_dir: Path, batch_size: int = 8, pad_to_30s: bool = False,
                          limit: Optional[int] = None) -> PooledFeatures:
    """Mean-pooled states after each encoder block of `loaded` (a registry model, in its current routing
    state) for `data_dir`; real length unless `pad_to_30s`. `limit`: the first utterances only."""
    utterances = sorted(read_data_dir(data_dir), key=lambda u: -u.duration)[:limit]
    device = next(loaded.asr_model.parameters()).device
    pooled: Dict[int, List[np.ndarray]] = {}
    for start in tqdm(range(0, len(utterances), batch_size), desc=f"LID features {Path(data_dir).name}", unit="batch"):
        batch = utterances[start : start + batch_size]
        speech, lengths = pad_batch([utterance_audio(u) for u in batch])
        out = loaded.family.encode(loaded.asr_model, speech.to(device), lengths.to(device), pad_to_30s, all_hidden=True)
        for layer, hidden in enumerate(out.hidden):
            pooled.setdefault(layer, []).append(mean_pool(hidden, out.lengths).float().cpu().numpy())
    return PooledFeatures([u.utt_id for u in utterances], [u.lang for u in utterances],
                          {layer: np.concatenate(parts) for layer, parts in pooled.items()})


def label_indices(langs: Sequence[str], languages: Sequence[str]) -> np.ndarray:
    """Class index of each utterance's language; an error naming a language the head does not know."""
    unknown = sorted(set(langs) - set(languages))
    if unknown:
        raise ValueError(f"utterances in {unknown}, which the LID head's classes {list(languages)} lack")
    return np.array([list(languages).index(lang) for lang in langs])
