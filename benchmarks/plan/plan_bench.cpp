// tessera_plan_bench: host time of the batch prefill plan() on this machine's
// CPU (no GPU needed): everything BatchPrefillWithPagedKVCache::plan does up
// to the schedule's device copy (KV lengths from the page table, the planner
// writing the schedule into a workspace-sized host buffer as plan() writes it
// into its pinned staging, the planned arrays kept for run()'s checks), for
// tessera_bench's batch_prefill_plan_host batch: requests with 1..512 query
// tokens and up to 4096 KV tokens, 32 q / 8 KV heads, head_dim 128, page 16,
// causal, at batch 1 / 64 / 256, as an H100 / H200 plans it (132 SMs) for
// the Hopper kernel (sm90: 128-row tiles, one CTA per SM) and the FA2-style
// one (fa2: 64- or 128-row tiles, 2 CTAs per SM). The part left out is the
// CUDA calls of plan(): the staging slot's event wait, one cudaMemcpyAsync
// and one event record (tessera_bench's row includes them).
//
// Prints tessera_bench's result lines (median microseconds of 2000 plans
// after 200 warm-up plans).
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "api/batch_decode_args.h"
#include "plan/prefill_planner.h"

namespace {

using tessera::PrefillMergeTile;
using tessera::PrefillScheduleHeader;
using tessera::PrefillWorkUnit;
using tessera::plan::PrefillPlannerInput;

constexpr int64_t kQoHeads = 32, kKvHeads = 8, kHeadDim = 128, kPageSize = 16;
constexpr int64_t kNumSms = 132;  // H100 SXM / H200
constexpr int kWarmup = 200, kSamples = 2000;

struct Batch {
  std::vector<int32_t> qo_indptr{0}, kv_indptr{0}, last_page_len;
};

// tessera_bench's run_plan_time batch (the same generator and seed), cut
// to `batch` requests.
Batch mixed_batch(int batch) {
  std::mt19937 rng(5);
  Batch b;
  for (int i = 0; i < batch; ++i) {
    const auto qo = 1 + static_cast<int32_t>(rng() % 512);
    const int32_t kv = qo + static_cast<int32_t>(rng() % 3584);
    b.qo_indptr.push_back(b.qo_indptr.back() + qo);
    const int32_t pages = (kv + kPageSize - 1) / kPageSize;
    b.kv_indptr.push_back(b.kv_indptr.back() + pages);
    b.last_page_len.push_back(kv - (pages - 1) * static_cast<int32_t>(kPageSize));
  }
  return b;
}

struct Backend {
  const char* name;
  int64_t max_q_tile_rows;
  bool only_max_q_tile;
  int64_t ctas_per_sm;
};

// What PrefillPlanState holds for the plan's bounds (batch_prefill_plan.cpp).
struct PlanObject {
  PrefillPlannerInput input;
  tessera::plan::PrefillWorkspaceLayout layout;
  std::vector<unsigned char> staging;  // stands in for the pinned slot
  tessera::plan::PrefillPlannerScratch scratch;
  std::vector<int64_t> kv_lengths;
  std::vector<int32_t> planned_qo_indptr, planned_kv_indptr, planned_last_page_len;

  PlanObject(const Batch& b, const Backend& backend) {
    const int64_t max_batch = static_cast<int64_t>(b.last_page_len.size());
    const int64_t max_tokens = std::max<int64_t>(1, b.qo_indptr.back());
    auto derived = tessera::plan::derive_prefill_bounds(max_batch, max_tokens, kQoHeads, kKvHeads,
                                                        true, kNumSms, 2);
    derived.max_ctas = derived.max_work_units;
    layout = tessera::plan::prefill_workspace_layout(derived.max_work_units, derived.max_ctas,
                                                     derived.max_partial_rows, kQoHeads, kKvHeads,
                                                     kHeadDim, true);
    staging.resize(layout.partial_out_offset);
    input.num_qo_heads = kQoHeads;
    input.num_kv_heads = kKvHeads;
    input.head_dim = kHeadDim;
    input.causal = true;
    input.pack_gqa = true;
    input.max_q_tile_rows = backend.max_q_tile_rows;
    input.only_max_q_tile = backend.only_max_q_tile;
    input.one_unit_per_cta = true;
    input.num_sms = kNumSms;
    input.ctas_per_sm = backend.ctas_per_sm;
    input.max_batch_size = max_batch;
    input.max_total_qo_tokens = max_tokens;
    input.max_work_units = derived.max_work_units;
    input.max_partial_rows = derived.max_partial_rows;
  }

  // BatchPrefillWithPagedKVCache::plan's host work, the CUDA calls left out.
  int64_t plan(const Batch& b) {
    tessera::detail::plan_kv_lengths(b.kv_indptr, b.last_page_len, kPageSize,
                                     input.max_batch_size, kv_lengths);
    input.qo_indptr = b.qo_indptr;
    input.kv_indptr = b.kv_indptr;
    input.kv_lengths = kv_lengths;
    unsigned char* out = staging.data();
    const std::size_t units = static_cast<std::size_t>(input.max_work_units);
    const tessera::plan::PrefillScheduleTarget target{
        {reinterpret_cast<PrefillWorkUnit*>(out + layout.work_units_offset), units},
        {reinterpret_cast<int32_t*>(out + layout.cta_indptr_offset), units + 1},
        {reinterpret_cast<PrefillMergeTile*>(out + layout.merge_tiles_offset), units / 2},
        {}};
    int64_t mask_bytes = 0;
    const PrefillScheduleHeader h =
        tessera::plan::plan_prefill_schedule(input, scratch, target, &mask_bytes);
    std::memcpy(out + layout.header_offset, &h, sizeof(h));
    planned_qo_indptr.assign(b.qo_indptr.begin(), b.qo_indptr.end());
    planned_kv_indptr.assign(b.kv_indptr.begin(), b.kv_indptr.end());
    planned_last_page_len.assign(b.last_page_len.begin(), b.last_page_len.end());
    return h.num_work_units;
  }
};

template <typename F>
double median_us(F&& f) {
  for (int i = 0; i < kWarmup; ++i) f();
  std::vector<double> samples;
  samples.reserve(kSamples);
  for (int i = 0; i < kSamples; ++i) {
    const auto start = std::chrono::steady_clock::now();
    f();
    samples.push_back(
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start)
            .count());
  }
  std::nth_element(samples.begin(), samples.begin() + kSamples / 2, samples.end());
  return samples[kSamples / 2];
}

}  // namespace

int main() {
  std::printf("device,\"cpu (host work of plan(), no CUDA calls)\",sms=%lld,l2_bytes=0\n",
              static_cast<long long>(kNumSms));
  std::printf("ceiling,none,us,0\n");
  const Backend backends[] = {{"sm90", 128, true, 1}, {"fa2", 128, false, 2}};
  for (const Backend& backend : backends) {
    for (const int batch : {1, 64, 256}) {
      const Batch b = mixed_batch(batch);
      PlanObject plan(b, backend);
      int64_t units = 0;
      const double us = median_us([&] { units = plan.plan(b); });
      std::printf("result,batch_prefill_plan_host_cpu,\"B=%d,Hq=32,Hk=8,D=128,page=16,causal=1,"
                  "mixed,backend=%s,units=%lld\",us,%.4f\n",
                  batch, backend.name, static_cast<long long>(units), us);
    }
  }
  return 0;
}
