// Rotary position embedding: rotates the first rotary_dim dimensions of every
// q and k head of a token by angles pos * freq_j and copies the rest.
//
// Computes: for each token t (position p_t) and pair j < rotary_dim / 2, with
//   (c, s) = (cos, sin)(p_t * freq_j)   [float32; or read from a cos/sin cache]
//   NeoX:        (x[j], x[j + r/2]) -> (x[j] c - x[j+r/2] s, x[j+r/2] c + x[j] s)
//   interleaved: (x[2j], x[2j+1])   -> (x[2j] c - x[2j+1] s, x[2j+1] c + x[2j] s)
// for every q head and every k head of t; dims >= rotary_dim are copied.
//
// Grid: one CTA per group of blockDim.z tokens (blockIdx.x); threadIdx.z picks
// the token, threadIdx.y a set of heads (every blockDim.y-th head), threadIdx.x
// one "item" of the head row: a rotary item (kVec pairs in paired mode, kVec
// elements in in-vector mode) or a pass-through item of kVec elements. A
// thread computes the cos/sin of its pairs once and then walks its q heads and
// k heads, so sin/cos cost is paid blockDim.y times per (token, pair) and
// amortised over the heads. To keep bytes in flight, the wide path stages
// kStageHeads heads per round in shared memory with cp.async (no registers
// held while in flight); the scalar path loads kHeadBatch heads into registers
// before storing any.
// Shared memory: 32 KB static on the wide path (per-thread staging slots,
// each thread reads only its own, so no barrier), none on the scalar path.
// Limits: rotary_dim <= kMaxRotaryDim (the frequency table
// travels in the kernel parameters); the wide path (kVec = 16 / sizeof(T))
// needs 16-byte aligned rows and heads, head_dim % kVec == 0 and (NeoX)
// (rotary_dim / 2) % kVec == 0 or (interleaved) rotary_dim % kVec == 0; the
// host picks kVec = 1 otherwise.
//
// Precision: angles are float32 products pos * freq_j with freq_j rounded to
// float32 on the host; sin/cos of that angle are accurate to ~1e-6 absolute at
// any position (reduced_sincos below). The hardware __sinf alone on the raw
// angle would lose whole percents at positions ~1e5.
#pragma once

#include <cuda/std/cstdint>

#include "tessera/arch/sm80/cp_async.cuh"
#include "tessera/core/numeric.cuh"
#include "tessera/core/vec.cuh"

namespace tessera::rope {

inline constexpr int kMaxRotaryDim = 512;
inline constexpr int kMaxRotaryPairs = kMaxRotaryDim / 2;
inline constexpr int kBlockThreads = 128;
// Caps registers at 128 (4 CTAs = 16 warps per SM). Measured on H100 (bf16,
// 32/8 heads, D=128, 16k tokens): without the cap bf16 takes 130 registers,
// drops to 3 CTAs and loses ~10% bandwidth; a tighter cap (5 CTAs) spills
// and is slower still.
inline constexpr int kMinBlocksPerSm = 4;
// The wide path stages heads in shared memory through cp.async instead of
// registers (below), so it needs far fewer registers: cap at 80 (6 CTAs).
// Measured on H100 before staging: 128 registers, 25% occupancy, stalls on
// L1TEX scoreboard (ncu), 2.61 TB/s of 2.98 copy.
inline constexpr int kMinBlocksPerSmStaged = 6;
// Heads a thread stages per round on the wide path: 8 heads x 2 vectors x 16
// bytes = 256 bytes in flight per thread without holding registers; 32 KB of
// shared memory per CTA.
inline constexpr int kStageHeads = 8;
inline constexpr int kStageSlotsPerThread = 2 * kStageHeads;
// Heads whose loads are issued before the first store: 4 heads x 2 vectors x
// 16 bytes = 128 bytes in flight per thread on the NeoX wide path.
inline constexpr int kHeadBatch = 4;

// ---- Position sources: token index -> position -------------------------

// Ragged batch: token i of request b (indptr[b] <= i < indptr[b+1]) is at
// offsets[b] + i - indptr[b]. Binary search for the last b with indptr[b] <= i
// (empty requests are skipped that way); b stays in [0, batch_size) whatever
// indptr holds, so a bad indptr gives wrong positions, never a stray read.
struct RaggedPositions {
  const int32_t* indptr;
  const int32_t* offsets;
  int32_t batch_size;

