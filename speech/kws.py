"""Neural command classifier: a small network over pre-trained speech embeddings.

Why: PocketSphinx's acoustic model gets only about two thirds of real single words
right even with no rejection at all (docs/SPEECH.md), and no better English model can
be installed here. Google's speech embedding model (trained on a very large amount of
speech; Apache-2.0, as re-implemented in ONNX by the openWakeWord project and shipped
in its PyPI wheel, ``openwakeword==0.5.1``) turns audio into 96-number vectors that
separate words well even for voices it never heard. A classifier trained here on
those vectors (synthetic eSpeak NG voices plus a few real recordings, see
``speech/train_kws.py``) recognises the command set and a "none of them" class.

Front end (fixed by the pre-trained models):

* log-mel spectrogram, 32 bands, 10 ms hop, 32 ms window (``melspectrogram.onnx``),
  scaled ``x / 10 + 2``; frame j covers samples ``[160 j, 160 j + 512)``;
* one embedding per 76 mel frames (760 ms), every 8 frames (80 ms)
  (``embedding_model.onnx``).

The classifier sees ``WINDOW`` consecutive embeddings (1.98 s of audio) ending just
after the end of speech, and answers P(class) for ``_none_``, ``_wake_`` (the wake
phrase) and every command id.

:class:`StreamEmbedder` computes embeddings while audio streams in, anchored at the
stream's first sample, so the same samples give the same embeddings whatever the chunk
sizes (replays are bit-identical); at the end of an utterance only the classifier runs.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SR = 16000
MEL_HOP = 160  # samples per mel frame
MEL_WIN = 512  # samples the first mel frame needs
EMB_FRAMES = 76  # mel frames per embedding
EMB_STEP = 8  # mel frames between embeddings (80 ms)
EMB_DIM = 96
WINDOW = 16  # embeddings the classifier sees
HOP_SAMPLES = MEL_HOP * EMB_STEP  # 1280: one embedding per 80 ms
NONE, WAKE = "_none_", "_wake_"

#: samples needed for n consecutive embeddings (the last ending at the last sample)
def samples_for(n_emb: int) -> int:
    return MEL_WIN + (EMB_FRAMES + (n_emb - 1) * EMB_STEP - 1) * MEL_HOP


WINDOW_SAMPLES = samples_for(WINDOW)  # 31712 = 1.98 s
# The mel model clamps its output to 80 dB below the loudest value of the whole input
# (top_db), so a frame's value depends on what it is computed with: mel frames are
# always computed in fixed blocks of 8 frames (block b: samples [1280 b, 1280 b + 1632)),
# in training, in tests and while streaming, so the same audio gives the same features.
BLOCK_SAMPLES = MEL_WIN + (EMB_STEP - 1) * MEL_HOP  # 1632
#: audio the classifier window needs, including the last mel block's 40 ms lookahead
WINDOW_AUDIO = HOP_SAMPLES * (WINDOW + 8) + BLOCK_SAMPLES  # 32352
DEFAULT_MODEL = Path(__file__).with_name("kws_en.npz")


class KwsError(RuntimeError):
    """The embedding models or the classifier cannot be loaded."""


def feature_model_dir() -> Path:
    """Folder of the openWakeWord feature models in the installed wheel (not imported:
    the package's own import pulls scikit-learn, which we do not need)."""
    spec = importlib.util.find_spec("openwakeword")
    if spec is None or not spec.submodule_search_locations:
        raise KwsError("the speech-embedding models come from the PyPI package "
                       "openwakeword==0.5.1, which is not installed: run "
                       "`pip install --no-deps openwakeword==0.5.1` (scripts/setup.sh does), "
                       "or set speech.engine: pocketsphinx")
    d = Path(list(spec.submodule_search_locations)[0]) / "resources" / "models"
    for f in ("melspectrogram.onnx", "embedding_model.onnx"):
        if not (d / f).is_file():
            raise KwsError(f"{d / f} is missing: openwakeword 0.5.1 ships it in its wheel; "
                           f"reinstall it")
    return d


class Embedder:
    """Audio (int16, 16 kHz) -> speech embeddings, one per 80 ms. Thread-confined."""

    def __init__(self, model_dir: str | Path | None = None, threads: int = 1) -> None:
        import onnxruntime as ort

        d = Path(model_dir) if model_dir else feature_model_dir()
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        prov = ["CPUExecutionProvider"]
        self._mel = ort.InferenceSession(str(d / "melspectrogram.onnx"), so, providers=prov)
        self._emb = ort.InferenceSession(str(d / "embedding_model.onnx"), so, providers=prov)
        self._mel_in = self._mel.get_inputs()[0].name
        self._emb_in = self._emb.get_inputs()[0].name

    def mel(self, x: np.ndarray) -> np.ndarray:
        """(n_frames, 32) scaled log-mel of int16 samples; n_frames =
        (len - 512) // 160 + 1 (none when shorter than 512 samples)."""
        if len(x) < MEL_WIN:
            return np.zeros((0, 32), np.float32)
        a = np.asarray(x, np.float32)[None, :]
        m = self._mel.run(None, {self._mel_in: a})[0]
        return (np.squeeze(m, axis=(0, 1)) / 10.0 + 2.0).astype(np.float32)

    def mel_blocks(self, x: np.ndarray) -> np.ndarray:
        """Mel frames of a clip computed in fixed blocks of 8 frames (see BLOCK_SAMPLES);
        8 * ((len - 1632) // 1280 + 1) frames."""
        nb = (len(x) - BLOCK_SAMPLES) // HOP_SAMPLES + 1
        if nb <= 0:
            return np.zeros((0, 32), np.float32)
        return np.concatenate([self.mel(x[HOP_SAMPLES * b: HOP_SAMPLES * b + BLOCK_SAMPLES])
                               for b in range(nb)])

    def embed_mel(self, mel: np.ndarray) -> np.ndarray:
        """(n, 96) embeddings of windows of 76 mel frames every 8 frames."""
        n = (len(mel) - EMB_FRAMES) // EMB_STEP + 1
        if n <= 0:
            return np.zeros((0, EMB_DIM), np.float32)
        idx = np.arange(EMB_FRAMES)[None, :] + EMB_STEP * np.arange(n)[:, None]
        w = mel[idx][..., None].astype(np.float32)
        return self._emb.run(None, {self._emb_in: w})[0].reshape(n, EMB_DIM)

    def embed(self, x: np.ndarray) -> np.ndarray:
        """Embeddings of a clip, the first window starting at its first sample (mel in
        fixed blocks, exactly as :class:`StreamEmbedder` computes them)."""
        return self.embed_mel(self.mel_blocks(x))


@dataclass
class KwsModel:
    """The classifier: normalised input, then two dense ReLU layers ("mlp") or two
    kernel-3 convolutions along time with max and mean pooling ("tcn"), softmax. Numpy only."""

    classes: tuple[str, ...]
    weights: list[tuple[np.ndarray, np.ndarray]]
    mean: np.ndarray
    std: np.ndarray
    meta: dict
    path: str = ""

    @classmethod
    def load(cls, path: str | Path | None = None) -> "KwsModel":
        p = Path(path) if path else DEFAULT_MODEL
        mp = p.with_suffix(".json")
        if not p.is_file() or not mp.is_file():
            raise KwsError(f"{p} (and its manifest {mp.name}) not found: train it with "
                           f"`python -m speech.train_kws` or set speech.engine: pocketsphinx")
        meta = json.loads(mp.read_text())
        digest = hashlib.sha256(p.read_bytes()).hexdigest()
        if meta.get("sha256") != digest:
            raise KwsError(f"{p}: sha256 {digest[:12]} does not match its manifest "
                           f"{mp.name} ({str(meta.get('sha256'))[:12]}); the weights changed")
        z = np.load(p)
        arch = str(z["arch"]) if "arch" in z.files else "mlp"
        if arch == "tcn":
            weights = [(z[f"cw{i}"].astype(np.float32), z[f"cb{i}"].astype(np.float32))
                       for i in range(2)] + [(z["w0"].astype(np.float32), z["b0"].astype(np.float32))]
        elif arch == "mlp":
            n = int(z["n_layers"])
            weights = [(z[f"w{i}"].astype(np.float32), z[f"b{i}"].astype(np.float32))
                       for i in range(n)]
        else:
            raise KwsError(f"{p}: unknown classifier arch {arch!r} (mlp or tcn)")
        meta = {**meta, "arch": arch}
        classes = tuple(meta["classes"])
        if weights[-1][0].shape[1] != len(classes):
            raise KwsError(f"{p}: {weights[-1][0].shape[1]} outputs for {len(classes)} classes")
        if int(meta.get("window", WINDOW)) != WINDOW:
            raise KwsError(f"{p}: trained on {meta.get('window')} embeddings, runtime uses {WINDOW}")
        return cls(classes, weights, z["mean"].astype(np.float32),
                   z["std"].astype(np.float32), meta, str(p))

    def probs(self, windows: np.ndarray) -> np.ndarray:
        """(n, WINDOW, 96) embeddings -> (n, n_classes) probabilities."""
        n = len(windows)
        h = np.asarray(windows, np.float32).reshape(n, -1)
        h = (h - self.mean) / self.std
        if self.meta.get("arch") == "tcn":
            h = h.reshape(n, WINDOW, -1)
            for w, b in self.weights[:2]:  # valid convolutions, kernel 3, along time
                t = h.shape[1] - 2
                cols = np.concatenate([h[:, k:k + t] for k in range(3)], axis=2)
                h = np.maximum(cols @ w + b, 0.0)
            h = np.concatenate([h.max(axis=1), h.mean(axis=1)], axis=1)
            w, b = self.weights[2]
            h = h @ w + b
        else:
            for i, (w, b) in enumerate(self.weights):
                h = h @ w + b
                if i < len(self.weights) - 1:
                    np.maximum(h, 0.0, out=h)
        h -= h.max(axis=1, keepdims=True)
        e = np.exp(h)
        return e / e.sum(axis=1, keepdims=True)


def rescale_none(p: np.ndarray, i_none: int, scale: float) -> np.ndarray:
    """Probabilities with P(none) multiplied by ``scale`` and renormalised (pure). The
    classifier was trained with "none" outnumbering each command; a scale below 1 shifts
    the choice towards the commands without retraining."""
    if scale == 1.0:
        return p
    q = np.array(p, dtype=np.float64)
    q[i_none] *= scale
    return q / q.sum()


class StreamEmbedder:
    """Embeddings of a stream as it arrives, one per 80 ms, anchored at sample 0.

    Embedding k covers stream samples ``[1280 k, 1280 k + 12512)``; it is kept with the
    stream time of its last sample. Only the last ``keep_s`` seconds are kept."""

    def __init__(self, embedder: Embedder, keep_s: float = 8.0) -> None:
        self.embedder = embedder
        self._keep = int(keep_s * SR / HOP_SAMPLES)
        self.reset()

    def reset(self) -> None:
        self._audio = np.zeros(0, np.int16)  # raw samples from absolute index _a0
        self._a0 = 0
        self._n = 0  # samples fed
        self._mel = np.zeros((0, 32), np.float32)  # mel frames from absolute index _m0
        self._m0 = 0
        self._emb: list[np.ndarray] = []  # embeddings from absolute index _e0
        self._e0 = 0

    @property
    def n_embeddings(self) -> int:
        return self._e0 + len(self._emb)

    @staticmethod
    def end_s(k: int) -> float:
        """Stream time of the last sample embedding k covers."""
        return (HOP_SAMPLES * k + samples_for(1)) / SR

    def feed(self, x: np.ndarray) -> None:
        self._audio = np.concatenate([self._audio, np.asarray(x, np.int16)])
        self._n += len(x)
        # complete mel blocks: block b needs samples up to 1280 b + 1632
        b0 = (self._m0 + len(self._mel)) // EMB_STEP
        b1 = (self._n - BLOCK_SAMPLES) // HOP_SAMPLES + 1 if self._n >= BLOCK_SAMPLES else 0
        if b1 > b0:
            new = []
            for b in range(b0, b1):
                a = HOP_SAMPLES * b - self._a0
                new.append(self.embedder.mel(self._audio[a: a + BLOCK_SAMPLES]))
            self._mel = np.concatenate([self._mel] + new)
            drop = HOP_SAMPLES * b1 - self._a0  # keep the audio the next blocks need
            self._audio = self._audio[drop:]
            self._a0 += drop
        # complete embeddings: embedding k needs mel frames [8k, 8k + 76)
        k0 = self.n_embeddings
        m_end = self._m0 + len(self._mel)
        k1 = (m_end - EMB_FRAMES) // EMB_STEP + 1 if m_end >= EMB_FRAMES else 0
        if k1 > k0:
            a = EMB_STEP * k0 - self._m0
            b = EMB_STEP * (k1 - 1) + EMB_FRAMES - self._m0
            e = self.embedder.embed_mel(self._mel[a:b])
            self._emb.extend(e)
            drop = EMB_STEP * k1 - self._m0
            self._mel = self._mel[drop:]
            self._m0 += drop
            if len(self._emb) > self._keep:
                cut = len(self._emb) - self._keep
                del self._emb[:cut]
                self._e0 += cut

    def window(self, k_last: int) -> np.ndarray | None:
        """The WINDOW embeddings ending with embedding ``k_last`` (None if not kept)."""
        a = k_last - WINDOW + 1
        if a < 0:  # the stream is younger than a window: pad with its first embedding
            if k_last < 0 or k_last >= self.n_embeddings or self._e0 > 0:
                return None
            e = np.stack(self._emb[: k_last + 1])
            return np.concatenate([np.repeat(e[:1], -a, axis=0), e])
        if a < self._e0 or k_last >= self.n_embeddings:
            return None
        return np.stack(self._emb[a - self._e0: k_last - self._e0 + 1])

    def last_index_ending_by(self, t_s: float) -> int:
        """Index of the last embedding whose audio ends at or before ``t_s``."""
        k = int(np.floor((t_s * SR - samples_for(1)) / HOP_SAMPLES))
        return min(k, self.n_embeddings - 1)


def window_features(embedder: Embedder, x: np.ndarray) -> np.ndarray:
    """(WINDOW, 96): the classifier window of a training clip of WINDOW_AUDIO samples
    whose window ends WINDOW_SAMPLES into it (the rest is the 40 ms the last mel block
    looks ahead, as in the stream)."""
    if len(x) != WINDOW_AUDIO:
        raise ValueError(f"window_features wants {WINDOW_AUDIO} samples, got {len(x)}")
    return embedder.embed(x)[:WINDOW]


@dataclass(frozen=True)
class KwsResult:
    """What the classifier heard in one utterance (pure data, input of decide_kws)."""

    probs: dict[str, float]  # class -> probability at the end of speech (top classes)
    top: str
    top_prob: float
    wake_prob: float  # best wake-phrase probability before the command
    speech_s: float  # endpointed speech duration
    n_windows: int  # classifier windows averaged at the end of speech
    wake_end_s: float | None = None  # media time at which the best wake window ends
    all_probs: dict[str, float] | None = None  # every class (diagnostics)


class KwsRecognizer:
    """The stateless part of the classifier engine (models), shared by listeners; the
    stream state lives in each listener's :class:`StreamEmbedder`."""

    name = "kws"
    classifier = True
    streaming = False

    def __init__(self, commands, model_path: str | Path | None = None,
                 threads: int = 1, none_scale: float = 1.0) -> None:
        if not 0.0 < none_scale <= 1.0:
            raise KwsError(f"speech.kws_none_scale must be in (0, 1], got {none_scale!r}")
        self.none_scale = float(none_scale)
        self.model = KwsModel.load(model_path)
        want = {NONE, WAKE} | set(commands.commands)
        have = set(self.model.classes)
        if want != have:
            missing, extra = sorted(want - have), sorted(have - want)
            raise KwsError(f"{self.model.path} was trained for other command ids "
                           f"(missing {missing}, unknown {extra}): retrain it with "
                           f"`python -m speech.train_kws --commands {commands.path}` or set "
                           f"speech.engine: pocketsphinx")
        self.embedder = Embedder(threads=threads)
        self._idx = {c: i for i, c in enumerate(self.model.classes)}

    def reset(self) -> None:  # Engine protocol: no per-stream state here
        pass

    def new_stream(self) -> StreamEmbedder:
        return StreamEmbedder(self.embedder)

    def classify(self, stream: StreamEmbedder, t0_s: float, speech_start_s: float,
                 speech_end_s: float, closed_at_s: float, wake_after_s: float | None = None,
                 end_pad_s: float = 0.24, end_from_s: float = 0.04, wake_gap_s: float = 0.15,
                 wake_lookback_s: float = 3.5) -> KwsResult:
        """Classify the utterance that ended at ``speech_end_s`` (media time; the stream
        began at media time ``t0_s``; the endpointer closed it at ``closed_at_s``):
        average over the windows ending ``end_from_s``-``end_pad_s`` after the end of
        speech (and not after the close, so the result does not depend on chunk sizes;
        a window ending sooner after the end misses the last sound: measured, see
        docs/SPEECH.md); the wake
        phrase is looked for in the stream's windows ending up to ``wake_lookback_s``
        before the end of speech (not before ``wake_after_s``, the end of the last
        command, nor before the stream began) to ``wake_gap_s`` before it: the
        endpointer often cuts "assistant, <pause> show fascia" in two, or in noise
        into several pieces, so the wake phrase need not be in this utterance."""
        s0, s1 = speech_start_s - t0_s, speech_end_s - t0_s
        # only embeddings whose audio (with the last mel block's 40 ms lookahead) was
        # in by the close: the same whatever the chunk sizes fed
        look = (WINDOW_AUDIO - WINDOW_SAMPLES) / SR
        k_hi = stream.last_index_ending_by(min(s1 + end_pad_s, closed_at_s - t0_s - look))
        ks = [k for k in range(k_hi, k_hi - 5, -1)
              if k >= 0 and stream.end_s(k) >= s1 + end_from_s]
        if not ks:  # the stream ended right at the end of speech
            ks = [k_hi] if k_hi >= 0 else []
        wins = [w for w in (stream.window(k) for k in ks) if w is not None]
        speech = round(s1 - s0, 3)
        if not wins:
            return KwsResult({}, NONE, 1.0, 0.0, speech, 0)
        p = rescale_none(self.model.probs(np.stack(wins)).mean(axis=0),
                         self._idx[NONE], self.none_scale)
        wake, wake_end = 0.0, None
        lo = s1 - wake_lookback_s
        if wake_after_s is not None:
            lo = max(lo, wake_after_s - t0_s)
        k_a = stream.last_index_ending_by(lo) + 1
        k_b = stream.last_index_ending_by(s1 - wake_gap_s)
        scan = [(k, w) for k, w in ((k, stream.window(k)) for k in range(max(0, k_a), k_b + 1))
                if w is not None]
        if scan:
            pw = self.model.probs(np.stack([w for _, w in scan]))[:, self._idx[WAKE]]
            best = int(pw.argmax())
            wake = float(pw[best])
            wake_end = t0_s + stream.end_s(scan[best][0])
        order = np.argsort(p)[::-1]
        top = self.model.classes[int(order[0])]
        probs = {self.model.classes[int(i)]: round(float(p[i]), 4) for i in order[:3]}
        return KwsResult(probs, top, float(p[order[0]]), wake, speech, len(wins), wake_end,
                         {c: round(float(v), 4) for c, v in zip(self.model.classes, p)})
