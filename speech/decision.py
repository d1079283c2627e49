"""Accept or reject one decoded utterance: a pure function of what the engine heard,
the command set and the activation state. No audio, no engine, no clock.

Why each test exists (the baseline that skipped them acted on 80 % of non-command
words and on 19 % of silent clips):

* the hypothesis must be a *whole* phrase of the command set (PocketSphinx returns the
  best partial path when no grammar end state is reached);
* the wake phrase must be in the utterance unless activation says otherwise;
* the endpointed speech must be covered by the recognised words (else more was said);
* each command word must last like a spoken word;
* the calibrated confidence must reach ``min_confidence``: a logistic model of the
  likelihood ratio between the grammar path and the open phone-loop decode of the
  same audio (the garbage model: other speech and noise fit the grammar much worse
  than the phone loop), the weakest word's lattice posterior, the uncovered speech,
  the grammar score per frame and the duration, fitted on the tune split of
  benchmarks/speech_bench.py (benchmarks/speech_tune.py --fit).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from .commands import SINGLE_WORDS, CommandSet
from .engines import Decoded
from .whisper_head import OTHER, WAKE as HEAD_WAKE


#: Logistic model of P(the command is the one that was said) from the features of
#: confidence_features(), fitted by benchmarks/speech_tune.py --fit on the tune split
#: (real Speech Commands clips, synthetic multi-word commands, synthetic monologue and
#: real noise). Raw-feature weights; the standardisation is folded in.
CONFIDENCE_WEIGHTS = (0.0776, 11.88476, -0.47124, 0.0249, 2.46169, 1.5445, -0.05517, 1.678)
CONFIDENCE_BIAS = -11.87787


@dataclass(frozen=True)
class DecisionThresholds:
    # hard floors, below which nothing is a command whatever the other features say
    min_lr_per_frame: float = -40.0  # PocketSphinx log units per 10 ms frame
    # one-word utterances ("yes", "left") score differently from "assistant, show
    # fascia" (no well-matched wake phrase to lift the average)
    min_lr_per_frame_single_word: float = -40.0
    min_word_posterior: float = 0.5
    min_word_ms: int = 100
    min_word_in_speech_ms: int = 80  # of each command word, inside the endpointed speech
    max_uncovered_ms: int = 1000  # speech not covered by grammar words
    max_word_ms: int = 1500
    min_vosk_confidence: float = 0.7
    # the decision proper: calibrated confidence (see CONFIDENCE_WEIGHTS)
    min_confidence: float = 0.6
    # the neural classifier (speech/kws.py; decide_kws)
    min_kws_prob: float = 0.3
    min_kws_wake: float = 0.35
    max_command_ms: int = 2200  # a command alone is shorter: more speech is more words
    max_wake_ms: int = 1600  # extra speech allowed for the wake phrase before it
    # "say again": a rejected utterance after a wake phrase at least this probable
    # (kws) was a command asked for and not understood (unclear_after_wake)
    min_unclear_wake: float = 0.95
    # Whisper's check (speech/whisper.py; decide_whisper): its best phrase must be close to
    # what it would have written itself (regret, log units) and ahead of the best phrase of
    # any other command by a margin (log units)
    min_whisper_regret: float = -4.0
    min_whisper_margin: float = 3.0
    # the speech must not be much longer than the phrase Whisper found: at most this per
    # letter of it (wake phrase included) plus whisper_extra_s (else more was said)
    whisper_s_per_char: float = 0.12
    whisper_extra_s: float = 0.8
    # a command from Whisper alone without the wake phrase needs this much speech (always
    # listening cuts words out of talk: "go" of "I'll go and find")
    min_whisper_bare_s: float = 0.2
    # both accept, different commands: Whisper's is acted on when its regret and margin
    # reach these (None: neither is acted on, the speaker is asked again)
    whisper_override_regret: float | None = None
    whisper_override_margin: float = 4.0
    # the single-word head on Whisper's encoder (speech/whisper_head.py; head_check): its
    # word is acted on when its probability >= min_head_prob (None: the head is not
    # consulted) and Whisper's best phrase or the classifier's top class is the same word
    min_head_prob: float | None = 0.9
    # Whisper agrees only with a phrase at least this close to what it would have written
    min_head_agree_regret: float = -6.0
    # ... and acted on alone (neither other model names it) at this probability (None: never)
    min_head_prob_alone: float | None = None
    # the classifier's sure single word (Whisper not asked) is not acted on when the head
    # names something else with at least this probability (None: the head is not asked)
    min_head_veto: float | None = 0.7
    # rule V1 (whisper_single_veto): a single word about to be acted on with a probability
    # under whisper_skip_above, after Whisper's check ran, is not acted on (asked again) when
    # Whisper's best phrase names another command and the head another word
    whisper_single_veto: bool = False
    # rule V1w: the same, only for a word said after the wake phrase (the same utterance or
    # one said alone just before), never for a bare word in always listening
    whisper_single_veto_after_wake: bool = False
    whisper_skip_above: float = 0.7
    # the classifier and the head together (head_fuse): their log-probabilities over the
    # ten single words and "other", weighted fuse_weight (the classifier's) and 1 - that;
    # a word not otherwise accepted is acted on at min_fused_prob, an accepted single word
    # is refused when another class has min_fused_veto (None: that part is off)
    fuse_weight: float = 0.35
    min_fused_prob: float | None = 0.6
    min_fused_veto: float | None = 0.7
    # rule B2: rule F's veto (at min_fused_veto) also on a word the classifier accepted with
    # the wake phrase, where a bare word is not a command (wake activation, Whisper's check
    # ran); a rival single word at that bar is acted on instead of asking again
    fused_veto_in_wake: bool = True
    # rule WW: where Whisper's check decided "the wake phrase alone" and the command head gives
    # the wake phrase alone this much, an unsure command the classifier accepted is not acted
    # on: the utterance is held as a wake phrase said alone (None: off; on since 2026-12-08)
    min_wake_alone_heard: float | None = 0.9
    # the command head (rule M): the same over every command, for multi-word commands
    cmd_fuse_weight: float = 0.5
    min_cmd_fused_prob: float | None = 0.6
    min_cmd_fused_veto: float | None = 0.7
    min_cmd_fused_switch: float | None = 0.7
    min_cmd_head_alone: float | None = 0.97
    min_cmd_fused_unconfirmed: float | None = 0.3
    min_cmd_fused_agreed: float | None = 0.4
    min_cmd_head_unheard: float | None = 0.8
    # rule M7w: rule M7's act where Whisper's check refused needs the classifier's wake
    # phrase this sure (None: no such floor)
    min_wake_head_unheard: float | None = 0.95
    min_cmd_head_wake_alone: float | None = 0.6
    # rule M8: after a wake phrase said alone, the head alone at this (None: off; on since
    # 2026-12-07)
    min_cmd_head_joined: float | None = 0.6
    min_joined_speech_ms: int = 200  # rules M8, M7w: a multi-word command is no shorter
    # rule J3: after a wake phrase said alone, where nothing was acted on, the head on the
    # wake phrase and the follow-up together at this (None: off; on since 2026-12-07)
    min_cmd_head_joined_window: float | None = 0.8
    # rule J4: a rejected utterance the command head takes for the wake phrase (its _wake_
    # at min_soft_wake_head, the classifier's at min_soft_wake_classifier) is a soft wake
    # phrase; the head on it and the next utterance, where that is decided "not a command"
    # too, at min_cmd_head_soft_window (None: off)
    min_soft_wake_head: float | None = 0.99
    min_soft_wake_classifier: float = 0.05
    min_cmd_head_soft_window: float | None = 0.95
    # rule W: a command the classifier accepted in wake activation is not acted on when
    # Whisper's check heard no command and the wake phrase's probability is below this
    min_wake_unheard: float | None = 0.9
    # rule U: where the wake phrase is needed and its probability is below this, the command
    # head does not stand in for it: rule X does not act before Whisper's search (it is waited
    # for), and rule M does not act where Whisper's check heard no command (None: off)
    min_wake_cmd_head: float | None = None
    # rule V: a command the classifier is sure of skips Whisper's check only with the wake
    # phrase this sure where one is needed (listener; None: off)
    min_wake_sure: float | None = None
    # the neural voice model's highest speech probability in an utterance (speech/vad.py;
    # not_speech): below min_voice_prob it is not speech; below tail_voice_prob and starting
    # within tail_gap_ms of the previous utterance's end it is that utterance's tail (the
    # burst of "up", the "s" of "yes"). None: the rule is off
    min_voice_prob: float | None = 0.1
    tail_voice_prob: float | None = 0.2
    tail_gap_ms: int = 600
    confidence_weights: tuple[float, ...] = CONFIDENCE_WEIGHTS
    confidence_bias: float = CONFIDENCE_BIAS

    @classmethod
    def from_settings(cls, settings) -> "DecisionThresholds":
        """The thresholds a :class:`speech.settings.SpeechSettings` sets: every field of
        this class that the settings have under the same name (the confidence model's
        weights are fitted, not configured)."""
        return cls(**{f.name: getattr(settings, f.name) for f in dataclasses.fields(cls)
                      if hasattr(settings, f.name)})


@dataclass(frozen=True)
class Decision:
    kind: str  # "accept" | "reject" | "wake_only"
    command: str | None = None
    heard: str = ""
    confidence: float = 0.0
    reason: str = ""
    wake: bool = False
    lr_per_frame: float | None = None  # diagnostics: grammar vs open decode
    posterior: float | None = None
    grammar_per_frame: float | None = None  # diagnostics: grammar path score per speech frame
    uncovered_ms: float | None = None  # diagnostics: speech outside the grammar words
    wake_prob: float | None = None  # diagnostics (kws): the wake phrase's probability
    joined: bool = False  # diagnostics (kws): a wake phrase said alone came just before
    regret: float | None = None  # diagnostics (Whisper): the phrase's regret
    margin: float | None = None  # diagnostics (Whisper): log units ahead of another command


def said(commands: CommandSet, cid: str, wake: bool) -> str:
    """What a decision reports as heard for command ``cid``: its first phrase, after the
    wake phrase when one was heard (the classifiers know the command, not the synonym)."""
    return (f"{commands.wake_phrases[0]} " if wake else "") + commands.commands[cid].phrases[0]


def decide(dec: Decoded, commands: CommandSet, *, require_wake: bool,
           reply_open: bool = False, th: DecisionThresholds = DecisionThresholds(),
           speech_spans_s: list[tuple[float, float]] | None = None,
           joined: bool = False) -> Decision:
    """The decision for one utterance. ``require_wake``: activation is "wake" (in
    "always" and push-to-talk the wake phrase is optional). ``reply_open``: the assistant
    is waiting for an answer, so commands marked ``reply`` need no wake phrase.
    ``speech_spans_s``: where the endpointer found speech, relative to the utterance's
    first sample (two spans for a wake phrase joined with the command after a pause);
    speech the grammar words do not cover means other words were said. ``joined``: the
    wake phrase was said alone just before (it counts as this utterance's)."""
    if not dec.text:
        return Decision("reject", reason="nothing in the grammar")
    wake, rest = commands.strip_wake(dec.text)
    if wake and not rest:
        return Decision("wake_only", heard=dec.text, reason="wake phrase alone", wake=True)
    cid = commands.lookup(rest)
    if cid is None:
        return Decision("reject", heard=dec.text, reason=f"not a whole command: {rest!r}")
    if require_wake and not wake and not (reply_open and commands.commands[cid].reply):
        return Decision("reject", cid, dec.text, reason="no wake phrase")

    cmd_words = [w for w in dec.words if w.word]
    if wake:  # only the command part is judged for duration and posterior
        n_wake = len(dec.text.split()) - len(rest.split())
        cmd_words = cmd_words[n_wake:]
    spans = speech_spans_s or [(0.0, dec.n_frames / 100.0)]
    speech_s = sum(b - a for a, b in spans)
    covered = sum(max(0.0, min(w.end_s, b) - max(w.start_s, a))
                  for w in dec.words for a, b in spans)
    uncovered_ms = 1000.0 * max(0.0, speech_s - covered)
    if uncovered_ms > th.max_uncovered_ms:
        return Decision("reject", cid, dec.text,
                        reason=f"{uncovered_ms:.0f} ms of speech outside the command words",
                        wake=wake)
    for w in cmd_words:
        ms = 1000.0 * (w.end_s - w.start_s)
        if ms < th.min_word_ms or ms > th.max_word_ms:
            return Decision("reject", cid, dec.text,
                            reason=f"word {w.word!r} lasts {ms:.0f} ms, outside "
                                   f"{th.min_word_ms}-{th.max_word_ms} ms")
        # A command word must be heard, not fitted onto the silence after the speech:
        # "assistant" alone otherwise ends as "assistant off", the final t-burst and the
        # hangover taken for "off".
        inside = 1000.0 * sum(max(0.0, min(w.end_s, b) - max(w.start_s, a)) for a, b in spans)
        if inside < th.min_word_in_speech_ms:
            if wake:  # what was really said is the wake phrase alone: hold it
                return Decision("wake_only", None, dec.text, wake=True,
                                reason=f"wake phrase, then {w.word!r} outside the speech")
            return Decision("reject", cid, dec.text,
                            reason=f"word {w.word!r} has only {inside:.0f} ms inside the "
                                   f"endpointed speech")

    if dec.word_confidence is not None:  # Vosk: its own per-word confidence
        conf = dec.word_confidence
        if conf < th.min_vosk_confidence:
            return Decision("reject", cid, dec.text, conf, f"confidence {conf:.2f} too low")
        return Decision("accept", cid, dec.text, conf, "ok", wake)

    post = min((w.confidence for w in cmd_words), default=1.0)
    if post < th.min_word_posterior:
        return Decision("reject", cid, dec.text, post, f"word posterior {post:.2f} too low",
                        wake, None, post)
    lr = gpf = None
    nspeech = max(10.0, 100.0 * speech_s)
    if dec.grammar_score is not None:
        gpf = dec.grammar_score / nspeech
    if dec.grammar_score is not None and dec.open_score is not None:
        # per frame of speech, not of the whole utterance: leading/trailing silence
        # scores the same in both decodes and would dilute the ratio
        lr = (dec.grammar_score - dec.open_score) / nspeech
    if lr is None:
        return Decision("reject", cid, dec.text, reason="no open-model score to compare")
    lr_min = (th.min_lr_per_frame_single_word if len(dec.text.split()) == 1
              else th.min_lr_per_frame)
    conf = confidence(confidence_features(lr, post, uncovered_ms, gpf, speech_s,
                                          len(dec.text.split()), joined), th)
    if lr < lr_min:
        return Decision("reject", cid, dec.text, conf,
                        f"likelihood ratio {lr:.1f}/frame below {lr_min}",
                        wake, lr, post, gpf, uncovered_ms)
    if conf < th.min_confidence:
        return Decision("reject", cid, dec.text, conf,
                        f"confidence {conf:.2f} below {th.min_confidence}",
                        wake, lr, post, gpf, uncovered_ms)
    return Decision("accept", cid, dec.text, conf, "ok", wake, lr, post, gpf, uncovered_ms)


def decide_kws(r, commands: CommandSet, *, require_wake: bool, reply_open: bool = False,
               th: DecisionThresholds = DecisionThresholds(), joined: bool = False
               ) -> Decision:
    """The decision for one utterance heard by the neural classifier (a
    :class:`speech.kws.KwsResult`): the most probable class at the end of speech must be
    a command with probability >= ``min_kws_prob``; "none of the commands" and low
    probabilities are rejected; the wake phrase is required (activation "wake") unless
    it was said alone just before (``joined``) or a reply is awaited; an utterance much
    longer than a command is other talk."""
    d = _decide_kws(r, commands, require_wake=require_wake, reply_open=reply_open, th=th,
                    joined=joined)
    return dataclasses.replace(d, wake_prob=round(float(r.wake_prob), 4), joined=joined)


def _decide_kws(r, commands: CommandSet, *, require_wake: bool, reply_open: bool,
                th: DecisionThresholds, joined: bool) -> Decision:
    from .kws import NONE, WAKE  # no model loaded: names only

    diag = ", ".join(f"{c} {p:.2f}" for c, p in r.probs.items())
    wake = r.wake_prob >= th.min_kws_wake
    wp = commands.wake_phrases[0]
    if r.top == NONE:
        return Decision("reject", reason=f"not a command ({diag})", wake=wake,
                        posterior=r.top_prob)
    if r.top == WAKE:
        if r.top_prob >= th.min_kws_wake and r.speech_s * 1000 <= th.max_wake_ms:
            return Decision("wake_only", heard=wp, confidence=round(r.top_prob, 3),
                            reason="wake phrase alone", wake=True, posterior=r.top_prob)
        return Decision("reject", reason=f"unsure wake phrase ({diag})", posterior=r.top_prob)
    cid = r.top
    cmd = commands.commands[cid]
    heard = said(commands, cid, wake)
    conf = round(r.top_prob, 3)
    if r.top_prob < th.min_kws_prob:
        return Decision("reject", cid, heard, conf, f"{cid} only {r.top_prob:.2f} ({diag})",
                        wake, posterior=r.top_prob)
    if require_wake and not wake and not joined and not (reply_open and cmd.reply):
        return Decision("reject", cid, heard, conf,
                        f"no wake phrase (wake {r.wake_prob:.2f})", wake, posterior=r.top_prob)
    max_ms = th.max_command_ms + (th.max_wake_ms if wake else 0)
    if r.speech_s * 1000 > max_ms:
        return Decision("reject", cid, heard, conf,
                        f"{r.speech_s:.1f} s of speech, longer than a command: other talk",
                        wake, posterior=r.top_prob)
    return Decision("accept", cid, heard, conf, "ok", wake, posterior=r.top_prob)


def unclear_after_wake(d: Decision, speech_s: float, th: DecisionThresholds = DecisionThresholds(),
                       pedal: bool = False) -> bool:
    """True when ``d`` rejected a command that was asked for: the wake phrase was clearly
    heard (probability >= ``min_unclear_wake``; or the pedal was down, ``pedal``) and the
    utterance is no longer than a wake phrase and a command (longer is other talk), but
    what followed was not understood well enough to act on. The assistant then asks the
    speaker to say it again instead of staying silent (pure; the kws engine's decisions:
    PocketSphinx gives no wake probability)."""
    if d.kind != "reject" or speech_s * 1000 > th.max_command_ms + th.max_wake_ms:
        return False
    if d.reason.startswith("unsure wake phrase"):  # nothing was asked: a weak "assistant"
        return False
    return pedal or (d.wake_prob is not None and d.wake_prob >= th.min_unclear_wake)


def second_opinion(d: Decision, probs: dict, other: Decision, commands: CommandSet,
                   min_prob: float = 0.05) -> Decision | None:
    """The classifier's rejected decision ``d`` (a command asked for, not understood:
    :func:`unclear_after_wake`) overturned by a second engine's decision ``other`` on the
    same utterance, or None. Both must agree: ``other`` accepted a command that is among
    the classifier's top classes ``probs`` with probability >= ``min_prob``. The wake
    phrase was already heard clearly, so ``other`` is asked without it (pure)."""
    if d.kind != "reject" or other.kind != "accept" or other.command is None:
        return None
    p = float(probs.get(other.command, 0.0))
    if p < min_prob:
        return None
    # the words the second engine decoded (which synonym was said), else the command's name
    words = other.heard or commands.commands[other.command].phrases[0]
    wp = commands.wake_phrases[0]
    heard = words if any(words.startswith(w) for w in commands.wake_phrases) else f"{wp} {words}"
    return dataclasses.replace(
        d, kind="accept", command=other.command, heard=heard,
        confidence=round(min(p, other.confidence), 3), wake=True, posterior=p,
        reason=f"second opinion: {other.command} (classifier {p:.2f}, "
               f"pocketsphinx {other.confidence:.2f}; was: {d.reason})")


def vetoed(d: Decision, other: Decision) -> Decision | None:
    """The classifier's accepted decision ``d`` overruled because a second engine,
    on the same utterance, accepted a *different* command: then neither is acted on and
    the speaker is asked again (pure). None when the second engine agrees or heard no
    command (no opinion is not a veto)."""
    if d.kind != "accept" or other.kind != "accept" or other.command in (None, d.command):
        return None
    return dataclasses.replace(
        d, kind="reject",
        reason=f"vetoed: pocketsphinx heard {other.command} ({other.confidence:.2f}), "
               f"the classifier {d.command} ({d.confidence:.2f})")


def decide_whisper(w, commands: CommandSet, *, require_wake: bool, reply_open: bool = False,
                   th: DecisionThresholds = DecisionThresholds(), joined: bool = False,
                   speech_s: float | None = None) -> Decision:
    """Whisper's own decision on one utterance (a :class:`speech.whisper.WhisperResult`):
    its most probable phrase must be one Whisper would nearly have written itself (regret
    >= ``min_whisper_regret``: other words score far below Whisper's own first choices) and
    ahead of the best phrase of every other command by ``min_whisper_margin``; in ``wake``
    activation it must start with the wake phrase unless one was said alone just before
    (``joined``) or a reply is awaited; the ``speech_s`` seconds of speech must not be
    much longer than the phrase (``whisper_s_per_char`` a letter plus
    ``whisper_extra_s``). The wake phrase alone, more probable than any
    command and as close to what Whisper heard, is "wake_only". Confidence: the
    probability of the best command against the next one, exp(margin) / (1 + exp(margin)).
    Pure."""
    b = w.best
    wa = w.wake_alone
    if wa is not None and wa.regret >= th.min_whisper_regret and (b is None or wa.logp > b.logp):
        return Decision("wake_only", heard=normalise_heard(wa.text), reason="whisper: wake "
                        f"phrase alone (regret {wa.regret:.2f})", wake=True)
    if b is None:
        return Decision("reject", reason="whisper: no command phrase near what was said")
    margin = (b.logp - w.runner_up.logp) if w.runner_up is not None else float("inf")
    conf = round(1.0 / (1.0 + math.exp(-min(margin, 50.0))), 3)
    heard = normalise_heard(b.text)
    diag = (f"whisper: {b.command} regret {b.regret:.2f}, margin "
            + (f"{margin:.2f}" if margin != float("inf") else "inf")
            + (f" over {w.runner_up.command}" if w.runner_up is not None else ""))
    if b.regret < th.min_whisper_regret:
        return Decision("reject", b.command, heard, conf, f"{diag}: not what it heard",
                        b.wake, posterior=conf, regret=b.regret, margin=margin)
    if margin < th.min_whisper_margin:
        return Decision("reject", b.command, heard, conf, f"{diag}: too close", b.wake,
                        posterior=conf, regret=b.regret, margin=margin)
    letters = len(b.text.replace(" ", "").replace(",", "").replace(".", ""))
    if speech_s is not None and speech_s > th.whisper_extra_s + th.whisper_s_per_char * letters:
        return Decision("reject", b.command, heard, conf,
                        f"{diag}: {speech_s:.2f} s of speech, longer than the phrase",
                        b.wake, posterior=conf, regret=b.regret, margin=margin)
    cmd = commands.commands[b.command]
    if require_wake and not b.wake and not joined and not (reply_open and cmd.reply):
        return Decision("reject", b.command, heard, conf, f"{diag}: no wake phrase", False,
                        posterior=conf, regret=b.regret, margin=margin)
    return Decision("accept", b.command, heard, conf, diag, b.wake, posterior=conf,
                    regret=b.regret, margin=margin)


def normalise_heard(text: str) -> str:
    """Whisper's spelling of a phrase as the words a command file uses ("Assistant, Show
    fascia." -> "assistant show fascia"; digits stay digits)."""
    import re
    return " ".join(re.sub(r"[^\w' ]+", " ", text.lower()).split())


def whisper_check(d: Decision, wd: Decision, speech_s: float | None = None,
                  th: DecisionThresholds = DecisionThresholds(), *,
                  needs_wake: bool = False) -> tuple[Decision, bool]:
    """The classifier's decision ``d`` checked by Whisper's ``wd`` on the same utterance
    (pure). Returns (the decision to act on, whether the speaker is asked again):

    * the classifier rejected it and Whisper accepts a command: Whisper's, with a reason
      starting "whisper" (the path is said in ``Heard.via``); without the wake phrase only
      with ``min_whisper_bare_s`` of speech (``speech_s``) or more;
    * both accept different commands: Whisper's when its regret >= ``whisper_override_regret``
      and its margin >= ``whisper_override_margin`` (None: never); else neither is acted
      on and the speaker is asked again;
    * the classifier rejected it and Whisper heard the wake phrase alone: held for the
      command after a pause, as the classifier's own "wake_only";
    * the classifier accepted a command whose wake phrase it was unsure of (``wake_prob``
      below ``min_wake_unheard``) where one is needed (``needs_wake``: wake activation, no
      wake phrase said alone just before, no reply awaited) and Whisper heard no command:
      not acted on, and not asked again (talk that happens to hold a command word; rule W);
    * otherwise the classifier's decision stands (Whisper agrees, or has no opinion)."""
    if (wd.kind == "reject" and d.kind == "accept" and needs_wake
            and th.min_wake_unheard is not None and d.wake_prob is not None
            and d.wake_prob < th.min_wake_unheard):
        return dataclasses.replace(
            d, kind="reject", reason=f"wake phrase unsure ({d.wake_prob:.2f}) and Whisper "
                                     f"heard no command ({wd.reason})"), False
    if wd.kind == "wake_only" and d.kind == "reject":
        return dataclasses.replace(wd, wake_prob=d.wake_prob), False
    if wd.kind != "accept":
        return d, False
    if d.kind == "accept":
        if wd.command == d.command:
            return d, False
        if (th.whisper_override_regret is not None and wd.regret is not None
                and wd.regret >= th.whisper_override_regret
                and (wd.margin or 0.0) >= th.whisper_override_margin):
            return dataclasses.replace(
                wd, reason=f"{wd.reason}, over the classifier's {d.command} "
                           f"({d.confidence:.2f})", joined=d.joined, wake_prob=d.wake_prob), False
        return dataclasses.replace(
            d, kind="reject",
            reason=f"whisper heard {wd.command} ({wd.confidence:.2f}), the classifier "
                   f"{d.command} ({d.confidence:.2f}): say again"), True
    if not wd.wake and speech_s is not None and speech_s < th.min_whisper_bare_s:
        return d, False  # a word cut out of talk, as often as a command said alone
    return dataclasses.replace(wd, reason=f"{wd.reason} (classifier: {d.reason})",
                               joined=d.joined, wake_prob=d.wake_prob), False


def wake_alone_heard(d: Decision, wd: Decision, cmd_probs: dict | None,
                     th: DecisionThresholds = DecisionThresholds()) -> Decision | None:
    """Rule WW (pure): the classifier's accepted command ``d``, which Whisper's check was asked
    about (the classifier unsure), where Whisper's own decision ``wd`` is the wake phrase said
    alone and the command head (``cmd_probs``, on the same encoder output) gives the wake
    phrase alone ``min_wake_alone_heard`` or more: both models on Whisper's encoder hear
    "assistant" and nothing after it, so the command is not acted on and the utterance is held
    as a wake phrase said alone (Whisper's decision), for a command that follows. None: ``d``
    stands (the rule off, or not such a decision)."""
    if (th.min_wake_alone_heard is None or d.kind != "accept" or wd.kind != "wake_only"
            or not cmd_probs or cmd_probs.get(HEAD_WAKE, 0.0) < th.min_wake_alone_heard):
        return None
    return dataclasses.replace(
        wd, wake_prob=d.wake_prob, joined=d.joined,
        reason=f"{wd.reason}; the command head too ({cmd_probs[HEAD_WAKE]:.2f}): not "
               f"{d.command} ({d.confidence:.2f})")


def head_check(d: Decision, classifier_top: str | None, whisper_best: str | None, head,
               *, bare_ok: bool, speech_s: float, whisper_regret: float | None = None,
               th: DecisionThresholds = DecisionThresholds()) -> Decision | None:
    """The single-word head's word in place of the decision ``d`` (pure), or None (``d``
    stands). The head (a :class:`speech.whisper_head.HeadResult`) names one of the ten
    single-word commands with probability >= ``min_head_prob``, and one of the two other
    models names the same word as its first choice, whatever its own threshold made of it
    (``classifier_top``: the classifier's most probable class; ``whisper_best``: the command
    of Whisper's most probable phrase, whose ``whisper_regret`` must be >=
    ``min_head_agree_regret``), or alone with probability >= ``min_head_prob_alone``
    (None: never). Only where a bare word is a command here
    (``bare_ok``: always listening, the pedal, a wake phrase said just before or an
    awaited reply) and with ``min_whisper_bare_s`` of speech or more (always listening
    cuts words out of talk). A decision already on that word stands."""
    if (th.min_head_prob is None or head is None or not bare_ok or head.command == OTHER
            or head.prob < th.min_head_prob or speech_s < th.min_whisper_bare_s):
        return None
    w = head.command
    if d.kind == "accept" and d.command == w:
        return None
    if whisper_regret is None or whisper_regret < th.min_head_agree_regret:
        whisper_best = None  # Whisper only found it far from what it heard
    by = [n for n, c in (("classifier", classifier_top), ("whisper", whisper_best)) if c == w]
    if not by and (th.min_head_prob_alone is None or head.prob < th.min_head_prob_alone):
        return None
    was = f"{d.kind} {d.command}" if d.command else d.kind
    as_ = f"as the {' and '.join(by)}" if by else "alone"
    return dataclasses.replace(
        d, kind="accept", command=w, heard=w, confidence=round(head.prob, 3),
        reason=f"head: {w} {head.prob:.3f}, {as_} (was {was})",
        wake=False, posterior=head.prob)


def whisper_single_veto(d: Decision, whisper_best: str | None, head_word: str | None,
                        th: DecisionThresholds = DecisionThresholds()) -> Decision | None:
    """Rule V1 (pure): the single word ``d`` about to be acted on, where Whisper's check ran,
    refused, or None (``d`` stands). Only a single-word command accepted with probability
    under ``whisper_skip_above`` (the band where Whisper is asked), when Whisper's best phrase
    names another command (``whisper_best``, whether or not Whisper accepted it) and the
    single-word head's word (``head_word``) is not the command: neither of the two models on
    Whisper's encoder backs it. The caller asks the speaker again. Rule V1w
    (``whisper_single_veto_after_wake``) does the same only for a word said after the wake
    phrase (``d.wake``: in its utterance; ``d.joined``: said alone just before)."""
    on = th.whisper_single_veto or (th.whisper_single_veto_after_wake and (d.wake or d.joined))
    if (not on or d.kind != "accept" or d.command not in SINGLE_WORDS
            or (d.posterior or 0.0) >= th.whisper_skip_above or whisper_best is None
            or whisper_best == d.command or head_word == d.command):
        return None
    return dataclasses.replace(
        d, kind="reject",
        reason=f"{d.command} ({d.posterior or 0.0:.2f}) backed by neither Whisper "
               f"({whisper_best}) nor the head ({head_word}): say again")


def head_veto(d: Decision, head, *, bare_ok: bool,
              th: DecisionThresholds = DecisionThresholds()) -> tuple[Decision, bool] | None:
    """The classifier's sure acceptance ``d`` of a single word refused by the single-word
    head (pure), or None (``d`` stands): where a bare word is a command here, the head's
    class is not ``d``'s command and its probability is >= ``min_head_veto``. Returns
    (the rejection, whether to ask again): another word is a command misheard (ask
    again), "other" is talk or noise (silence)."""
    if (th.min_head_veto is None or head is None or not bare_ok or d.kind != "accept"
            or head.command == d.command or head.prob < th.min_head_veto):
        return None
    heard = "something else" if head.command == OTHER else head.command
    return (dataclasses.replace(d, kind="reject", reason=f"head heard {heard} "
                                f"({head.prob:.2f}), the classifier {d.command} "
                                f"({d.confidence:.2f})"), head.command != OTHER)


def _log_pool(pc: list, ph: list, weight: float) -> list:
    """softmax(weight x log pc + (1 - weight) x log ph), each probability floored at 1e-4."""
    z = [weight * math.log(max(a, 1e-4)) + (1.0 - weight) * math.log(max(b, 1e-4))
         for a, b in zip(pc, ph)]
    m = max(z)
    e = [math.exp(v - m) for v in z]
    t = sum(e)
    return [v / t for v in e]


def fused_probs(clf_words: dict, head_probs: dict, weight: float) -> dict:
    """The classifier's and the head's probabilities over the single words and "other"
    combined (pure): softmax of ``weight`` x log p_classifier + (1 - weight) x log p_head.
    The classifier's "other" is everything that is not one of the words (its no-command
    class, the wake phrase, the other commands); each probability is floored at 1e-4."""
    words = [w for w in head_probs if w != OTHER]
    pc = [clf_words.get(w, 0.0) for w in words]
    pc.append(1.0 - sum(pc))
    ph = [head_probs[w] for w in words] + [head_probs.get(OTHER, 0.0)]
    return dict(zip(words + [OTHER], _log_pool(pc, ph, weight)))


def _fused_first(clf_words: dict, head, th: DecisionThresholds) -> tuple[str, float]:
    """Rule F's first class and its probability: the classifier and the head fused."""
    f = fused_probs(clf_words, head.probs, th.fuse_weight)
    top = max(f, key=f.get)
    return top, f[top]


def head_fuse(d: Decision, clf_words: dict | None, head, *, bare_ok: bool, speech_s: float,
              th: DecisionThresholds = DecisionThresholds()
              ) -> tuple[Decision, bool] | None:
    """The last word on a single-word utterance (pure), or None (``d`` stands): where a bare
    word is a command here and the head ran, the fused probabilities (fused_probs) act on
    a word ``d`` did not accept (>= ``min_fused_prob``, with ``min_whisper_bare_s`` of
    speech, to the millisecond: endpoints lie on a 10 ms grid), or refuse a single word
    ``d`` accepted when another class is >= ``min_fused_veto``. Returns (decision, whether
    to ask again)."""
    if head is None or not clf_words or not bare_ok:
        return None
    top, p = _fused_first(clf_words, head, th)
    if (d.kind != "accept" and th.min_fused_prob is not None and top != OTHER
            and p >= th.min_fused_prob and round(speech_s, 3) >= th.min_whisper_bare_s):
        return (Decision("accept", command=top, heard=top, confidence=round(p, 3),
                         reason=f"fused: {top} {p:.2f} (head {head.command} {head.prob:.2f}, "
                                f"classifier {clf_words.get(top, 0.0):.2f}; was {d.kind})",
                         wake=d.wake, posterior=d.posterior, wake_prob=d.wake_prob,
                         joined=d.joined), False)
    if (d.kind == "accept" and d.command in SINGLE_WORDS and th.min_fused_veto is not None
            and top != d.command and p >= th.min_fused_veto):
        heard = "something else" if top == OTHER else top
        return (dataclasses.replace(d, kind="reject", reason=f"fused: {heard} {p:.2f}, not "
                                    f"{d.command}"), top != OTHER)
    return None


def head_fuse_in_wake(d: Decision, clf_words: dict | None, head, commands: CommandSet, *,
                      bare_ok: bool, th: DecisionThresholds = DecisionThresholds()
                      ) -> Decision | None:
    """Rule B2 (pure): the single word ``d`` accepted with the wake phrase (``d.wake``: the
    classifier found "assistant" in the utterance or in the stream just before it) where a
    bare word is not a command (``bare_ok`` false: wake activation, no wake phrase said alone
    just before, no reply awaited), and the single-word head ran on the utterance (Whisper's
    check did), judged as rule F judges a bare word, with rule F's weight and veto bar: when
    the fused probabilities (fused_probs) give another class ``min_fused_veto`` or more,
    "other" refuses the word (nothing is said: talk or noise), another single word is acted
    on instead. None: ``d`` stands (the rule off, not such a decision, or the fused first is
    ``d``'s word or under the bar)."""
    if (not th.fused_veto_in_wake or th.min_fused_veto is None or head is None
            or not clf_words or bare_ok or not d.wake or d.kind != "accept"
            or d.command not in SINGLE_WORDS):
        return None
    top, p = _fused_first(clf_words, head, th)
    if top == d.command or p < th.min_fused_veto:
        return None
    if top == OTHER:
        return dataclasses.replace(d, kind="reject", reason=f"fused after the wake phrase: "
                                   f"something else {p:.2f}, not {d.command}")
    return dataclasses.replace(d, command=top, heard=said(commands, top, True),
                               confidence=round(p, 3),
                               reason=f"fused after the wake phrase: {top} {p:.2f}, not "
                                      f"{d.command} (acted on instead)")


def cmd_fused_probs(clf_all: dict, head_probs: dict, weight: float) -> dict:
    """The classifier's and the command head's probabilities over every command and "none"
    combined (pure), as fused_probs over the single words: softmax of ``weight`` x log
    p_classifier + (1 - weight) x log p_head. Each model's "none" is everything that is not
    a command (the classifier's no-command class and wake phrase; the head's wake phrase
    and "other"); each probability is floored at 1e-4."""
    cmds = [c for c in head_probs if c not in (OTHER, HEAD_WAKE)]
    pc = [clf_all.get(c, 0.0) for c in cmds]
    pc.append(max(0.0, 1.0 - sum(pc)))
    ph = [head_probs[c] for c in cmds]
    ph.append(head_probs.get(OTHER, 0.0) + head_probs.get(HEAD_WAKE, 0.0))
    return dict(zip(cmds + [OTHER], _log_pool(pc, ph, weight)))


def cmd_fuse(d: Decision, clf_all: dict | None, head_probs: dict | None, commands: CommandSet,
             *, addressed: bool, th: DecisionThresholds = DecisionThresholds(),
             unconfirmed: bool = False, whisper_says: str | None = None,
             whisper_kind: str | None = None, needs_wake: bool = False,
             joined: bool = False, speech_s: float | None = None
             ) -> tuple[Decision, bool] | None:
    """The last word on a multi-word command (pure), or None (``d`` stands): the classifier's
    and the command head's probabilities fused (cmd_fused_probs) act on a multi-word
    command ``d`` did not accept, when it is >= ``min_cmd_fused_prob`` and the utterance
    was ``addressed`` (the wake phrase heard, or said alone just before, or no wake phrase
    needed), or refuse a multi-word command ``d`` accepted when another command reaches
    ``min_cmd_fused_veto`` (ask again), or act on that other command instead when it
    reaches ``min_cmd_fused_switch`` too (and is a multi-word command). Where the fused
    probability falls short, the head alone acts at ``min_cmd_head_alone``. Single words
    are the single-word head's (head_fuse), except (rule M5) where Whisper's check ran and
    did not accept ``d`` (``unconfirmed``): then any accepted command, a single word too,
    gives way to a multi-word command other than it at ``min_cmd_fused_unconfirmed``; and
    (rule M6) a multi-word command Whisper's own decision accepted (``whisper_says``) is
    acted on, where nothing was, at ``min_cmd_fused_agreed`` when it is the fused first too;
    and, where nothing was acted on and Whisper's check heard no command (``whisper_kind``,
    its decision's kind: "reject", or "wake_only" for the wake phrase alone), the head alone
    acts at ``min_cmd_head_unheard`` (rule M7; where Whisper refused, only with the wake
    phrase's probability >= ``min_wake_head_unheard`` in speech of ``min_joined_speech_ms``
    or more, rule M7w), or, where Whisper heard the wake phrase alone, at
    ``min_cmd_head_wake_alone`` (rule M7b), or, in an utterance that follows a
    wake phrase said alone (``joined``) and whose speech lasts ``speech_s`` >=
    ``min_joined_speech_ms``, at ``min_cmd_head_joined`` (rule M8). Where the wake phrase
    is needed (``needs_wake``) and below ``min_wake_cmd_head`` and Whisper's check heard no
    command, nothing is acted on (rule U). Returns (decision, whether to ask again)."""
    if head_probs is None or not clf_all:
        return None
    single = d.kind == "accept" and d.command in SINGLE_WORDS
    m5 = d.kind == "accept" and unconfirmed and th.min_cmd_fused_unconfirmed is not None
    if single and not m5:
        return None
    top, p, top_multi = _fused_top(clf_all, head_probs, commands, th)
    if m5 and top_multi and top != d.command and p >= th.min_cmd_fused_unconfirmed:
        return (dataclasses.replace(d, command=top, heard=said(commands, top, d.wake),
                                    confidence=round(p, 3),
                                    reason=f"cmdfused: {top} {p:.2f}, not {d.command} (which "
                                           f"Whisper did not confirm)"), False)
    if single:
        return None
    act = None
    if d.kind != "accept" and addressed and not (
            whisper_kind == "reject" and needs_wake and wake_below(d, th.min_wake_cmd_head)):
        h = max(head_probs, key=head_probs.get)
        if th.min_cmd_fused_prob is not None and top_multi and p >= th.min_cmd_fused_prob:
            act = top, p, ""
        elif (th.min_cmd_head_alone is not None and _multi_word(commands, h)
                and head_probs[h] >= th.min_cmd_head_alone):
            act = h, head_probs[h], "head alone "
        elif (th.min_cmd_fused_agreed is not None and top_multi and top == whisper_says
              and p >= th.min_cmd_fused_agreed):
            act = top, p, "as Whisper heard, "
        elif _multi_word(commands, h) and any(
                v is not None and head_probs[h] >= v
                for v, kinds in ((th.min_cmd_head_unheard, ("reject", "wake_only")),
                                 (th.min_cmd_head_wake_alone, ("wake_only",)))
                if whisper_kind in kinds) and not _m7w_refuses(d, whisper_kind, speech_s, th):
            act = h, head_probs[h], "head alone, Whisper heard no command, "
        elif _joined_command(commands, head_probs, joined, speech_s, th):
            act = h, head_probs[h], "head alone after the wake phrase said alone, "
    if act is not None:
        return _cmd_act(d, *act, clf_all, head_probs, commands), False
    if (d.kind == "accept" and th.min_cmd_fused_veto is not None and top != OTHER
            and top != d.command and p >= th.min_cmd_fused_veto):
        if th.min_cmd_fused_switch is not None and p >= th.min_cmd_fused_switch and top_multi:
            return (dataclasses.replace(d, command=top, heard=said(commands, top, d.wake),
                                        confidence=round(p, 3),
                                        reason=f"cmdfused: {top} {p:.2f}, not {d.command} "
                                               f"(acted on instead)"), False)
        return (dataclasses.replace(d, kind="reject", reason=f"cmdfused: {top} {p:.2f}, not "
                                    f"{d.command}"), True)
    return None


def cmd_early(d: Decision, clf_all: dict | None, head_probs: dict | None,
              commands: CommandSet, *, addressed: bool, needs_wake: bool = False,
              th: DecisionThresholds = DecisionThresholds(), joined: bool = False,
              speech_s: float | None = None) -> Decision | None:
    """Rule M's answer where Whisper's search cannot change it much (pure), or None (wait
    for the search): ``d`` is the classifier's own decision, before Whisper. With the wake
    phrase heard (``addressed``) and no single word accepted, a multi-word command at fused
    >= ``min_cmd_fused_prob`` is acted on (``d`` itself when it accepted that command; when
    it accepted another, only at ``min_cmd_fused_switch``); else, ``d`` accepting nothing,
    one the head alone gives ``min_cmd_head_alone``, or, after a wake phrase said alone
    (``joined``) in speech of ``min_joined_speech_ms`` or more, ``min_cmd_head_joined``
    (rule M8). The search, which rule M would
    override or agree with, is then not waited for (rule X in docs/SPEECH.md). Where the wake
    phrase is needed (``needs_wake``: wake activation, no wake phrase said alone just before,
    no reply awaited) and its probability is below ``min_wake_cmd_head``, the search is waited
    for (rule U)."""
    if (head_probs is None or not clf_all or not addressed
            or (d.kind == "accept" and d.command in SINGLE_WORDS)
            or (needs_wake and wake_below(d, th.min_wake_cmd_head))):
        return None
    top, p, top_multi = _fused_top(clf_all, head_probs, commands, th)
    act = None
    if th.min_cmd_fused_prob is not None and top_multi and p >= th.min_cmd_fused_prob:
        if d.kind == "accept" and d.command == top:
            return d
        if d.kind != "accept" or (th.min_cmd_fused_switch is not None
                                  and p >= th.min_cmd_fused_switch):
            act = top, p, ""
    elif d.kind != "accept" and th.min_cmd_head_alone is not None:
        h = max(head_probs, key=head_probs.get)
        if _multi_word(commands, h) and head_probs[h] >= th.min_cmd_head_alone:
            act = h, head_probs[h], "head alone "
    if act is None and d.kind != "accept":
        h = _joined_command(commands, head_probs, joined, speech_s, th)
        if h is not None:
            act = h, head_probs[h], "head alone after the wake phrase said alone "
    if act is None:
        return None
    return _cmd_act(d, *act, clf_all, head_probs, commands, "; before Whisper's search")


def _joined_command(commands: CommandSet, head_probs: dict, joined: bool,
                    speech_s: float | None, th: DecisionThresholds) -> str | None:
    """Rule M8 (pure): the command head's first, where it is a multi-word command at
    ``min_cmd_head_joined`` in an utterance that follows a wake phrase said alone
    (``joined``) with speech of ``min_joined_speech_ms`` or more (a fragment holds no
    multi-word command); else None."""
    if not joined or speech_s is None or _fragment(speech_s, th):
        return None
    return _head_command(commands, head_probs, th.min_cmd_head_joined)


def _head_command(commands: CommandSet, head_probs: dict, bar: float | None) -> str | None:
    """Rules M8, J3 and J4 (pure): the command head's first, where it is a multi-word command
    at ``bar`` or more; else None (and with the rule off, ``bar`` None)."""
    if bar is None:
        return None
    h = max(head_probs, key=head_probs.get)
    return h if _multi_word(commands, h) and head_probs[h] >= bar else None


def joined_window_act(d: Decision, head_probs: dict | None, commands: CommandSet, *,
                      speech_s: float | None, th: DecisionThresholds = DecisionThresholds()
                      ) -> Decision | None:
    """Rule J3 (pure), the last resort after a wake phrase said alone: ``head_probs`` are
    the command head's on the stream from that wake phrase's start to the end of the
    follow-up ``d`` was decided on (``speech_s`` of speech). Where ``d`` accepted nothing
    and the follow-up is no fragment (``min_joined_speech_ms``), the head's first is acted
    on when it is a multi-word command at ``min_cmd_head_joined_window`` or more; else None
    (``d`` stands)."""
    if head_probs is None or d.kind == "accept" or speech_s is None or _fragment(speech_s, th):
        return None
    h = _head_command(commands, head_probs, th.min_cmd_head_joined_window)
    if h is None:
        return None
    q = head_probs[h]
    return Decision("accept", command=h, heard=said(commands, h, d.wake), confidence=round(q, 3),
                    reason=f"cmdjoined: {h} {q:.2f}, the head on the wake phrase said alone "
                           f"and this follow-up (was {d.kind}: {d.reason})",
                    wake=d.wake, posterior=d.posterior, wake_prob=d.wake_prob, joined=d.joined)


def soft_wake(d: Decision, head_probs: dict | None, clf_all: dict | None, *,
              speech_s: float, th: DecisionThresholds = DecisionThresholds()) -> bool:
    """Rule J4 (pure): whether an utterance decided ``d`` is held as a soft wake phrase:
    nothing accepted ("reject"), the command head (``head_probs``) gives the wake phrase
    ``min_soft_wake_head`` or more, the classifier (``clf_all``, its probabilities by class)
    ``min_soft_wake_classifier`` or more, in ``speech_s`` seconds of speech from
    ``min_joined_speech_ms`` to ``max_wake_ms``. The caller asks only in wake activation,
    with no wake phrase held before the utterance and no "say again"."""
    if th.min_soft_wake_head is None or th.min_cmd_head_soft_window is None:
        return False
    if d.kind != "reject" or not head_probs or not clf_all:
        return False
    from .kws import WAKE  # the classifier's class; a name only
    return (head_probs.get(HEAD_WAKE, 0.0) >= th.min_soft_wake_head
            and clf_all.get(WAKE, 0.0) >= th.min_soft_wake_classifier
            and th.min_joined_speech_ms <= speech_s * 1000 <= th.max_wake_ms)


def soft_window_act(d: Decision, head_probs: dict | None, commands: CommandSet, *,
                    th: DecisionThresholds = DecisionThresholds()) -> Decision | None:
    """Rule J4 (pure), after a soft wake phrase (:func:`soft_wake`): ``head_probs`` are the
    command head's on the stream from the soft wake phrase's start to the end of the next
    utterance, decided ``d``. Where ``d`` is a "reject" (not a wake phrase said alone: the
    command is still to come, and the wake phrase is held for it as ever), the head's first
    is acted on, as said after the wake phrase, when it is a multi-word command at
    ``min_cmd_head_soft_window`` or more; else None (``d`` stands)."""
    if head_probs is None or d.kind != "reject":
        return None
    h = _head_command(commands, head_probs, th.min_cmd_head_soft_window)
    if h is None:
        return None
    q = head_probs[h]
    return Decision("accept", command=h, heard=said(commands, h, True), confidence=round(q, 3),
                    reason=f"cmdsoftwake: {h} {q:.2f}, the head on the utterance before, "
                           f"which it took for the wake phrase, and this one (was {d.kind}: "
                           f"{d.reason})",
                    wake=True, posterior=d.posterior, wake_prob=d.wake_prob)


def same_command_again(d: Decision, last_command: str | None, gap_s: float | None,
                       commands: CommandSet, *, max_gap_ms: int) -> Decision | None:
    """Rule D (pure): ``d``, accepted, refused where it is the multi-word command
    ``last_command`` acted on last, its utterance starting ``gap_s`` after that one's
    speech ended, less than ``max_gap_ms`` (0: off): a phrase cut in two, acted on twice (a
    second command needs its own wake phrase, longer than that). Else None (``d``
    stands). Single words are left alone (a deliberate "up ... up")."""
    if (max_gap_ms <= 0 or d.kind != "accept" or d.command != last_command or gap_s is None
            or not _multi_word(commands, d.command) or gap_s * 1000 >= max_gap_ms):
        return None
    return dataclasses.replace(
        d, kind="reject", reason=f"the same command again, {gap_s * 1000:.0f} ms after the "
                                 f"last ({d.reason})")


def wake_below(d: Decision, floor: float | None) -> bool:
    """Rules U and V (pure): the classifier's wake-phrase probability in ``d`` is below
    ``floor`` (unknown counts as below; False when the rule is off, ``floor`` None)."""
    return floor is not None and (d.wake_prob is None or d.wake_prob < floor)


def _m7w_refuses(d: Decision, whisper_kind: str | None, speech_s: float | None,
                 th: DecisionThresholds) -> bool:
    """Rule M7w (pure): where Whisper's check refused, rule M7 does not act with the wake
    phrase's probability below ``min_wake_head_unheard`` or in speech shorter than
    ``min_joined_speech_ms`` (a fragment holds no wake phrase and command); False when the
    rule is off."""
    if whisper_kind != "reject" or th.min_wake_head_unheard is None:
        return False
    return _fragment(speech_s, th) or wake_below(d, th.min_wake_head_unheard)


def _fragment(speech_s: float | None, th: DecisionThresholds) -> bool:
    """Rules M8 and M7w (pure): speech known to be shorter than ``min_joined_speech_ms``,
    too short to hold a multi-word command."""
    return speech_s is not None and speech_s * 1000 < th.min_joined_speech_ms


def _multi_word(commands: CommandSet, c: str) -> bool:
    """``c`` is a command of ``commands`` and not one of the single words (rules M-M6, X)."""
    return c in commands.commands and c not in SINGLE_WORDS


def _fused_top(clf_all: dict, head_probs: dict, commands: CommandSet, th: DecisionThresholds
               ) -> tuple[str, float, bool]:
    """The fused first (cmd_fused_probs): its id, its probability, and whether it is a
    multi-word command."""
    f = cmd_fused_probs(clf_all, head_probs, th.cmd_fuse_weight)
    top = max(f, key=f.get)
    return top, f[top], _multi_word(commands, top)


def _cmd_act(d: Decision, c: str, q: float, how: str, clf_all: dict, head_probs: dict,
             commands: CommandSet, note: str = "") -> Decision:
    """Rule M's (or X's) act on command ``c`` at probability ``q``, in place of ``d``."""
    return Decision("accept", command=c, heard=said(commands, c, d.wake), confidence=round(q, 3),
                    reason=f"cmdfused: {how}{c} {q:.2f} (head {head_probs.get(c, 0.0):.2f}, "
                           f"classifier {clf_all.get(c, 0.0):.2f}; was {d.kind}{note})",
                    wake=d.wake, posterior=d.posterior, wake_prob=d.wake_prob, joined=d.joined)


def not_speech(voice_prob: float | None, gap_s: float | None,
               th: DecisionThresholds = DecisionThresholds()) -> str | None:
    """Why an utterance is not to be decoded at all (pure), or None: the neural voice
    model's highest speech probability in it (``voice_prob``; None without the model) is
    below ``min_voice_prob`` (noise: dishes, a cat), or below ``tail_voice_prob`` while it
    starts ``gap_s`` after the previous utterance's speech ended, within ``tail_gap_ms``
    (None: no previous utterance). The endpointer closes a word on the voice model's pause,
    so the burst of a final stop consonant or a trailing "s" can open an utterance of its
    own, and the classifier, whose window still spans the whole word, names a command
    again (a second "up") or another one ("off")."""
    if voice_prob is None:
        return None
    if th.min_voice_prob is not None and voice_prob < th.min_voice_prob:
        return f"the voice model heard no speech ({voice_prob:.2f})"
    if (th.tail_voice_prob is not None and gap_s is not None and voice_prob < th.tail_voice_prob
            and gap_s * 1000 < th.tail_gap_ms):
        return (f"the tail of the previous utterance ({1000 * gap_s:.0f} ms after it, "
                f"voice {voice_prob:.2f})")
    return None


def confidence_features(lr: float, posterior: float, uncovered_ms: float,
                        grammar_per_frame: float, speech_s: float, n_words: int,
                        joined: bool = False) -> list[float]:
    """The features of the confidence model (same order as CONFIDENCE_WEIGHTS and
    benchmarks/speech_tune.features). ``joined``: a wake phrase said alone came just
    before, so this utterance has no wake phrase of its own to lift its scores."""
    single = float(n_words == 1)
    return [lr, posterior, uncovered_ms / 100.0, grammar_per_frame / 10.0, speech_s,
            single, lr * single, float(joined)]


def confidence(features: list[float], th: DecisionThresholds) -> float:
    """0..1, the fitted probability that the command is the one that was said."""
    z = th.confidence_bias + sum(w * f for w, f in zip(th.confidence_weights, features))
    z = max(-50.0, min(50.0, z))
    return round(1.0 / (1.0 + math.exp(-z)), 3)
