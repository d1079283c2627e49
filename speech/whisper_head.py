"""A single-word head on Whisper's encoder: which of the ten single-word commands (or
none of them) an utterance is, from Whisper tiny.en's encoder output alone.

Why: the command classifier (speech/kws.py) learnt from eSpeak voices and 20 real speakers
per word, and Whisper's phrase scores (speech/whisper.py) are read through thresholds; on
real speakers neither names more than 84 % of single words held out (docs/SPEECH.md). The
encoder was trained on 680,000 hours of real speech: its output, averaged and max-pooled
over the utterance, separates the ten words of real people well with a linear layer on
top. The head is that layer (11 x 768 weights, trained by ``python -m
speech.train_whisper_head``), run on the encoder output the phrase search computes anyway,
so it costs no extra encoder pass.

The same class loads the command head (``CMD_HEAD_FILE``: every command id, the wake
phrase said alone and "other", trained on synthetic voices by ``--kind commands``), whose
probabilities ``speech.decision.cmd_fuse`` reads for multi-word commands.

Pure numpy; the decisions made from the probabilities are in ``speech.decision``
(``head_check``, ``head_veto``, ``head_fuse``; ``cmd_fuse``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .moonshine import DIM as MOONSHINE_DIM

HERE = Path(__file__).resolve().parent
HEAD_FILE = HERE / "whisper_head_en.npz"
CMD_HEAD_FILE = HERE / "whisper_cmd_head_en.npz"  # every command (rule M)
# the single-word head over Whisper's and Moonshine tiny's pooled encoder outputs (rule MH2,
# an opt-in: speech.head_moonshine; speech/moonshine.py)
HEAD_MOON_FILE = HERE / "whisper_moon_head_en.npz"
OTHER = "_other_"
# what a head may read after Whisper's, and its width (Moonshine's pooled mean and max)
EXTRA_FEATURES = {"": 0, "moonshine": 2 * MOONSHINE_DIM}
WAKE = "_wake_"  # the command head's class for the wake phrase said alone


class HeadError(RuntimeError):
    """A head file that is missing or does not fit the encoder."""


def pool(enc: np.ndarray) -> np.ndarray:
    """(frames, d) encoder output -> (2 d,): the mean and the max over the frames."""
    e = np.asarray(enc, np.float32)
    if e.ndim == 3:
        e = e[0]
    if e.ndim != 2 or len(e) == 0:
        raise HeadError(f"pool(): wants a (frames, d) encoder output, got shape {e.shape}")
    return np.concatenate([e.mean(axis=0), e.max(axis=0)]).astype(np.float32)


@dataclass(frozen=True)
class HeadResult:
    command: str  # the most probable class: a single word, or OTHER
    prob: float  # its probability
    probs: dict  # every class's probability


class WhisperHead:
    """Softmax regression over pooled encoder features: ``probs(pooled)``."""

    def __init__(self, path: str | Path | None = None) -> None:
        p = Path(path) if path else HEAD_FILE
        if not p.exists():
            raise HeadError(f"{p}: no Whisper head file (train one: python -m "
                            f"speech.train_whisper_head)")
        try:
            z = np.load(p, allow_pickle=False)
            self.classes = [str(c) for c in z["classes"]]
            self.mu, self.sd = z["mu"].astype(np.float32), z["sd"].astype(np.float32)
            self.W, self.b = z["W"].astype(np.float32), z["b"].astype(np.float32)
            meta = json.loads(str(z["meta"])) if "meta" in z.files else {}
            if not isinstance(meta, dict):
                raise ValueError(f"its meta is {type(meta).__name__}, not a mapping")
        except (KeyError, ValueError, OSError) as e:
            raise HeadError(f"{p}: not a Whisper head file ({e})") from e
        if self.W.shape != (len(self.mu), len(self.classes)) or OTHER not in self.classes:
            raise HeadError(f"{p}: weights {self.W.shape} do not fit {len(self.mu)} features "
                            f"and classes {self.classes}")
        #: the features read after Whisper's pooled output: "" (none) or "moonshine"
        #: (speech/moonshine.py's pooled output; ``train_whisper_head --moonshine``)
        self.extra = str(meta.get("extra_features", ""))
        if self.extra not in EXTRA_FEATURES:
            raise HeadError(f"{p}: reads unknown features {self.extra!r} "
                            f"(known: {sorted(EXTRA_FEATURES)})")

    @property
    def dim(self) -> int:
        return len(self.mu)

    def logits(self, feats: np.ndarray) -> np.ndarray:
        f = np.asarray(feats, np.float32)
        if f.shape[-1] != self.dim:
            raise HeadError(f"head wants {self.dim} pooled features, got {f.shape[-1]}")
        return ((f - self.mu) / self.sd) @ self.W + self.b

    def __call__(self, pooled: np.ndarray) -> HeadResult:
        z = self.logits(pooled)
        z = z - z.max()
        p = np.exp(z)
        p /= p.sum()
        i = int(np.argmax(p))
        return HeadResult(self.classes[i], float(p[i]),
                          {c: round(float(v), 4) for c, v in zip(self.classes, p)})
