"""Recognition engines behind one interface: decode one endpointed utterance.

* :class:`PocketSphinxEngine` (default, offline, English model bundled in the wheel):
  decodes each utterance twice, with the command grammar and with an open phone loop
  (allphone search). The difference of the two acoustic scores per frame is the
  likelihood ratio the decision uses: a command that was really said scores close to
  the unconstrained phone loop, other speech and noise score far below it.
* :class:`VoskEngine`: Kaldi via Vosk in grammar mode, with ``[unk]`` in the grammar
  as the garbage model, per-word confidences from Vosk.

Engines are created by :func:`make_engine` when a listener is built, never at import.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from .commands import CommandSet, normalise

log = logging.getLogger(__name__)

FRAME_RATE_HZ = 100  # PocketSphinx and Vosk features: 10 ms frames


@dataclass(frozen=True)
class WordSeg:
    word: str
    start_s: float  # relative to the utterance's first sample
    end_s: float
    confidence: float


@dataclass(frozen=True)
class Decoded:
    """What an engine heard in one utterance (pure data, input of decision.decide)."""

    text: str  # normalised grammar hypothesis ("" when nothing in grammar)
    words: tuple[WordSeg, ...] = ()
    grammar_score: float | None = None  # path score, log units (PocketSphinx logmath)
    open_score: float | None = None  # same for the open (phone-loop) decode
    n_frames: int = 0
    engine: str = ""
    word_confidence: float | None = None  # engine's own (Vosk), 0..1
    extra: dict = field(default_factory=dict)

    @property
    def lr_per_frame(self) -> float | None:
        """(grammar - open) log-likelihood per frame of speech; <= 0 in practice."""
        if self.grammar_score is None or self.open_score is None or self.n_frames <= 0:
            return None
        return (self.grammar_score - self.open_score) / self.n_frames


class Engine(Protocol):
    """begin/process/end decode while the user speaks; decode does a whole utterance."""

    name: str
    streaming: bool

    def reset(self) -> None: ...
    def begin(self) -> None: ...
    def process(self, samples: np.ndarray) -> None: ...
    def abort(self) -> None: ...
    def end(self) -> Decoded: ...
    def decode(self, samples: np.ndarray) -> Decoded: ...


class EngineError(RuntimeError):
    """An engine cannot be created (missing model, bad dictionary); names what is wrong."""


# ----------------------------------------------------------------------------- PocketSphinx

class PocketSphinxEngine:
    """PocketSphinx 5 with its bundled US-English acoustic model."""

    name = "pocketsphinx"

    def __init__(self, commands: CommandSet, open_model: bool = True, streaming: bool = True,
                 **decoder_args) -> None:
        try:
            import pocketsphinx as ps
        except ImportError as exc:
            raise EngineError(f"pocketsphinx is not installed: {exc}") from exc
        model = ps.get_model_path("en-us")
        self._hmm = os.path.join(model, "en-us")
        base = _read_cmudict(os.path.join(model, "cmudict-en-us.dict"), commands.words)
        prons: list[tuple[str, str]] = []
        for w in sorted(commands.words):
            variants = list(commands.pronunciations.get(w, ())) or base.get(w, [])
            if not variants:
                raise EngineError(f"word {w!r} of {commands.path} has no pronunciation in "
                                  f"cmudict or the command dictionary")
            prons += [(w, v) for v in variants]
        # A small dictionary of only the grammar's words: loads in milliseconds
        # instead of the full 130k-word cmudict.
        tmp = tempfile.TemporaryDirectory(prefix="speech-dict-")
        dict_path = Path(tmp.name) / "commands.dict"
        with open(dict_path, "w", encoding="utf-8") as f:
            seen: dict[str, int] = {}
            for w, ph in prons:
                seen[w] = seen.get(w, 0) + 1
                f.write(f"{w if seen[w] == 1 else f'{w}({seen[w]})'} {ph}\n")
        # PocketSphinx 5 runs one search at a time, so the grammar and the open phone
        # loop get a decoder each; both are fed the same frames while the user speaks.
        # Live CMN lets them decode as audio arrives (at the end of speech only the last
        # frames remain): the command is out ~hangover + a few ms after the last word.
        self.streaming = streaming
        args = dict(hmm=self._hmm, dict=str(dict_path), lm=None, loglevel="FATAL",
                    bestpath=False, cmn="live" if streaming else "batch")
        args.update(decoder_args)
        self._dec = ps.Decoder(**args)
        self._dec.add_jsgf_string("cmd", commands.jsgf())
        self._dec.activate_search("cmd")
        self._odec = None
        if open_model:
            self._odec = ps.Decoder(**args)
            self._odec.add_allphone_file("open", os.path.join(model, "en-us-phone.lm.bin"))
            self._odec.activate_search("open")
        # the decoders hold the dictionary in memory now: the file goes at once, so that a
        # process killed later (SIGKILL, no finaliser) leaves no folder behind
        tmp.cleanup()
        self._decoders = [d for d in (self._dec, self._odec) if d is not None]
        self._lmath = self._dec.get_logmath()
        self._cmn0 = self._dec.get_cmn()
        self._active = False

    def reset(self) -> None:
        """Forget the channel estimate (start of a new stream)."""
        for d in self._decoders:
            d.reinit_feat()
            d.set_cmn(self._cmn0)

    def begin(self) -> None:
        """Start an utterance (streaming)."""
        if self._active:
            self.abort()
        for d in self._decoders:
            if not self.streaming:
                # batch CMN: each utterance on its own, never the previous one's state
                d.reinit_feat()
            d.start_utt()
        self._active = True
        self._n = 0

    def process(self, samples: np.ndarray) -> None:
        raw = np.asarray(samples, np.int16).tobytes()
        self._n += len(samples)
        for d in self._decoders:
            d.process_raw(raw, False, False)

    def abort(self) -> None:
        """Drop the utterance in progress (too long, muted)."""
        if self._active:
            for d in self._decoders:
                d.end_utt()
            self._active = False

    def end(self) -> Decoded:
        for d in self._decoders:
            d.end_utt()
        self._active = False
        hyp = self._dec.hyp()
        n = self._dec.n_frames()
        if hyp is None or not hyp.hypstr:
            g = None if hyp is None else self._score(hyp)
            return Decoded("", (), g, None, n, self.name)
        words = []
        for s in self._dec.seg():
            if s.word.startswith(("(", "<", "[")):  # (NULL) transitions, <sil>, [NOISE]
                continue
            w = normalise(s.word)
            if not w:
                continue
            words.append(WordSeg(w, s.start_frame / FRAME_RATE_HZ,
                                 (s.end_frame + 1) / FRAME_RATE_HZ, float(s.prob)))
        o = None
        if self._odec is not None:
            ohyp = self._odec.hyp()
            if ohyp is not None:
                o = self._score(ohyp)
        return Decoded(normalise(hyp.hypstr), tuple(words), self._score(hyp), o, n, self.name)

    def _score(self, hyp) -> float:
        # The binding hands back exp(score); PocketSphinx path scores are renormalised
        # by the best senone score of each frame, so they are already relative to an
        # "any sound" model. Back to log units (logmath base 1.0001).
        return float(self._lmath.log(hyp.score))

    def decode(self, samples: np.ndarray) -> Decoded:
        """One whole utterance (not streaming)."""
        if not self.streaming:
            for d in self._decoders:
                d.reinit_feat()
                d.start_utt()
                d.process_raw(np.asarray(samples, np.int16).tobytes(), False, True)
            self._active = True
            return self.end()
        self.begin()
        self.process(samples)
        return self.end()


def _read_cmudict(path: str, wanted: set[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            head, _, phones = line.partition(" ")
            w = head.split("(")[0]
            if w in wanted:
                out.setdefault(w, []).append(phones.strip())
    return out


def cmudict_words() -> set[str]:
    """All words of PocketSphinx's bundled dictionary (for command-file validation)."""
    import pocketsphinx as ps
    out = set()
    with open(ps.get_model_path("en-us/cmudict-en-us.dict"), encoding="utf-8") as f:
        for line in f:
            out.add(line.split(" ", 1)[0].split("(")[0])
    return out