  __device__ __forceinline__ int64_t operator()(int64_t token) const {
    int lo = 0;
    int hi = batch_size - 1;
    while (lo < hi) {
      const int mid = (lo + hi + 1) / 2;
      if (indptr[mid] <= token) lo = mid; else hi = mid - 1;
    }
    return static_cast<int64_t>(offsets[lo]) + token - indptr[lo];
  }
};

// One position per token, int32 or int64 (a uniform branch).
struct TokenPositions {
  const void* positions;
  bool is_int64;

  __device__ __forceinline__ int64_t operator()(int64_t token) const {
    return is_int64 ? static_cast<const int64_t*>(positions)[token]
                    : static_cast<int64_t>(static_cast<const int32_t*>(positions)[token]);
  }
};

// ---- Angle sources: (position, pair) -> (cos, sin) ------------------------

// sin and cos of a float32 angle to ~1e-6 absolute: subtract k * 2*pi in two
// FMAs (Cody-Waite, 2*pi split into two floats whose sum is off by ~1e-15, so
// k up to 2^30 keeps the reduced angle within ~2e-7), then the hardware
// approximation on [-pi, pi] (abs error 2^-21.4). Full-range sincosf is as
// accurate but carries Payne-Hanek reduction: a 32-byte stack frame and more
// registers in a kernel whose occupancy decides its bandwidth.
__device__ __forceinline__ void reduced_sincos(float angle, float& sin_value, float& cos_value) {
  constexpr float kInvTwoPi = 0.159154943091895336f;
  constexpr float kTwoPiHigh = 6.28318548202514648f;  // float32(2 pi)
  constexpr float kTwoPiLow = -1.74845553146951529e-07f;  // 2 pi - kTwoPiHigh
  const float turns = rintf(angle * kInvTwoPi);
  float reduced = fmaf(-turns, kTwoPiHigh, angle);
  reduced = fmaf(-turns, kTwoPiLow, reduced);
  __sincosf(reduced, &sin_value, &cos_value);
}

// freq_j precomputed on the host (double, then rounded to float32), so the
// llama31 blend and theta^(2j/r) cost nothing per token.
struct FrequencyTable {
  float frequencies[kMaxRotaryPairs];

  __device__ __forceinline__ void cos_sin(int64_t position, int pair, float& cos_value,
                                          float& sin_value) const {
    // Plain fp32 product, rounded once (no contraction into anything else).
    const float angle = __fmul_rn(static_cast<float>(position), frequencies[pair]);
    reduced_sincos(angle, sin_value, cos_value);
  }
};

// vLLM cos_sin_cache: row `position` holds cos of pairs [0, r/2) then sin.
struct CosSinCache {
  const float* cache;
  int64_t row_stride;
  int32_t half_rotary_dim;

