"""Entry point of one node process: ``python -m assistant.node_main NAME ...``.

The launcher starts each node this way; the node reads config.yaml itself (strictly),
with the launcher's overrides on top.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys

from assistant.bus import Endpoints
from assistant.config import ConfigError, load_settings
from assistant.node import install_signal_handlers

NODE_CLASSES = {
    "source": "assistant.source_node:SourceNode",
    "segmentation": "models.node:SegmentationNode",
    "speech": "speech.node:SpeechNode",
    "tts": "speech.tts_node:TTSNode",
    "assistant": "assistant.assistant_node:AssistantNode",
    "renderer": "ar.node:RendererNode",
}


def node_class(name: str):
    try:
        module, cls = NODE_CLASSES[name].split(":")
    except KeyError:
        raise SystemExit(f"unknown node {name!r}; expected one of {', '.join(NODE_CLASSES)}")
    return getattr(importlib.import_module(module), cls)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="assistant-node", description="Run one node process.")
    ap.add_argument("name", choices=sorted(NODE_CLASSES))
    ap.add_argument("--config", default=None)
    ap.add_argument("--pub", required=True)
    ap.add_argument("--sub", required=True)
    ap.add_argument("--overrides", default="{}")
    ap.add_argument("--replay", action="store_true")
    ap.add_argument("--run-id", default="", help="names this run (a restarted node resumes it)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO,
                        format=f"%(asctime)s {args.name} %(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings(args.config, json.loads(args.overrides))
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    node = node_class(args.name)(settings, Endpoints(args.pub, args.sub), replay=args.replay)
    node.run_id = args.run_id
    install_signal_handlers(node)
    return node.run()


if __name__ == "__main__":
    sys.exit(main())
