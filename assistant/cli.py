"""The ``assistant`` command. Decision support: NOT FOR CLINICAL USE."""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from pathlib import Path

DESCRIPTION = """Hands-free, voice-controlled AR assistant for ultrasound-guided regional
anaesthesia. Decision support only: NOT FOR CLINICAL USE."""

LAB_TOOLS = {
    # subcommand: (module:function, help). Each takes its own argv and has its own --help.
    "listen": ("speech.listen_cli:main",
               "print the voice commands recognised in a WAV file (lab tool)"),
    "listen-eval": ("speech.listen_eval:main",
                    "score the voice commands recognised in folders of recordings, each "
                    "folder named by the command said (lab tool)"),
    "needle-eval": ("models.needle_eval:main",
                    "the needle tip as reported, frame by frame through a video, against "
                    "marked tips (lab tool)"),
    "seg-eval": ("models.seg_eval:main",
                 "score the shipped segmentation model on a folder of images and masks"),
    "enrol": ("speech.enrol:main",
              "cut a recording of an operator reading the single words into training clips, "
              "so the models can be retrained on a site's own voices"),
    "report": ("assistant.report:main",
               "write an HTML teaching report for a session or an operator"),
}


# lab tools that run as the live system would, with config.yaml's section of that name
SITE_SETTINGS = {"listen": "speech", "listen-eval": "speech", "needle-eval": "segmentation"}


def _call(target: str, argv: list[str], **kwargs) -> int:
    import importlib

    module, func = target.split(":")
    return int(getattr(importlib.import_module(module), func)(argv, **kwargs) or 0)


def _settings(args, overrides: dict | None = None):
    from assistant.config import ConfigError, load_settings

    try:
        return load_settings(args.config, overrides)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        raise SystemExit(2)


def cmd_run(args) -> int:
    from assistant.launcher import Launcher, run_forever

    overrides: dict = {}
    if args.source:
        p = Path(args.source)
        kind = "camera" if args.source.isdigit() else ("images" if p.is_dir() else "video")
        overrides["source"] = ({"kind": "camera", "camera_index": int(args.source)}
                               if kind == "camera" else {"kind": kind, "path": str(p.resolve())})
    if args.web_port is not None:
        overrides["render"] = {"web_port": args.web_port}
    settings = _settings(args, overrides)
    nodes = tuple(args.nodes.split(",")) if args.nodes else None
    launcher = Launcher(settings, args.config, overrides=overrides, nodes=nodes,
                        events_path=args.events)
    print(f"starting {', '.join(launcher.nodes)} (Ctrl-C stops); logs in {launcher.log_dir}",
          file=sys.stderr)
    return run_forever(launcher)


def _folder_problem(path: str, option: str = "--out", mp4_ok: bool = False) -> str | None:
    """Why ``path`` cannot be an output folder (an existing file; with ``mp4_ok`` an .mp4
    path is a file to write), or None."""
    from assistant.paths import file_in_the_way

    p = Path(path)
    q = file_in_the_way(p.parent if mp4_ok and p.suffix.lower() == ".mp4" else p)
    return None if q is None else f"{option} {path}: {q} is a file, not a folder"


def _refuse(problem: str | None) -> None:
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        raise SystemExit(2)


def cmd_replay(args) -> int:
    from assistant.replay import ReplayError, replay, summary_json
    from assistant.sources import SourceError

    _refuse(_folder_problem(args.out))
    settings = _settings(args)
    nodes = tuple(args.nodes.split(",")) if args.nodes else None
    try:
        s = replay(settings, args.config, args.video, args.out, audio=args.audio,
                   progress=not args.no_progress, nodes=nodes, max_frames=args.max_frames,
                   video_audio=not args.no_audio)
    except (SourceError, ReplayError, FileNotFoundError, ValueError) as exc:
        print(f"replay failed: {exc}", file=sys.stderr)
        return 1
    print(f"{s.frames} frames in {s.wall_s:.1f} s ({s.speed:.1f}x real time); "
          f"wrote {s.annotated} and {s.events} ({s.events_count} events)")
    if args.json:
        print(summary_json(s))
    return 0


def cmd_demo(args) -> int:
    from assistant.demo import run_demo

    _refuse(_folder_problem(args.out))
    settings = _settings(args)
    return run_demo(settings, args.config, args.out, progress=not args.no_progress)


def cmd_simulate(args) -> int:
    from models.simulator import render_clip

    if not (math.isfinite(args.seconds) and args.seconds > 0):
        _refuse(f"--seconds must be a positive number, got {args.seconds}")
    if not 1 <= args.fps <= 240:
        _refuse(f"--fps must be 1..240, got {args.fps}")
    n = int(args.seconds * args.fps)
    if n < 1:
        _refuse(f"--seconds {args.seconds} at --fps {args.fps} is less than one frame")
    _refuse(_folder_problem(args.out, mp4_ok=True))
    meta = render_clip(args.out, n_frames=n, fps=args.fps, seed=args.seed)
    if isinstance(meta, dict) and meta.get("frames"):
        # the true tips, for assistant needle-eval
        from models.needle_eval import write_tips
        tips = Path(meta["video"]).with_name(Path(meta["video"]).stem + "_tips.csv")
        write_tips(tips, meta["frames"])
        meta["tips"] = str(tips)
    print(json.dumps({k: v for k, v in meta.items() if not isinstance(v, list)} if isinstance(meta, dict) else {}))
    return 0