  __device__ __forceinline__ void cos_sin(int64_t position, int pair, float& cos_value,
                                          float& sin_value) const {
    const float* row = cache + position * row_stride;
    cos_value = row[pair];
    sin_value = row[half_rotary_dim + pair];
  }
};

// ---- Kernel parameters ----------------------------------------------------

// One tensor of heads: element (token, head, d) at token*stride_token +
// head*stride_head + d.
template <typename T>
struct HeadRows {
  const T* input;
  T* output;
  int64_t in_stride_token;
  int64_t in_stride_head;
  int64_t out_stride_token;
  int64_t out_stride_head;
  int32_t num_heads;
  bool copy_pass_through;  // false when output is input (in place)
};

template <typename T, typename Positions, typename Angles>
struct RopeParams {
  HeadRows<T> q;
  HeadRows<T> k;
  int64_t num_tokens;
  int32_t rotary_dim;
  int32_t rotary_items;  // items covering [0, rotary_dim)
  int32_t row_items;     // rotary_items + pass-through items
  bool interleave;
  Positions positions;
  Angles angles;
};

// ---- Packed conversions ----------------------------------------------------

// Two elements per conversion instruction (cvt.rn.bf16x2.f32 / f16x2): halves
// the conversion work and, for bf16, the registers the element-wise path
// needs, which decides how many CTAs fit an SM.
template <typename T>
struct Packed2;
template <>
struct Packed2<half_t> {
  using type = __half2;
  static __device__ __forceinline__ float2 to_float2(type v) { return __half22float2(v); }
  static __device__ __forceinline__ type from_float2(float a, float b) {
    return __floats2half2_rn(a, b);
  }
};
template <>
struct Packed2<bfloat16_t> {
  using type = __nv_bfloat162;
  static __device__ __forceinline__ float2 to_float2(type v) { return __bfloat1622float2(v); }
  static __device__ __forceinline__ type from_float2(float a, float b) {
    return __floats2bfloat162_rn(a, b);
  }
};

template <typename T, int kVec>
__device__ __forceinline__ FloatVec<kVec> unpack(const Vec<T, kVec>& v) {
  if constexpr (kVec == 1) {
    return to_float(v);
  } else {
    using P = Packed2<T>;
    FloatVec<kVec> out;
#pragma unroll
    for (int i = 0; i < kVec; i += 2) {
      const float2 f = P::to_float2(*reinterpret_cast<const typename P::type*>(&v.elements[i]));
      out[i] = f.x;
      out[i + 1] = f.y;
    }
    return out;
  }
}

template <typename T, int kVec>
__device__ __forceinline__ Vec<T, kVec> pack(const FloatVec<kVec>& f) {
  if constexpr (kVec == 1) {
    return from_float<T>(f);
  } else {
    using P = Packed2<T>;
    Vec<T, kVec> out;
#pragma unroll
    for (int i = 0; i < kVec; i += 2) {
      *reinterpret_cast<typename P::type*>(&out.elements[i]) = P::from_float2(f[i], f[i + 1]);
    }
    return out;
  }
}

// ---- Per-item work over the heads of one token -------------------------------

// The heads a thread walks: first, first + step, ... The threads of one token
// split its heads into `step` interleaved sets, so one warp-wide load reads
// neighbouring heads of one token (adjacent memory) instead of the same slice
// of several tokens 10 KB apart; each set recomputes the token's sin/cos.
struct HeadSlice {
  int first;
  int step;
};

// A thread's staging slots in shared memory: slot i of thread t at
// base[i * kBlockThreads + t], so a warp's 16-byte accesses to one slot are
// consecutive (no bank conflicts). Only the owning thread touches its slots.
struct StageArea {
  uint4* base;
  int thread;

