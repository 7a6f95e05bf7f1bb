#pragma once
#include "backend/backend.hpp"
#include "common/thread_pool.hpp"
namespace headinfer {
void cpu_matmul(ThreadPool& pool, const float* x, int n, const Mat& w, const Mat* bias, float* out);
}
