#!/usr/bin/env python3
"""PyTorch reference of @mm/projectors' input-projector training (issue 13), for benchmarks.

Trains an LLaVA-style projector (`mlp`: W2 . gelu_tanh(W0 x + b0) + b2, or `linear`:
W0 x + b0) on cached vision-encoder features, with the llama LLM frozen, exactly as the
ggml trainer does: the picture's projected rows are spliced into the token embeddings, the loss is
the mean cross-entropy over every answer token of the batch, AdamW per stage with warmup + cosine.

  /usr/bin/python3 train_torch.py PREPARED_DIR [--threads 2] [--steps N] [--check-loss] [--out W.f32]
                                  [--log-every 10] [--matmul onednn|blas]

stdout: one JSON line per logged step (loss and samples/s averaged over the steps since the last
log line), then a final {"done": true, ...} line. --check-loss prints only the loss of the first
batch of the first stage (samples 0..batchSize-1) with the initial weights.
"""
import argparse
import json
import math
import os
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

# ---- GGUF (v2 / v3) reader ------------------------------------------------------------------

_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_NUMPY = {0: "<u1", 1: "<i1", 2: "<u2", 3: "<i2", 4: "<u4", 5: "<i4", 6: "<f4", 7: "<u1", 10: "<u8", 11: "<i8",
          12: "<f8"}
_STRING, _ARRAY = 8, 9
GGML_F32, GGML_F16, GGML_BF16 = 0, 1, 30


class Gguf:
    def __init__(self, path):
        with open(path, "rb") as f:
            self.buf = f.read()
        self.pos = 0
        if self.buf[:4] != b"GGUF":
            raise ValueError(f"{path}: not a GGUF file")
        self.pos = 4
        version = self._scalar(4)
        if version not in (2, 3):
            raise ValueError(f"{path}: GGUF version {version} is not supported")
        n_tensors, n_kv = self._scalar(10), self._scalar(10)
        self.kv = {}
        for _ in range(n_kv):
            key = self._string()
            self.kv[key] = self._value(self._scalar(4))
        infos = []
        for _ in range(n_tensors):
            name = self._string()
            ne = [self._scalar(10) for _ in range(self._scalar(4))]
            infos.append((name, ne, self._scalar(4), self._scalar(10)))
        align = int(self.kv.get("general.alignment", 32))
        data = (self.pos + align - 1) // align * align
        self.tensors = {name: (ne, typ, data + off) for name, ne, typ, off in infos}

    def _scalar(self, typ):
        fmt = _SCALARS[typ]
        v = struct.unpack_from(fmt, self.buf, self.pos)[0]
        self.pos += struct.calcsize(fmt)
        return v

    def _string(self):
        n = self._scalar(10)
        s = self.buf[self.pos:self.pos + n].decode("utf-8", errors="replace")
        self.pos += n
        return s

    def _value(self, typ):
        if typ == _STRING:
            return self._string()
        if typ == _ARRAY:
            elem, count = self._scalar(4), self._scalar(10)
            if elem in _NUMPY:  # numeric arrays in one read
                a = np.frombuffer(self.buf, dtype=_NUMPY[elem], count=count, offset=self.pos)
                self.pos += a.nbytes
                return a
            return [self._value(elem) for _ in range(count)]  # strings or nested arrays
        if typ not in _SCALARS:
            raise ValueError(f"unknown GGUF value type {typ}")
        return self._scalar(typ)

    def get(self, key, default=None):
        v = self.kv.get(key, default)
        if isinstance(v, np.ndarray):  # a per-layer array: only a uniform one is supported
            if v.size == 0 or not np.all(v == v[0]):
                raise ValueError(f"{key}: per-layer values are not supported")
            v = v[0].item()
        return v

    def tensor(self, name, required=True):
        if name not in self.tensors:
            if required:
                raise ValueError(f"tensor {name} is missing")
            return None
        ne, typ, off = self.tensors[name]
        n = int(np.prod(ne))
        if typ == GGML_F32:
            a = np.frombuffer(self.buf, dtype="<f4", count=n, offset=off)
        elif typ == GGML_F16:
            a = np.frombuffer(self.buf, dtype="<f2", count=n, offset=off).astype(np.float32)
        elif typ == GGML_BF16:
            a = (np.frombuffer(self.buf, dtype="<u2", count=n, offset=off).astype(np.uint32) << 16).view(np.float32)
        else:
            raise ValueError(f"tensor {name} has ggml type {typ}: only f32, f16 and bf16 are supported")
        # ggml ne0 is the fastest dimension: a ggml [in, out] matrix is a torch [out, in] one
        return torch.from_numpy(a.astype(np.float32).reshape(list(reversed(ne))))