  __device__ __forceinline__ uint4* slot(int i) const { return base + i * kBlockThreads + thread; }
};

template <typename T, int kVec>
__device__ __forceinline__ Vec<T, kVec> load_slot(const uint4* slot) {
  static_assert(sizeof(Vec<T, kVec>) == sizeof(uint4), "a staged vector is 16 bytes");
  return *reinterpret_cast<const Vec<T, kVec>*>(slot);
}

// Paired mode: element i of the vector at `lo` pairs with element i at `hi`
// (NeoX: hi = lo + r/2; interleaved with kVec == 1: hi = lo + 1).
//
// The cos/sin are filled by `fill_angles` after the first batch of loads has
// been issued (once per thread, then reused for every later head and for k):
// the sincosf work then overlaps the first memory round trip instead of
// delaying it.
template <typename T, int kVec, typename FillAngles>
__device__ __forceinline__ void rotate_paired(const HeadRows<T>& rows, int64_t token,
                                              HeadSlice heads, StageArea stage, int lo, int hi,
                                              FloatVec<kVec>& cos_values,
                                              FloatVec<kVec>& sin_values, bool& have_angles,
                                              const FillAngles& fill_angles) {
  const T* __restrict__ input = rows.input + token * rows.in_stride_token;
  T* __restrict__ output = rows.output + token * rows.out_stride_token;
  if constexpr (kVec > 1) {
    // Wide path: stage kStageHeads heads per round through cp.async.
    for (int head0 = heads.first; head0 < rows.num_heads; head0 += kStageHeads * heads.step) {
#pragma unroll
      for (int b = 0; b < kStageHeads; ++b) {
        const int head = head0 + b * heads.step;
        if (head < rows.num_heads) {
          const T* row = input + head * rows.in_stride_head;
          sm80::cp_async_16(stage.slot(2 * b), row + lo);
          sm80::cp_async_16(stage.slot(2 * b + 1), row + hi);
        }
      }
      sm80::cp_async_commit();
      if (!have_angles) {
        fill_angles(cos_values, sin_values);
        have_angles = true;
      }
      sm80::cp_async_wait_all();
#pragma unroll 2
      for (int b = 0; b < kStageHeads; ++b) {
        const int head = head0 + b * heads.step;
        if (head < rows.num_heads) {
          const FloatVec<kVec> x = unpack(load_slot<T, kVec>(stage.slot(2 * b)));
          const FloatVec<kVec> y = unpack(load_slot<T, kVec>(stage.slot(2 * b + 1)));
          FloatVec<kVec> x_out;
          FloatVec<kVec> y_out;
#pragma unroll
          for (int i = 0; i < kVec; ++i) {
            x_out[i] = x[i] * cos_values[i] - y[i] * sin_values[i];
            y_out[i] = y[i] * cos_values[i] + x[i] * sin_values[i];
          }
          T* row = output + head * rows.out_stride_head;
          pack<T>(x_out).store(row + lo);
          pack<T>(y_out).store(row + hi);
        }
      }
    }
  } else {
    // Scalar path: kHeadBatch heads loaded into registers before any store.
    for (int head0 = heads.first; head0 < rows.num_heads; head0 += kHeadBatch * heads.step) {
      Vec<T, kVec> lo_vec[kHeadBatch];
      Vec<T, kVec> hi_vec[kHeadBatch];
#pragma unroll
      for (int b = 0; b < kHeadBatch; ++b) {
        if (head0 + b * heads.step < rows.num_heads) {
          const T* head = input + (head0 + b * heads.step) * rows.in_stride_head;
          lo_vec[b].load(head + lo);
          hi_vec[b].load(head + hi);
        }
      }
      if (!have_angles) {
        fill_angles(cos_values, sin_values);
        have_angles = true;
      }
#pragma unroll
      for (int b = 0; b < kHeadBatch; ++b) {
        if (head0 + b * heads.step < rows.num_heads) {
          const FloatVec<kVec> x = unpack(lo_vec[b]);
          const FloatVec<kVec> y = unpack(hi_vec[b]);
          FloatVec<kVec> x_out;
          FloatVec<kVec> y_out;
#pragma unroll
          for (int i = 0; i < kVec; ++i) {
            x_out[i] = x[i] * cos_values[i] - y[i] * sin_values[i];
            y_out[i] = y[i] * cos_values[i] + x[i] * sin_values[i];
          }
          T* head = output + (head0 + b * heads.step) * rows.out_stride_head;
          pack<T>(x_out).store(head + lo);
          pack<T>(y_out).store(head + hi);
        }
      }
    }
  }
}

// In-vector mode (interleaved, kVec >= 2): the vector at `start` holds pairs
// (2p, 2p+1); cos/sin arrive duplicated per element (cos[2p] == cos[2p+1]).
// Angles filled lazily as in rotate_paired.
template <typename T, int kVec, typename FillAngles>
__device__ __forceinline__ void rotate_in_vector(const HeadRows<T>& rows, int64_t token,
                                                 HeadSlice heads, StageArea stage, int start,
                                                 FloatVec<kVec>& cos_values,
                                                 FloatVec<kVec>& sin_values, bool& have_angles,
                                                 const FillAngles& fill_angles) {
  static_assert(kVec % 2 == 0, "in-vector pairs need an even vector width");
  const T* __restrict__ input = rows.input + token * rows.in_stride_token;
  T* __restrict__ output = rows.output + token * rows.out_stride_token;
  // Staged through cp.async like the wide paired path, one slot per head.
  for (int head0 = heads.first; head0 < rows.num_heads; head0 += kStageHeads * heads.step) {
#pragma unroll
    for (int b = 0; b < kStageHeads; ++b) {
      const int head = head0 + b * heads.step;
      if (head < rows.num_heads) {
        sm80::cp_async_16(stage.slot(b), input + head * rows.in_stride_head + start);
      }
    }
    sm80::cp_async_commit();
    if (!have_angles) {
      fill_angles(cos_values, sin_values);
      have_angles = true;
    }
    sm80::cp_async_wait_all();
#pragma unroll 2
    for (int b = 0; b < kStageHeads; ++b) {
      const int head = head0 + b * heads.step;
      if (head < rows.num_heads) {
        const FloatVec<kVec> x = unpack(load_slot<T, kVec>(stage.slot(b)));
        FloatVec<kVec> x_out;
#pragma unroll
        for (int i = 0; i < kVec; i += 2) {
          x_out[i] = x[i] * cos_values[i] - x[i + 1] * sin_values[i];
          x_out[i + 1] = x[i + 1] * cos_values[i] + x[i] * sin_values[i];
        }
        pack<T>(x_out).store(output + head * rows.out_stride_head + start);
      }
    }
  }
}

// Dims past rotary_dim: a straight copy (skipped in place).
template <typename T, int kVec>
__device__ __forceinline__ void copy_pass_through(const HeadRows<T>& rows, int64_t token,
                                                  HeadSlice heads, int start) {
  if (!rows.copy_pass_through) return;
  const T* __restrict__ input = rows.input + token * rows.in_stride_token;
  T* __restrict__ output = rows.output + token * rows.out_stride_token;
  for (int head0 = heads.first; head0 < rows.num_heads; head0 += kHeadBatch * heads.step) {
    Vec<T, kVec> vec[kHeadBatch];
#pragma unroll
    for (int b = 0; b < kHeadBatch; ++b) {
      if (head0 + b * heads.step < rows.num_heads) vec[b].load(input + (head0 + b * heads.step) * rows.in_stride_head + start);
    }
#pragma unroll
    for (int b = 0; b < kHeadBatch; ++b) {
      if (head0 + b * heads.step < rows.num_heads) vec[b].store(output + (head0 + b * heads.step) * rows.out_stride_head + start);
    }
  }
}

// ---- The kernel -------------------------------------------------------------

// Items of a head row for vector width kVec:
//   paired mode (NeoX, or interleaved with kVec == 1): rotary_dim / 2 / kVec
//   in-vector mode (interleaved, kVec > 1):            rotary_dim / kVec
//   pass-through:                          (head_dim - rotary_dim) / kVec
template <typename T, int kVec, typename Positions, typename Angles>
__global__ void __launch_bounds__(kBlockThreads,
                                  kVec > 1 ? kMinBlocksPerSmStaged : kMinBlocksPerSm)
    rope_kernel(const __grid_constant__ RopeParams<T, Positions, Angles> params) {
  static_assert(sizeof(T) == 2, "RoPE kernels take 16-bit element types");
  static_assert(kVec == 1 || kVec * sizeof(T) == 16, "wide path moves 16 bytes per access");
  // Staging slots of the wide path (32 KB); the scalar path uses registers.
  __shared__ uint4 stage_storage[kVec > 1 ? kStageSlotsPerThread * kBlockThreads : 1];
  const StageArea stage{stage_storage,
                        static_cast<int>(threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y *
                                                                      threadIdx.z))};
  // threadIdx: x = item of a head row, y = head set, z = token in the CTA.
  const int64_t token = static_cast<int64_t>(blockIdx.x) * blockDim.z + threadIdx.z;
  if (token >= params.num_tokens) return;
  const HeadSlice heads{static_cast<int>(threadIdx.y), static_cast<int>(blockDim.y)};
  const int64_t position = params.positions(token);