# ----------------------------------------------------------------------------- Vosk

def vosk_model_problem(model_dir: str) -> str | None:
    """Why ``model_dir`` cannot be loaded as a Vosk model (in words), or None."""
    if not model_dir:
        return "no model folder is set"
    p = Path(model_dir)
    if not p.exists():
        return f"{model_dir} does not exist"
    if not p.is_dir():
        return f"{model_dir} is not a folder"
    if not (p / "am").is_dir() and not (p / "final.mdl").exists():
        return f"{model_dir} does not look like a Vosk model (no am/ folder)"
    return None


class VoskEngine:
    """Vosk (Kaldi) in grammar mode. ``[unk]`` in the grammar absorbs other speech."""

    name = "vosk"

    def __init__(self, model_dir: str, phrases: list[str]) -> None:
        p = Path(model_dir)
        problem = vosk_model_problem(model_dir)
        if problem:
            raise EngineError(f"Vosk model: {problem} (fetch one with 'assistant models fetch "
                              f"vosk-en')")
        try:
            import vosk
        except ImportError as exc:
            raise EngineError(f"vosk is not installed: {exc}") from exc
        vosk.SetLogLevel(-1)
        self._vosk = vosk
        self._model = vosk.Model(str(p))
        # Only words the model knows may go into the grammar: Kaldi would drop them
        # silently (with a log line) and a phrase would become a different phrase.
        known = [ph for ph in phrases if all(self._model.vosk_model_find_word(w) >= 0 for w in ph.split())]
        self.missing = sorted(set(phrases) - set(known))
        if self.missing:
            log.warning("Vosk model %s lacks words of %d phrase(s), left out of the grammar: %s",
                        model_dir, len(self.missing), self.missing[:10])
        if not known:
            raise EngineError(f"none of the command phrases is in the vocabulary of the Vosk "
                              f"model {model_dir}")
        self.phrases = known
        # "[unk]" is the garbage word of models built with it (the small English ones);
        # others (e.g. the Korean PyPI model) lack it and get the bare grammar.
        self.has_unk = self._model.vosk_model_find_word("[unk]") >= 0
        # ensure_ascii=False: Vosk's JSON reader does not decode \u escapes, so
        # non-ASCII words would silently become out-of-vocabulary.
        self._grammar = json.dumps(known + (["[unk]"] if self.has_unk else []),
                                   ensure_ascii=False)

    streaming = True

    def reset(self) -> None:
        self._rec = None

    def begin(self) -> None:
        self._rec = self._vosk.KaldiRecognizer(self._model, 16000, self._grammar)
        self._rec.SetWords(True)
        self._n = 0

    def process(self, samples: np.ndarray) -> None:
        self._n += len(samples)
        self._rec.AcceptWaveform(np.asarray(samples, np.int16).tobytes())

    def abort(self) -> None:
        self._rec = None

    def decode(self, samples: np.ndarray) -> Decoded:
        self.begin()
        self.process(samples)
        return self.end()

    def end(self) -> Decoded:
        rec, self._rec = self._rec, None
        samples_n = self._n
        res = json.loads(rec.FinalResult())
        words = tuple(WordSeg(r["word"], float(r["start"]), float(r["end"]), float(r["conf"]))
                      for r in res.get("result", []))
        text = " ".join(w.word for w in words if w.word != "[unk]")
        has_unk = any(w.word == "[unk]" for w in words)
        conf = min((w.confidence for w in words), default=None)
        n = samples_n * FRAME_RATE_HZ // 16000
        # [unk] anywhere means the utterance was not (only) a command
        return Decoded("" if has_unk else text, words, None, None, n, self.name, conf,
                       {"raw_text": res.get("text", "")})


