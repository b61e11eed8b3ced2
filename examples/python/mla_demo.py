"""A DeepSeek-shaped MLA layer decoding through Tessera's paged latent cache.

Random weights in DeepSeek-V3's shapes at tensor-parallel 8 (16 heads, a
128-wide nope query / key / value per head, a 64-wide RoPE key, a 512-wide
compressed latent). Each step appends one latent row per request to the
paged cache, runs attention with the matrix absorption (W_UK folded into the
query, W_UV applied to the latent output) through
tessera.mla.BatchMLAPagedAttentionWrapper, and checks the layer's output
against the un-absorbed computation (per-head K and V expanded from the
latent, plain softmax attention in float64). Needs a CUDA GPU.

    TESSERA_LIBRARY=build/libtessera.so python3 examples/python/mla_demo.py
"""

from __future__ import annotations

import math
import pathlib
import sys

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "python"))
import tessera  # noqa: E402

HEADS, NOPE, ROPE, VDIM, RANK, HIDDEN = 16, 128, 64, 128, 512, 1024
PAGE = 64
DTYPE = torch.bfloat16


def rope(x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """NeoX-style rotation of the last dim of x [..., tokens, 64] by positions."""
    half = x.shape[-1] // 2
    freq = 1.0 / (10000.0 ** (torch.arange(half, device=x.device, dtype=torch.float64) / half))
    angle = positions.to(torch.float64)[:, None] * freq[None, :]
    cos, sin = angle.cos().to(x.dtype), angle.sin().to(x.dtype)
    a, b = x[..., :half], x[..., half:]
    return torch.cat([a * cos - b * sin, a * sin + b * cos], dim=-1)


class Layer:
    """The attention half of an MLA block, random weights."""

    def __init__(self, device):
        g = torch.Generator(device="cpu").manual_seed(0)

        def w(*shape):
            return (torch.randn(*shape, generator=g) / math.sqrt(shape[-1])).to(device, DTYPE)

        self.w_q = w(HEADS * (NOPE + ROPE), HIDDEN)   # query (DeepSeek's q LoRA folded in)
        self.w_dkv = w(RANK, HIDDEN)                   # latent down-projection
        self.w_kr = w(ROPE, HIDDEN)                    # shared RoPE key
        self.w_uk = w(HEADS, NOPE, RANK)               # latent -> per-head nope key
        self.w_uv = w(HEADS, VDIM, RANK)               # latent -> per-head value
        self.scale = 1.0 / math.sqrt(NOPE + ROPE)

    def queries(self, h, positions):
        q = (h @ self.w_q.T).view(-1, HEADS, NOPE + ROPE)
        q_nope, q_pe = q[..., :NOPE], q[..., NOPE:]
        q_pe = rope(q_pe.transpose(0, 1), positions).transpose(0, 1)
        return q_nope, q_pe.contiguous()

    def latent(self, h, positions):
        c_kv = h @ self.w_dkv.T
        k_pe = rope((h @ self.w_kr.T)[None], positions)[0]
        return c_kv, k_pe


def main() -> int:
    if not torch.cuda.is_available():
        print("mla_demo: needs a CUDA GPU", file=sys.stderr)
        return 1
    device = torch.device("cuda")
    torch.manual_seed(0)
    layer = Layer(device)
    prompt_lens = [1, 63, 64, 65, 700, 2049]
    batch, steps = len(prompt_lens), 4
    max_pages = sum((n + steps + PAGE - 1) // PAGE for n in prompt_lens)
    ckv_cache = torch.zeros(max_pages, PAGE, RANK, device=device, dtype=DTYPE)
    kpe_cache = torch.zeros(max_pages, PAGE, ROPE, device=device, dtype=DTYPE)
    # Each request's pages, shuffled over the cache.
    order = torch.randperm(max_pages).tolist()
    pages, cursor = [], 0
    for n in prompt_lens:
        count = (n + steps + PAGE - 1) // PAGE
        pages.append(order[cursor:cursor + count])
        cursor += count
    # The prompts' latent rows (as a prefill would have written them), kept
    # beside the cache for the reference.
    hidden_history = [torch.randn(n, HIDDEN, device=device, dtype=DTYPE) for n in prompt_lens]
    lengths = list(prompt_lens)

    def write_rows(b, first, rows_c, rows_k):
        for i in range(rows_c.shape[0]):
            pos = first + i
            page = pages[b][pos // PAGE]
            ckv_cache[page, pos % PAGE] = rows_c[i]
            kpe_cache[page, pos % PAGE] = rows_k[i]

    for b, h in enumerate(hidden_history):
        c, k = layer.latent(h, torch.arange(h.shape[0], device=device))
        write_rows(b, 0, c, k)

    workspace = torch.empty(256 << 20, dtype=torch.uint8, device=device)
    mla = tessera.mla.BatchMLAPagedAttentionWrapper(workspace)
    worst = 0.0
    for step in range(steps):
        h = torch.randn(batch, HIDDEN, device=device, dtype=DTYPE)
        positions = torch.tensor(lengths, device=device)
        for b in range(batch):  # this token's latent row joins the cache
            c, k = layer.latent(h[b:b + 1], positions[b:b + 1])
            write_rows(b, lengths[b], c, k)
            hidden_history[b] = torch.cat([hidden_history[b], h[b:b + 1]])
        lengths = [n + 1 for n in lengths]
        q_nope, q_pe = layer.queries(h, positions)
        # Absorption: q_nope [B, H, 128] -> [B, H, 512] through W_UK.
        q_latent = torch.einsum("bhd,hdr->bhr", q_nope.float(), layer.w_uk.float()).to(DTYPE)
        kv_indptr = torch.tensor([0] + [len(p) for p in pages], dtype=torch.int32).cumsum(0)
        kv_indices = torch.tensor([p for ps in pages for p in ps], dtype=torch.int32)
        mla.plan(torch.arange(batch + 1, dtype=torch.int32), kv_indptr.to(torch.int32),
                 kv_indices, torch.tensor(lengths, dtype=torch.int32), HEADS, RANK, ROPE, PAGE,
                 False, layer.scale, DTYPE, DTYPE)
        out_latent = mla.run(q_latent, q_pe, ckv_cache, kpe_cache)
        out = torch.einsum("bhr,hvr->bhv", out_latent.float(), layer.w_uv.float())

        # Un-absorbed reference, float64: per-head K = [W_UK c_kv, k_pe], V = W_UV c_kv.
        for b in range(batch):
            n = lengths[b]
            c_kv, k_pe = layer.latent(hidden_history[b], torch.arange(n, device=device))
            k_nope = torch.einsum("hdr,nr->hnd", layer.w_uk.double(), c_kv.double())
            v = torch.einsum("hvr,nr->hnv", layer.w_uv.double(), c_kv.double())
            logits = (torch.einsum("hd,hnd->hn", q_nope[b].double(), k_nope) +
                      q_pe[b].double() @ k_pe.double().T) * layer.scale
            ref = torch.einsum("hn,hnv->hv", logits.softmax(-1), v)
            err = ((out[b].double() - ref).norm() / ref.norm()).item()
            worst = max(worst, err)
        print(f"step {step}: kv_len {min(lengths)}..{max(lengths)}, "
              f"worst relative error vs un-absorbed float64 {worst:.2e}")
    ok = worst < 2e-2  # bf16 inputs, the absorbed q rounded to bf16
    print("mla_demo:", "OK" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