  for (int item = threadIdx.x; item < params.row_items; item += blockDim.x) {
    if (item >= params.rotary_items) {
      const int start = params.rotary_dim + (item - params.rotary_items) * kVec;
      copy_pass_through<T, kVec>(params.q, token, heads, start);
      copy_pass_through<T, kVec>(params.k, token, heads, start);
      continue;
    }
    FloatVec<kVec> cos_values;
    FloatVec<kVec> sin_values;
    bool have_angles = false;
    if constexpr (kVec > 1) {
      if (params.interleave) {  // in-vector mode
        const int first_pair = item * (kVec / 2);
        const auto fill = [&](FloatVec<kVec>& c, FloatVec<kVec>& s) {
#pragma unroll
          for (int i = 0; i < kVec; i += 2) {
            params.angles.cos_sin(position, first_pair + i / 2, c[i], s[i]);
            c[i + 1] = c[i];
            s[i + 1] = s[i];
          }
        };
        rotate_in_vector<T, kVec>(params.q, token, heads, stage, item * kVec, cos_values, sin_values,
                                  have_angles, fill);
        rotate_in_vector<T, kVec>(params.k, token, heads, stage, item * kVec, cos_values, sin_values,
                                  have_angles, fill);
        continue;
      }
    }
    const int first_pair = item * kVec;
    const auto fill = [&](FloatVec<kVec>& c, FloatVec<kVec>& s) {
#pragma unroll
      for (int i = 0; i < kVec; ++i) params.angles.cos_sin(position, first_pair + i, c[i], s[i]);
    };
    // kVec == 1 interleaved: the pair is (2j, 2j+1); NeoX: (j, j + r/2).
    const int lo = params.interleave ? 2 * first_pair : first_pair;
    const int hi = params.interleave ? lo + 1 : lo + params.rotary_dim / 2;
    rotate_paired<T, kVec>(params.q, token, heads, stage, lo, hi, cos_values, sin_values, have_angles, fill);
    rotate_paired<T, kVec>(params.k, token, heads, stage, lo, hi, cos_values, sin_values, have_angles, fill);
  }
}

}  // namespace tessera::rope