# ---- matrix products -------------------------------------------------------------------------
# Debian's torch 1.13 sends mm / bmm to the reference (netlib) BLAS, 10-15x slower here than its
# bundled oneDNN. A linear layer is a 1x1 convolution over rows, and a batch of matrix products a
# grouped one, both of which ATen runs with oneDNN (forward and backward). --matmul blas keeps the
# plain ops; so do row counts under 16, for which ATen may not pick oneDNN.
USE_ONEDNN = True


def linear(x, w, b=None):
    """x [..., in] . w[out, in]^T (+ b)."""
    rows = x.numel() // x.shape[-1]
    if not USE_ONEDNN or rows < 16:
        return F.linear(x, w, b)
    y = F.conv2d(x.reshape(rows, x.shape[-1], 1, 1), w[:, :, None, None], b)
    return y.view(*x.shape[:-1], w.shape[0])


def matmul_t(a, bt):
    """a [..., M, K] . bt[..., N, K]^T -> [..., M, N], one product per leading index."""
    lead, (M, K), N = a.shape[:-2], a.shape[-2:], bt.shape[-2]
    if not USE_ONEDNN or M < 16:
        return torch.matmul(a, bt.transpose(-1, -2))
    G = a.numel() // (M * K)
    x = a.reshape(G, M, K).transpose(0, 1).reshape(M, G * K, 1, 1)  # row m: the G rows m side by side
    y = F.conv2d(x, bt.reshape(G * N, K, 1, 1), groups=G)  # [M, G * N]
    return y.view(M, G, N).transpose(0, 1).reshape(*lead, M, N)


# ---- frozen llama LLM (llama.cpp llm_build_llama) -------------------------------------------

