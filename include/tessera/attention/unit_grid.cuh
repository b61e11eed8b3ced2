// Unit-major grids: the decode kernels run on a one-dimensional grid of
// units x KV heads, CTA i taking unit i / heads for head i % heads.
//
// Why not a (units, heads) grid: the block scheduler issues CTAs with x
// fastest, so a 2-D grid runs every unit of head 0, then of head 1, and so
// on: a grid sized by the capture bound put the bound's idle CTAs between
// heads rather than at the end, and the planner's heaviest-first order held
// only within a head. Decode reads each K/V byte once (a CTA serves a whole
// GQA group), so the order costs no L2 reuse. Prefill keeps the head-major
// (units, heads) grid: there the q tiles of one (request, head) re-read the
// same K/V, and with the head fastest the CTAs resident at once spanned
// every head (H200, causal hd 128: ragged 8 x 2048 -7%, 4 x 4096 -4%).
//
// Device header: compiles under nvcc and NVRTC.
#pragma once

namespace tessera::attention {

struct UnitHead {
  int unit;
  int head;
};

__device__ __forceinline__ UnitHead unit_head_of_cta(int heads) {
  const int cta = static_cast<int>(blockIdx.x);
  const int unit = cta / heads;
  return {unit, cta - unit * heads};
}

}  // namespace tessera::attention
