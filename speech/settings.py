"""Settings of speech recognition and speech output (sections ``speech`` and ``tts``)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class SpeechSettings:
    # kws: neural command classifier over speech embeddings (speech/kws.py), the most
    # accurate here; pocketsphinx: grammar decode, bundled model; vosk: needs a model dir
    engine: Literal["kws", "pocketsphinx", "vosk"] = "kws"
    kws_model: str = ""  # empty: speech/kws_en.npz
    vosk_model_dir: str = ""
    commands_file: str = ""  # empty: speech/commands_en.yaml
    # "wake" meets the false-activation goal on continuous speech (docs/SPEECH.md);
    # "always" acts on bare commands (more false activations in conversation).
    activation: Literal["wake", "push_to_talk", "always"] = "wake"
    wake_phrase: str = "assistant"  # must be one of the command file's wake_phrases
    input: str = "none"  # "mic", "mic:<index>", a WAV (or media file) path, or "none"
    # audio arrives in blocks this long (microphone, WAV input, listen and listen-eval): a
    # command cannot come out before the block holding the end of the speech has arrived,
    # so a longer block adds on average half its length to every command's latency
    block_ms: int = 20
    mute_tail_ms: int = 300  # recognizer stays muted this long after our own speech
    # --- endpointing (speech/vad.py)
    vad_on_db: float = 9.0
    vad_off_db: float = 6.0
    vad_hangover_ms: int = 200
    # close an utterance after this long with no speech heard by the neural voice
    # activity model (Silero VAD), even while noise keeps the energy up; 0 = energy only
    vad_neural_hangover_ms: int = 128
    vad_neural_off_prob: float = 0.3  # "no speech": the model's probability below this
    # clear the neural model's state after every this long with no utterance open (0 =
    # never): its state drifts over a long stream (docs/SPEECH.md)
    vad_neural_reset_ms: int = 1000
    vad_min_speech_ms: int = 60
    # with the neural model: an utterance in which it never heard speech above
    # min_voice_prob is not decoded, nor one below tail_voice_prob that starts within
    # tail_gap_ms of the previous one's end (a word's own tail: the burst of "up");
    # decision.py not_speech, rule T in docs/SPEECH.md. None: off
    min_voice_prob: float | None = 0.1
    tail_voice_prob: float | None = 0.2
    tail_gap_ms: int = 600
    max_utterance_ms: int = 5000
    # decode while the user speaks (live CMN) rather than after the endpoint (batch CMN)
    decode_while_speaking: bool = True
    # --- decision (speech/decision.py). Tuned on the tune split of
    # benchmarks/speech_bench.py with benchmarks/speech_tune.py under the false-activation
    # limits (no unknown word or silent clip accepted, none in wake-mode monologue);
    # see docs/SPEECH.md. Likelihood ratios in PocketSphinx log units per 10 ms frame.
    # The decision is a calibrated confidence (logistic model of likelihood ratio,
    # posterior, uncovered speech, grammar score, duration; speech/decision.py) >=
    # min_confidence; the other fields are hard floors around it.
    min_confidence: float = 0.6
    min_lr_per_frame: float = -40.0  # utterances of two or more words
    min_lr_per_frame_single_word: float = -40.0
    min_word_posterior: float = 0.5
    min_word_ms: int = 100
    min_word_in_speech_ms: int = 80
    max_uncovered_ms: int = 1000
    max_word_ms: int = 1500
    min_vosk_confidence: float = 0.7
    # neural classifier (engine kws): tuned on the tune split, see docs/SPEECH.md
    min_kws_prob: float = 0.3
    min_kws_wake: float = 0.35
    # multiply P(none of the commands) by this before choosing the class (1 = as trained;
    # < 1 hears more commands and takes more talk for one: docs/SPEECH.md, kws_none_scale)
    kws_none_scale: float = 1.0
    max_command_ms: int = 2200
    max_wake_ms: int = 1600
    # "say again" (engine kws): after a wake phrase heard with at least this probability
    # (or with the pedal down), a command-length utterance that is not understood gets a
    # spoken "say again" instead of silence; false: stay silent (docs/SPEECH.md)
    unclear_prompt: bool = True
    min_unclear_wake: float = 0.95
    # "second opinion" (engine kws): before answering "say again", decode the utterance
    # once with PocketSphinx (its own decision rule) and act on its command if it is one
    # of the classifier's top candidates (probability >= min_second_opinion_prob)
    second_opinion: bool = True
    min_second_opinion_prob: float = 0.05
    # asked for utterances whose wake phrase scored at least this (as "say again")
    min_second_opinion_wake: float = 0.95
    # activation "always": every rejected command-length utterance counts as addressed
    second_opinion_always: bool = False
    # a command the classifier accepts with probability below this is decoded by
    # PocketSphinx too, and not acted on if it hears another command ("say again")
    second_opinion_veto_below: float = 0.0
    # Whisper's check (engine kws; speech/whisper.py, docs/SPEECH.md): Whisper tiny.en
    # scores every command phrase on a command-length utterance that the classifier did
    # not accept with probability >= whisper_skip_above; its command is acted on when the
    # classifier had none; where each hears a different command the speaker is asked
    # again (whisper_override_*: Whisper's instead, when it is sure; measured, off).
    # Thresholds chosen on the tune split and REAL held-out speakers by a rule written
    # before the runs (docs/SPEECH.md, "Whisper's check")
    whisper: bool = True
    whisper_skip_above: float = 0.7
    min_whisper_regret: float = -4.0
    min_whisper_margin: float = 3.0
    whisper_s_per_char: float = 0.12
    whisper_extra_s: float = 0.8
    min_whisper_bare_s: float = 0.2
    # both accept different commands: Whisper's when its regret and margin reach these
    # (None, the default: neither, the speaker is asked again; docs/SPEECH.md, rule 3)
    whisper_override_regret: float | None = None
    whisper_override_margin: float = 4.0
    # the single-word head on Whisper's encoder (speech/whisper_head.py, decision.py
    # head_check, head_veto; chosen by rule W3, docs/SPEECH.md "The single-word head"):
    # where Whisper checks, a word the head is min_head_prob sure of and the classifier or
    # Whisper names first is acted on; a single word the classifier was sure of is refused
    # when the head names something else with min_head_veto (one encoder pass, 7-12 ms).
    # None: off. whisper_head_file: its weights ("" = the shipped)
    min_head_prob: float | None = 0.9
    min_head_agree_regret: float = -6.0  # Whisper's phrase must be this close to agree
    min_head_prob_alone: float | None = None  # the head's word with neither model naming it
    min_head_veto: float | None = 0.7
    # rule V1 (decision.py whisper_single_veto; docs/SPEECH.md "Rule V1"): a single word
    # acted on under whisper_skip_above, after Whisper's check, is refused (say again) when
    # Whisper's best phrase names another command and the head another word
    whisper_single_veto: bool = False
    # rule V1w (docs/SPEECH.md "Real words after the wake phrase"): the same, only for a word
    # said after the wake phrase
    whisper_single_veto_after_wake: bool = False
    # the classifier and the head together (decision.py head_fuse, rule F in docs/SPEECH.md):
    # their log-probabilities weighted fuse_weight : 1 - fuse_weight; a single word not
    # otherwise accepted is acted on at min_fused_prob, an accepted single word refused
    # when another class reaches min_fused_veto. None: off
    fuse_weight: float = 0.35
    min_fused_prob: float | None = 0.6
    min_fused_veto: float | None = 0.7
    # rule B2 (decision.py head_fuse_in_wake; docs/SPEECH.md "Rule B2"): rule F's veto also
    # on a single word the classifier accepted with the wake phrase ("assistant, left"); a
    # rival word at min_fused_veto is acted on instead
    fused_veto_in_wake: bool = True
    # rule WW (decision.py wake_alone_heard; docs/SPEECH.md "Rule WW"): where Whisper's check
    # decided "the wake phrase alone" and the command head gives it this much, an unsure
    # command the classifier accepted is held as a wake phrase said alone (null: off; on
    # since 2026-12-08)
    min_wake_alone_heard: float | None = 0.9
    whisper_head_file: str = ""
    # rules MH, MH2 (docs/SPEECH.md, "Moonshine's ears"; measured, failed, off): the
    # single-word head that reads Moonshine tiny's encoder beside Whisper's
    # (speech/moonshine.py, whisper_moon_head_en.npz); the Whisper-only head where false or
    # where Moonshine's wheel is missing
    head_moonshine: bool = False
    # the command head on Whisper's encoder (speech/whisper_head.py over every command, the
    # wake phrase and other; decision.py cmd_fuse, rule M in docs/SPEECH.md): where Whisper
    # checks, its probabilities and the classifier's weighted cmd_fuse_weight : 1 -
    # cmd_fuse_weight act on a multi-word command not otherwise accepted at
    # min_cmd_fused_prob (the wake phrase heard), and refuse an accepted one when another
    # command reaches min_cmd_fused_veto (that command acted on instead when it reaches
    # min_cmd_fused_switch too: rule M3); cmd_head_sure: also check the multi-word commands
    # the classifier was sure of (one encoder pass). None: off. whisper_cmd_head_file: its
    # weights ("" = the shipped); set, its answers are in the diagnostics even with all off
    cmd_fuse_weight: float = 0.5
    min_cmd_fused_prob: float | None = 0.6
    min_cmd_fused_veto: float | None = 0.7
    min_cmd_fused_switch: float | None = 0.7  # the refused command's rival acted on instead
    min_cmd_head_alone: float | None = 0.97  # the head alone, where the fused falls short
    # rule M5: an accepted command (a single word too) that Whisper's check did not confirm
    # gives way to a multi-word command the fused probabilities give this
    min_cmd_fused_unconfirmed: float | None = 0.3
    # rule M6: a multi-word command Whisper's own decision accepted, refused or not acted on
    # by the rest, is acted on when the fused probabilities put it first at this
    min_cmd_fused_agreed: float | None = 0.4
    # rule M7: where Whisper's check heard no command (refused, or the wake phrase alone) and
    # nothing was acted on, a multi-word command the command head alone gives this
    min_cmd_head_unheard: float | None = 0.8
    # rule M7w: where Whisper's check refused, rule M7 acts only with the classifier's wake
    # phrase probability this high (None: no such floor)
    min_wake_head_unheard: float | None = 0.95
    # rule M7b: the same where Whisper's check heard the wake phrase alone
    min_cmd_head_wake_alone: float | None = 0.6
    # rule M8: in an utterance that follows a wake phrase said alone (wake activation) and
    # where nothing was acted on, a multi-word command the command head alone gives this
    min_cmd_head_joined: float | None = 0.6
    min_joined_speech_ms: int = 200  # ... in speech this long at least (a fragment is no command)
    # rule J3: where even so nothing was acted on, the head reads the wake phrase said alone
    # and the follow-up together, and acts on a multi-word command it gives this (None: off;
    # 0.8 since rule J3 held on TEST, docs/SPEECH.md "Rules HJ and J3")
    min_cmd_head_joined_window: float | None = 0.8
    # rule J4: an utterance decided "not a command" (wake activation, no wake phrase held
    # before it) that the command head takes for the wake phrase (its _wake_ this sure) and
    # the classifier does not rule out (its _wake_ at min_soft_wake_classifier), in speech
    # from min_joined_speech_ms to max_wake_ms, is a "soft" wake phrase: where the next
    # utterance (within wake_join_gap_ms) is decided "not a command" too, the head reads the
    # two together and acts on a multi-word command it gives min_cmd_head_soft_window
    # (None: off; docs/SPEECH.md "Rule J4")
    min_soft_wake_head: float | None = 0.99
    min_soft_wake_classifier: float = 0.05
    min_cmd_head_soft_window: float | None = 0.95
    # rule W: in wake activation, a command the classifier accepted with the wake phrase's
    # probability below this is not acted on where Whisper's check heard no command
    # (0.9 since rule W2, docs/SPEECH.md)
    min_wake_unheard: float | None = 0.9
    # rule U: where the wake phrase is needed, the command head acts (rules X and M) with it
    # this sure, or where Whisper's check heard a command or the wake phrase (None: off)
    min_wake_cmd_head: float | None = None
    # rule V: a command the classifier is sure of (whisper_skip_above) skips Whisper's check
    # only with the wake phrase this sure where one is needed; below, Whisper checks it and
    # rule W2 applies (None: off)
    min_wake_sure: float | None = None
    cmd_head_sure: bool = False
    # rule C: the sure multi-word commands checked all the same (cmd_head_sure false): the
    # toggles, where "start" heard for "stop" changes the session (docs/SPEECH.md "Rule C")
    cmd_head_sure_for: tuple[str, ...] = ("freeze", "unfreeze", "record_start", "record_stop",
                                          "injection_start", "injection_stop")
    # rule X (decision.py cmd_early): where the classifier and the command head settle a
    # multi-word command, act at the encoder's output, without waiting for Whisper's search
    cmd_early: bool = True
    # rule S: PocketSphinx's second opinion is not asked where rule M acts on the utterance
    # without it (it could only have mattered by accepting a command itself)
    cmd_before_second_opinion: bool = True
    # rule J2 (measured on TUNE only: more wrong commands; off): after a wake phrase said
    # alone, the command head reads the stream from the wake phrase's start to the
    # follow-up's end (the head was trained on "assistant, <command>"), not the follow-up
    # alone (one more encoder pass)
    cmd_head_joined_wake: bool = False
    whisper_cmd_head_file: str = ""
    whisper_shortlist: int = 10000  # softmax over this many token ids (0: all 51,864)
    whisper_max_expansions: int = 64  # decoder steps per utterance, at most
    # a wake phrase alone is held this long for the command that follows a pause
    wake_join_gap_ms: int = 1500
    # rule D: in wake activation, a multi-word command whose utterance starts less than this
    # after the end of the one the same command was acted on is not acted on again (one
    # phrase cut in two: a second command needs its own wake phrase); 0: off
    same_command_gap_ms: int = 300
    # yes/no (commands marked reply) need no wake phrase this long after expect_reply()
    reply_window_ms: int = 8000
    # push-to-talk: speech that ends this long after the pedal is released still counts
    ptt_grace_ms: int = 400


#: settings that are probabilities (0 to 1, or None where the rule may be off)
PROBABILITY_FIELDS = ("vad_neural_off_prob", "min_voice_prob", "tail_voice_prob",
                      "min_head_prob", "min_head_veto",
                      "min_fused_prob", "min_fused_veto", "fuse_weight", "cmd_fuse_weight",
                      "min_cmd_fused_prob", "min_cmd_fused_veto", "min_cmd_fused_switch",
                      "min_cmd_head_alone", "min_cmd_fused_unconfirmed", "min_cmd_fused_agreed",
                      "min_cmd_head_unheard", "min_wake_head_unheard", "min_cmd_head_wake_alone",
                      "min_wake_alone_heard",
                      "min_cmd_head_joined", "min_cmd_head_joined_window",
                      "min_soft_wake_head", "min_soft_wake_classifier",
                      "min_cmd_head_soft_window",
                      "min_wake_unheard", "min_wake_cmd_head", "min_wake_sure",
                      "min_confidence", "min_word_posterior",
                      "min_vosk_confidence", "min_kws_prob", "min_kws_wake", "min_unclear_wake",
                      "min_second_opinion_prob", "min_second_opinion_wake",
                      "second_opinion_veto_below")


def settings_problem(s: SpeechSettings) -> str | None:
    """What is wrong with the values of ``s`` ("speech.KEY ..."), or None. Read by the
    config loader (which adds the file name) and by the listener (settings built in code)."""
    for name in PROBABILITY_FIELDS:
        v = getattr(s, name)
        if v is not None and not 0.0 <= v <= 1.0:
            return f"speech.{name} is a probability (0 to 1) or null, got {v!r}"
    if s.tail_gap_ms < 0:
        return f"speech.tail_gap_ms must be >= 0, got {s.tail_gap_ms!r}"
    if s.same_command_gap_ms < 0:
        return f"speech.same_command_gap_ms must be >= 0 (0 = off), got {s.same_command_gap_ms!r}"
    if s.min_joined_speech_ms < 0:
        return f"speech.min_joined_speech_ms must be >= 0, got {s.min_joined_speech_ms!r}"
    if s.vad_neural_reset_ms < 0:
        return ("speech.vad_neural_reset_ms must be >= 0 (0 = never), "
                f"got {s.vad_neural_reset_ms!r}")
    if not (isinstance(s.block_ms, int) and 5 <= s.block_ms <= 200):
        return ("speech.block_ms must be a whole number of milliseconds, 5 to 200, "
                f"got {s.block_ms!r}")
    return None


@dataclass(frozen=True)
class TTSSettings:
    enabled: bool = True
    output: Literal["speaker", "wav_dir", "none"] = "speaker"
    wav_dir: str = ""
    rate_wpm: int = 170
    voice: str = ""
    # engine: "pyttsx3" (one engine in a worker thread) falling back to the
    # espeak-ng command line when pyttsx3 fails; "espeak-ng" uses the command line only
    backend: Literal["pyttsx3", "espeak-ng"] = "pyttsx3"
    max_queue: int = 8  # oldest ack/answer dropped beyond this (alerts never)