class Llama:
    def __init__(self, path):
        g = Gguf(path)
        if g.get("general.architecture") != "llama":
            raise ValueError(f"{path}: architecture '{g.get('general.architecture')}' is not llama")
        if g.get("llama.rope.scaling.type", "none") != "none":
            raise ValueError(f"{path}: rope scaling is not implemented")
        self.n_embd = int(g.get("llama.embedding_length"))
        self.n_layer = int(g.get("llama.block_count"))
        self.n_head = int(g.get("llama.attention.head_count"))
        self.n_head_kv = int(g.get("llama.attention.head_count_kv", self.n_head))
        self.head_dim = self.n_embd // self.n_head
        self.n_rot = int(g.get("llama.rope.dimension_count", self.head_dim))
        self.eps = float(g.get("llama.attention.layer_norm_rms_epsilon", 1e-5))
        self.freq_base = float(g.get("llama.rope.freq_base", 10000.0))
        factor = float(g.get("llama.rope.scaling.factor", 0.0))
        self.freq_scale = 1.0 / factor if factor != 0.0 else 1.0
        self.n_ctx = int(g.get("llama.context_length", 1 << 30))
        # plain tensors (requires_grad False): the LLM is frozen, gradients only pass through it
        self.tok_embd = g.tensor("token_embd.weight")  # [n_vocab, n_embd]
        self.n_vocab = self.tok_embd.shape[0]
        self.out_norm = g.tensor("output_norm.weight")
        out = g.tensor("output.weight", required=False)
        self.output = out if out is not None else self.tok_embd
        self.rope_freqs = g.tensor("rope_freqs.weight", required=False)
        self.layers = []
        for i in range(self.n_layer):
            w = lambda n, req=True: g.tensor(f"blk.{i}.{n}", required=req)
            self.layers.append({n: w(n + ".weight") for n in (
                "attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down")})
            for n in ("attn_q", "attn_k", "attn_v", "attn_output"):
                self.layers[-1][n + ".bias"] = w(n + ".bias", False)
        self._rope_cache = {}

    def rms(self, x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * w

    def rope_tables(self, T):
        """cos / sin [T, n_rot / 2] of ggml's NORM-mode RoPE (yarn off) at positions 0..T-1."""
        if T not in self._rope_cache:
            i = np.arange(self.n_rot // 2, dtype=np.float64)
            inv = self.freq_base ** (-2.0 * i / self.n_rot) * self.freq_scale
            if self.rope_freqs is not None:
                inv = inv / self.rope_freqs.double().numpy()
            ang = torch.from_numpy(np.outer(np.arange(T, dtype=np.float64), inv))
            self._rope_cache[T] = (ang.cos().float(), ang.sin().float())
        return self._rope_cache[T]

    def rope(self, x, cos, sin):
        """x [B, T, heads, hd]: rotates the adjacent pairs (x[2i], x[2i+1]) for 2i < n_rot."""
        B, T, nh, hd = x.shape
        r = x[..., :self.n_rot].reshape(B, T, nh, self.n_rot // 2, 2)
        a, b = r[..., 0], r[..., 1]
        c, s = cos[None, :, None, :], sin[None, :, None, :]
        rot = torch.stack((a * c - b * s, a * s + b * c), dim=-1).reshape(B, T, nh, self.n_rot)
        return rot if self.n_rot == hd else torch.cat((rot, x[..., self.n_rot:]), dim=-1)

    def blocks(self, x):
        """x [B, T, n_embd] -> hidden states after the last block (causal over each row)."""
        B, T, E = x.shape
        H, Hkv, hd = self.n_head, self.n_head_kv, self.head_dim
        cos, sin = self.rope_tables(T)
        mask = torch.full((T, T), float("-inf")).triu_(1)
        scale = 1.0 / math.sqrt(hd)
        for l in self.layers:
            n = self.rms(x, l["attn_norm"])
            q = linear(n, l["attn_q"], l["attn_q.bias"]).view(B, T, H, hd)
            k = linear(n, l["attn_k"], l["attn_k.bias"]).view(B, T, Hkv, hd)
            v = linear(n, l["attn_v"], l["attn_v.bias"]).view(B, T, Hkv, hd)
            q = self.rope(q, cos, sin).transpose(1, 2)  # [B, H, T, hd]
            k = self.rope(k, cos, sin).transpose(1, 2)
            v = v.transpose(1, 2)
            if Hkv != H:  # GQA: head h reads kv head h // (H / Hkv)
                k = k.repeat_interleave(H // Hkv, dim=1)
                v = v.repeat_interleave(H // Hkv, dim=1)
            att = torch.softmax(matmul_t(q, k) * scale + mask, dim=-1)  # [B, H, T, T]
            o = matmul_t(att, v.transpose(-1, -2)).transpose(1, 2).reshape(B, T, E)
            h = x + linear(o, l["attn_output"], l["attn_output.bias"])
            n = self.rms(h, l["ffn_norm"])
            x = h + linear(F.silu(linear(n, l["ffn_gate"])) * linear(n, l["ffn_up"]), l["ffn_down"])
        return x

    def head(self, h):
        return linear(self.rms(h, self.out_norm), self.output)


# ---- the projector and one batch ------------------------------------------------------------

class Projector(torch.nn.Module):
    def __init__(self, kind, n_embd_v, n_hidden, n_embd):
        super().__init__()
        self.kind = kind
        self.mm0 = torch.nn.Linear(n_embd_v, n_embd if kind == "linear" else n_hidden)
        self.mm2 = torch.nn.Linear(n_hidden, n_embd) if kind == "mlp" else None

    def params(self):  # the order of init.f32 / --out
        return [self.mm0.weight, self.mm0.bias] + ([self.mm2.weight, self.mm2.bias] if self.mm2 is not None else [])

    def load_flat(self, flat):
        off = 0
        with torch.no_grad():
            for p in self.params():
                p.copy_(torch.from_numpy(flat[off:off + p.numel()]).view_as(p))
                off += p.numel()
        if off != flat.size:
            raise ValueError(f"init.f32 holds {flat.size} floats, the projector {off}")

    def forward(self, x):
        y = linear(x, self.mm0.weight, self.mm0.bias)
        if self.mm2 is None:  # linear: one matrix and bias
            return y
        return linear(F.gelu(y, approximate="tanh"), self.mm2.weight, self.mm2.bias)


def batch_loss(llm, proj, features, samples, n_patches):
    """Mean cross-entropy over every answer token of `samples`, and the number of answer tokens."""
    P = n_patches
    T = max(len(s["tokens"]) + P for s in samples)
    images = sorted({s["image"] for s in samples})
    local = {img: j for j, img in enumerate(images)}
    txt_rows, txt_ids, img_rows, img_src, ans_rows, labels = [], [], [], [], [], []
    for b, s in enumerate(samples):
        tok, ip, base = s["tokens"], s["imagePos"], b * T
        txt_rows += list(range(base, base + ip)) + list(range(base + ip + P, base + len(tok) + P))
        txt_ids += tok
        img_rows += range(base + ip, base + ip + P)
        img_src += range(local[s["image"]] * P, local[s["image"]] * P + P)
        ans_rows += [base + q - 1 for q in s["targets"]]
        labels += [tok[q - P] for q in s["targets"]]
    as_idx = lambda a: torch.tensor(a, dtype=torch.long)
    emb = proj(features[images].reshape(len(images) * P, -1))  # [images * P, n_embd]
    x = torch.zeros(len(samples) * T, llm.n_embd)  # padding rows stay zero
    x = x.index_copy(0, as_idx(txt_rows), llm.tok_embd[as_idx(txt_ids)])
    x = x.index_copy(0, as_idx(img_rows), emb[as_idx(img_src)])
    h = llm.blocks(x.view(len(samples), T, llm.n_embd)).reshape(len(samples) * T, llm.n_embd)
    logits = llm.head(h[as_idx(ans_rows)])  # only the rows that predict an answer token
    return F.cross_entropy(logits, as_idx(labels)), len(labels)


def lr_at(stage, s):
    lr, warmup, steps = stage["lr"], stage.get("warmup", 0), stage["steps"]
    if s < warmup:
        return lr * (s + 1) / warmup
    if stage.get("schedule", "constant") == "cosine":
        return lr * 0.5 * (1.0 + math.cos(math.pi * (s - warmup) / max(1, steps - warmup)))
    return lr


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("prepared")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=None, help="cap on the total steps over all stages")
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--check-loss", action="store_true")
    ap.add_argument("--out", default=None)
    ap.add_argument("--matmul", choices=["onednn", "blas"], default="onednn",
                    help="onednn (default): matrix products as 1x1 convolutions (see linear()); blas: plain ops")
    args = ap.parse_args()
    global USE_ONEDNN
    USE_ONEDNN = args.matmul == "onednn"
    torch.set_num_interop_threads(1)
    torch.set_num_threads(args.threads)

    with open(os.path.join(args.prepared, "prepared.json")) as f:
        prep = json.load(f)
    P, Dv = prep["nPatches"], prep["nEmbdV"]
    features = np.fromfile(os.path.join(args.prepared, "features.f32"), dtype="<f4")
    if features.size != prep["nImages"] * P * Dv:
        raise ValueError(f"features.f32 holds {features.size} floats, not nImages * nPatches * nEmbdV")
    features = torch.from_numpy(features.reshape(prep["nImages"], P, Dv))
    llm = Llama(prep["model"])
    if prep["nEmbd"] != llm.n_embd:
        raise ValueError(f"prepared.json says nEmbd {prep['nEmbd']}, the LLM has {llm.n_embd}")
    proj = Projector(prep["projector"], Dv, prep["nHidden"], llm.n_embd)
    proj.load_flat(np.fromfile(os.path.join(args.prepared, "init.f32"), dtype="<f4"))

    if args.check_loss:
        first = prep["stages"][0]["samples"][:prep["batchSize"]]
        with torch.no_grad():
            loss, n = batch_loss(llm, proj, features, first, P)
        print(json.dumps({"loss": loss.item(), "nTargets": n}))
        return

    bs, total_steps, done_samples, t_train = prep["batchSize"], 0, 0, 0.0
    stage_stats = []
    for si, stage in enumerate(prep["stages"]):
        if args.steps is not None and total_steps >= args.steps:
            break
        samples = stage["samples"]
        per_epoch = len(samples) // bs
        if per_epoch == 0:
            raise ValueError(f"stage {si}: {len(samples)} samples are fewer than a batch of {bs}")
        opt = torch.optim.AdamW(proj.params(), lr=stage["lr"], betas=(prep["beta1"], prep["beta2"]),
                                eps=prep["eps"], weight_decay=prep["weightDecay"])
        rng = np.random.RandomState(prep["seed"] + si)
        order, n_steps = [], stage["steps"]
        if args.steps is not None:
            n_steps = min(n_steps, args.steps - total_steps)
        t_stage, win_loss, win_steps, t_win = time.perf_counter(), 0.0, 0, time.perf_counter()
        for s in range(n_steps):
            if s % per_epoch == 0:
                order = rng.permutation(len(samples))  # each epoch, the last partial batch dropped
            batch = [samples[i] for i in order[(s % per_epoch) * bs:(s % per_epoch + 1) * bs]]
            for g in opt.param_groups:
                g["lr"] = lr_at(stage, s)
            opt.zero_grad(set_to_none=True)
            loss, _ = batch_loss(llm, proj, features, batch, P)
            loss.backward()
            opt.step()
            win_loss += loss.item()
            win_steps += 1
            if (s + 1) % args.log_every == 0 or s + 1 == n_steps:
                now = time.perf_counter()
                print(json.dumps({"stage": stage["kind"], "step": s + 1, "loss": win_loss / win_steps,
                                  "samplesPerSec": win_steps * bs / (now - t_win),
                                  "elapsedMs": round((t_train + now - t_stage) * 1000, 1)}), flush=True)
                win_loss, win_steps, t_win = 0.0, 0, now
        secs = time.perf_counter() - t_stage
        t_train += secs
        total_steps += n_steps
        done_samples += n_steps * bs
        stage_stats.append({"kind": stage["kind"], "steps": n_steps, "samples": n_steps * bs,
                            "seconds": round(secs, 3), "samplesPerSec": n_steps * bs / secs if secs > 0 else 0.0})

    if args.out:
        np.concatenate([p.detach().numpy().ravel() for p in proj.params()]).astype("<f4").tofile(args.out)
    print(json.dumps({"done": True, "samples": done_samples, "seconds": round(t_train, 3),
                      "samplesPerSec": done_samples / t_train if t_train > 0 else 0.0, "stages": stage_stats,
                      "threads": args.threads, "matmul": args.matmul}))


if __name__ == "__main__":
    sys.exit(main())