def cmd_check_config(args) -> int:
    settings = _settings(args)
    from assistant.config import config_warnings, dataclass_to_dict
    print(json.dumps(dataclass_to_dict(settings), indent=2) if args.print else "config OK")
    for w in config_warnings(settings):
        print(f"warning: {w}", file=sys.stderr)
    return 0


def cmd_models(args) -> int:
    if not args.name:
        _refuse(f"assistant models {args.action}: name the model to fetch (vosk-en)")
    return _call("speech.fetch:main", [args.action, args.name, *args.rest])


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="assistant", description=DESCRIPTION)
    ap.add_argument("--config", default=None, help="config file (default: the repo's config.yaml)")
    ap.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = ap.add_subparsers(dest="cmd", metavar="COMMAND")

    p = sub.add_parser("run", help="start every process named in config.yaml (live use)",
                       description="Start every node named in config.yaml (launcher.nodes): frame "
                       "source, segmentation, speech recognition, speech output, assistant, renderer. "
                       "Ctrl-C or SIGTERM stops all of them.")
    p.add_argument("--source", help="override the frame source: a video file, an image folder or a camera index")
    p.add_argument("--nodes", help="comma-separated subset of nodes to start")
    p.add_argument("--web-port", type=int, default=None, help="serve the live view on 127.0.0.1:PORT")
    p.add_argument("--events", default=None, help="write events.jsonl here")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("replay", help="send a recorded video (and audio) through the system",
                       description="Send every frame of VIDEO (an .mp4/.avi file or an image folder), and "
                       "its sound aligned in time (a file given with --audio, else VIDEO's own audio "
                       "track if it has one), through the same processes as live use. "
                       "Writes OUT/annotated.mp4 (same frame count and rate) and OUT/events.jsonl.")
    p.add_argument("video")
    p.add_argument("--audio", default=None,
                   help="WAV (or other audio/video) file aligned with the video, any rate, mono or "
                        "stereo (default: VIDEO's own audio track, if it has one)")
    p.add_argument("--no-audio", action="store_true", help="ignore VIDEO's own audio track")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--nodes", help="comma-separated subset of nodes (default: all in config)")
    p.add_argument("--max-frames", type=int, default=None, help="stop after N frames")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="also print a JSON summary")
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("demo", help="make the built-in simulated recording and voice track, and replay them",
                       description="Generate a simulated PECS II clip with a needle and a scripted, "
                       "synthesised voice track, replay them through every process, and write "
                       "OUT/annotated.mp4, OUT/events.jsonl and the session record.")
    p.add_argument("--out", default="out/demo", help="output folder (default out/demo)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("simulate", help="render a simulated PECS II clip with ground-truth masks",
                       description="Render a simulated B-mode clip (frames, masks, needle track).")
    p.add_argument("--out", required=True)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--fps", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("check-config", help="read config.yaml strictly and report errors",
                       description="Read the config strictly: an unknown key or bad value is an error "
                       "naming its line.")
    p.add_argument("--print", action="store_true", help="print the effective settings")
    p.set_defaults(func=cmd_check_config)

    p = sub.add_parser("models", help="manage downloadable models (e.g. 'models fetch vosk-en')",
                       description="fetch vosk-en: download the official small English Vosk model "
                       "(checksum verified) where there is internet.")
    p.add_argument("action", choices=["fetch"])
    p.add_argument("name", metavar="MODEL", nargs="?", help="the model to fetch (vosk-en)")
    p.add_argument("rest", nargs=argparse.REMAINDER, metavar="OPTIONS",
                   help="--dest DIR, --url URL, --sha256 HEX, --timeout-s S")
    p.set_defaults(func=cmd_models)

    for name, (target, help_) in LAB_TOOLS.items():
        p = sub.add_parser(name, help=help_, add_help=False,
                           description=f"{help_} (see 'assistant {name} --help')")
        p.add_argument("rest", nargs=argparse.REMAINDER)
        p.set_defaults(func=lambda a, t=target: _call(t, a.rest))
    return ap


def _lab_tool_split(argv: list[str]) -> tuple[list[str], str, list[str]] | None:
    """(global options, tool, tool args) when the command is a lab tool: its arguments
    (--help included) go to the tool's own parser untouched."""
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--config":
            i += 2
            continue
        if a.startswith("--config=") or a in ("-v", "--verbose"):
            i += 1
            continue
        if a in LAB_TOOLS:
            return argv[:i], a, argv[i + 1:]
        return None
    return None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = build_parser()
    split = _lab_tool_split(argv)
    if split is not None:
        glob, tool, rest = split
        args = ap.parse_args(glob)
        logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                            format="%(levelname)s %(name)s: %(message)s")
        if tool in SITE_SETTINGS and not {"-h", "--help"} & set(rest):
            # as the live system would run: the site's settings of that section
            section = getattr(_settings(args), SITE_SETTINGS[tool])
            return _call(LAB_TOOLS[tool][0], rest, settings=section)
        return _call(LAB_TOOLS[tool][0], rest)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    if args.config and not Path(args.config).is_file():
        # named on the command line: a missing file is an error for every command
        _refuse(f"--config {args.config}: config file not found")
    if not getattr(args, "func", None):
        ap.print_help()
        return 0
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
