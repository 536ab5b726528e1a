/*
 * nearbyAttention3DCpu.cpp — the CPU FP32 3DNA kernel (whole grid and decode against a ring cache).
 *
 * Per (batch, head, query): walk the query's key box (never the whole key grid), check the
 * per-key conditions from indices, keep the scores in a per-thread buffer, softmax, accumulate V.
 * Work is split over (batch, head, query) rows across std::threads.
 */
#include "nearbyAttention3DKernel.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <thread>
#include <vector>

namespace nuwa
{

char const* nearbyAttention3DValidate(NearbyAttentionParams const& p)
{
    for (int i = 0; i < 3; ++i)
    {
        if (p.qGrid[i] < 1 || p.kGrid[i] < 1)
        {
            return "q_grid and k_grid must be three positive sizes (T, H, W)";
        }
        if (p.extents[i] < -1)
        {
            return "extents must be radii >= -1";
        }
    }
    if (p.batch < 0 || p.numHeads < 1 || p.numQueries < 0 || p.numKeys < 0 || p.headDim < 1)
    {
        return "shapes must be B >= 0, num_heads >= 1, Nq >= 0, Nk >= 0, head_dim >= 1";
    }
    if (p.causal != 0 && p.causal != 1)
    {
        return "causal must be 0 or 1";
    }
    if (p.ringCache != 0 && p.ringCache != 1)
    {
        return "ring_cache must be 0 or 1";
    }
    bool const sameGrid = p.qGrid[0] == p.kGrid[0] && p.qGrid[1] == p.kGrid[1] && p.qGrid[2] == p.kGrid[2];
    if (p.ringCache)
    {
        if (!p.causal || !sameGrid)
        {
            return "ring_cache needs causal self-attention (q_grid == k_grid)";
        }
        if (p.numKeys < 1)
        {
            return "ring_cache needs at least one cache slot";
        }
        // Any slot count >= 1 is exact: slot n % S holds key n iff p - S < n <= p (DESIGN §5).
    }
    else
    {
        if (p.causal && !sameGrid)
        {
            return "causal attention needs equal q_grid and k_grid (DESIGN §4)";
        }
        // Keys are raster positions 0..Nk-1 of k_grid: more keys than the grid has would be keys
        // past its last frame, which no query's window may reach (a ring cache is the only
        // layout with more rows than grid positions).
        int64_t const gridKeys = static_cast<int64_t>(p.kGrid[0]) * p.kGrid[1] * p.kGrid[2];
        if (static_cast<int64_t>(p.numKeys) > gridKeys)
        {
            return "Nk (k's axis 2) exceeds the k_grid's T*H*W positions (only a ring cache may have more slots)";
        }
    }
    if (!std::isfinite(p.scale))
    {
        return "scale must be finite";
    }
    return nullptr;
}

namespace
{

void attendRow(NearbyAttentionParams const& P, float const* qRow, float const* kHead, float const* vHead,
    int64_t pos, float* outRow, std::vector<float>& scores, std::vector<int64_t>& rows)
{
    int32_t const hd = P.headDim;
    QueryWindow const W = queryWindow(P, pos);
    scores.clear();
    rows.clear();
    float maxScore = -std::numeric_limits<float>::infinity();
    for (int64_t a = W.t0; a <= W.t1; ++a)
    {
        for (int64_t b = W.h0; b <= W.h1; ++b)
        {
            for (int64_t c = W.w0; c <= W.w1; ++c)
            {
                int64_t const n = keyRaster(P, a, b, c);
                if (!keyValid(P, W, n))
                {
                    continue;
                }
                int64_t const row = keyRow(P, n);
                float const* kRow = kHead + row * hd;
                float s = 0.F;
                for (int32_t d = 0; d < hd; ++d)
                {
                    s += qRow[d] * kRow[d];
                }
                s *= P.scale;
                scores.push_back(s);
                rows.push_back(row);
                maxScore = std::max(maxScore, s);
            }
        }
    }
    std::fill(outRow, outRow + hd, 0.F);
    if (scores.empty())
    {
        return; // no valid key (never in valid use): zeros
    }
    double sum = 0.0;
    for (float& s : scores)
    {
        s = std::exp(s - maxScore);
        sum += s;
    }
    float const inv = static_cast<float>(1.0 / sum);
    for (size_t j = 0; j < scores.size(); ++j)
    {
        float const w = scores[j] * inv;
        float const* vRow = vHead + rows[j] * hd;
        for (int32_t d = 0; d < hd; ++d)
        {
            outRow[d] += w * vRow[d];
        }
    }
}

} // namespace

void nearbyAttention3DCpu(NearbyAttentionParams const& P, float const* q, float const* k, float const* v,
    int32_t const* qPositions, float* out, int32_t numThreads)
{
    int64_t const nq = P.numQueries, nk = P.numKeys, hd = P.headDim, nh = P.numHeads;
    int64_t const totalRows = static_cast<int64_t>(P.batch) * nh * nq;
    if (totalRows == 0)
    {
        return;
    }
    auto work = [&](int64_t begin, int64_t end) {
        std::vector<float> scores;
        std::vector<int64_t> rows;
        for (int64_t r = begin; r < end; ++r)
        {
            int64_t const i = r % nq;
            int64_t const bh = r / nq; // b * nh + head
            int64_t const b = bh / nh;
            int64_t const pos = qPositions != nullptr ? static_cast<int64_t>(qPositions[b * nq + i]) : i;
            attendRow(P, q + r * hd, k + bh * nk * hd, v + bh * nk * hd, pos, out + r * hd, scores, rows);
        }
    };
    int64_t threads = numThreads > 0 ? numThreads : static_cast<int64_t>(std::thread::hardware_concurrency());
    threads = std::max<int64_t>(1, std::min<int64_t>(threads, (totalRows + 15) / 16));
    if (threads == 1)
    {
        work(0, totalRows);
        return;
    }
    std::vector<std::thread> pool;
    pool.reserve(static_cast<size_t>(threads));
    int64_t const chunk = (totalRows + threads - 1) / threads;
    for (int64_t t = 0; t < threads; ++t)
    {
        int64_t const begin = t * chunk, end = std::min(totalRows, begin + chunk);
        if (begin < end)
        {
            pool.emplace_back(work, begin, end);
        }
    }
    for (auto& th : pool)
    {
        th.join();
    }
}

} // namespace nuwa
