"""The speech node live, as a microphone feeds it: a WAV input played in real time in
speech.block_ms blocks, a real bus, the command arriving as a SpeechCommand."""
import threading
import time
from dataclasses import replace

import zmq

from assistant import messages as m
from assistant.bus import BusClient, Endpoints, Proxy
from assistant.config import Settings
from conftest import wait_for
from speech.audio import write_wav
from speech.node import SpeechNode
from speech.synth import espeak, with_silence


def test_live_wav_input_reaches_the_bus_as_a_command(tmp_path):
    wav = tmp_path / "cmd.wav"
    write_wav(wav, with_silence(espeak("assistant, show fascia")))
    base = Settings()
    settings = replace(base, speech=replace(base.speech, input=str(wav)))
    ctx = zmq.Context()
    ep = Endpoints(pub=f"ipc://{tmp_path}/pub", sub=f"ipc://{tmp_path}/sub")
    proxy = Proxy(ep, ctx).start()
    lab = BusClient(ep, "lab", ("speech_cmd",), ctx=ctx)
    probe = BusClient(ep, "probe", (), ctx=ctx)

    def live():
        probe.publish(m.SpeechCommand(command="probe", heard="", confidence=0.0, start_s=0.0,
                                      end_s=0.0))
        return lab.recv(20) is not None
    wait_for(live, 5, what="subscription to be live")
    lab.drain()
    node = SpeechNode(settings, ep, ctx=ctx)
    t = threading.Thread(target=node.run, daemon=True)
    t.start()
    got = []

    def heard():
        r = lab.recv(50)
        if r is not None and isinstance(r[1], m.SpeechCommand):
            lab.publish(m.Ack(to=r[0].source.split(":")[0]), parent_id=r[0].msg_id)
            got.append((time.monotonic(), r[1]))
        return got
    wait_for(heard, 60, what="the spoken command on the bus")
    cmd = got[0][1]
    assert cmd.command == "show.fascia" and "fascia" in cmd.heard
    assert 0.4 < cmd.start_s < cmd.end_s < 2.5  # media time of the speech in the file
    node._stop.set()
    t.join(10)
    assert not t.is_alive()
    for c in (lab, probe):
        c.close()
    proxy.stop()
    ctx.term()