def make_engine(settings, commands: CommandSet) -> Engine:
    """The engine named in SpeechSettings; kws and Vosk fall back to PocketSphinx
    (logged) when their models are missing, so voice control still works offline."""
    if settings.engine == "kws":
        from .kws import KwsError, KwsRecognizer
        try:
            return KwsRecognizer(commands, getattr(settings, "kws_model", "") or None,
                                 none_scale=getattr(settings, "kws_none_scale", 1.0))
        except KwsError as exc:
            log.error("kws engine unavailable (%s); using PocketSphinx", exc)
            return PocketSphinxEngine(commands,
                                      streaming=getattr(settings, "decode_while_speaking", True))
    if settings.engine == "vosk":
        try:
            return VoskEngine(settings.vosk_model_dir,
                              sorted(set(commands.phrase_to_id) | set(commands.wake_phrases)
                                     | {f"{w} {p}" for w in commands.wake_phrases
                                        for p in commands.phrase_to_id}))
        except EngineError as exc:
            log.error("Vosk engine unavailable (%s); using PocketSphinx", exc)
    elif settings.engine != "pocketsphinx":
        raise EngineError(f"unknown speech engine {settings.engine!r}: use 'kws', 'pocketsphinx' or 'vosk'")
    return PocketSphinxEngine(commands, streaming=getattr(settings, "decode_while_speaking", True))
