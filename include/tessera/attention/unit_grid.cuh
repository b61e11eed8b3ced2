// Unit-major grids: the decode, batch prefill and single prefill kernels run
// on a one-dimensional grid of units x heads, CTA i taking unit i / heads for
// head i % heads.
//
// Why not a (units, heads) grid: the block scheduler issues CTAs with x
// fastest, so a 2-D grid runs every unit of head 0, then of head 1, and so
// on. The planners order units heaviest first, and that order then held only
// within one head: the last head's heavy units started after every other
// head's light ones (a tail), and a grid sized by the capture bound put the
// bound's idle CTAs between heads rather than at the end, where they cost
// nothing. With the head fastest, the heads of one unit start together, the
// whole grid follows the planner's order, and the CTAs past the plan's units
// are the grid's last.
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
