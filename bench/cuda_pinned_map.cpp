// How much GPU memory pinned host memory costs, by how it is pinned. The driver maps
// pinned pages into the GPU's page tables; with 4 KiB host pages that is about 1/512
// of the pinned bytes in GPU memory (measured: docs/offload.md), which is what makes a
// 4M-token plan need more GPU memory than a 512K one. Host memory backed by 2 MiB
// transparent huge pages and registered with cudaHostRegister may be mapped with large
// GPU pages instead. This measures, per method: GPU memory used per GiB pinned (from
// cudaMemGetInfo), time to pin, and H2D bandwidth from the pinned buffer.
// Usage: cuda_pinned_map [GiB]   (default 8)
#ifdef HEADINFER_HAVE_CUDA

#include <cuda_runtime_api.h>
#include <sys/mman.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace {

bool ok(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return true;
  std::printf("  %s: %s\n", what, cudaGetErrorString(e));
  cudaGetLastError();
  return false;
}

size_t gpu_used() {
  size_t free_b = 0, total = 0;
  cudaMemGetInfo(&free_b, &total);
  return total - free_b;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double h2d_gbps(const void* host, size_t bytes) {
  const size_t chunk = size_t{64} << 20;
  void* dev = nullptr;
  if (!ok(cudaMalloc(&dev, chunk), "cudaMalloc")) return 0;
  cudaDeviceSynchronize();
  const auto t0 = std::chrono::steady_clock::now();
  size_t moved = 0;
  for (size_t off = 0; off + chunk <= bytes; off += chunk) {
    cudaMemcpyAsync(dev, static_cast<const char*>(host) + off, chunk, cudaMemcpyHostToDevice, nullptr);
    moved += chunk;
  }
  cudaDeviceSynchronize();
  const double s = seconds_since(t0);
  cudaFree(dev);
  return moved / s / 1e9;
}

void report(const char* method, size_t before, size_t after, size_t bytes, double pin_s, const void* p) {
  const double gib = bytes / double(size_t{1} << 30);
  const double mapped = static_cast<double>(after) - static_cast<double>(before);
  std::printf("%-44s GPU +%8.2f MiB (%.6f of pinned bytes, 1/%.0f)  pin %.2f s (%.2f s/GiB)  H2D %.1f GB/s\n",
              method, mapped / (1 << 20), mapped / bytes, mapped > 0 ? bytes / mapped : 0.0, pin_s, pin_s / gib,
              h2d_gbps(p, bytes));
}

}  // namespace

int main(int argc, char** argv) {
  const double gib = argc > 1 ? std::atof(argv[1]) : 8.0;
  const size_t bytes = static_cast<size_t>(gib * (size_t{1} << 30));
  if (!ok(cudaFree(nullptr), "CUDA init")) return 0;
  std::printf("pinning %.1f GiB per method\n", gib);
  {  // cudaHostAlloc: the engine's current way
    const size_t before = gpu_used();
    void* p = nullptr;
    const auto t0 = std::chrono::steady_clock::now();
    if (ok(cudaHostAlloc(&p, bytes, cudaHostAllocDefault), "cudaHostAlloc")) {
      const double s = seconds_since(t0);
      report("cudaHostAlloc", before, gpu_used(), bytes, s, p);
      cudaFreeHost(p);
    }
  }
  for (int huge = 0; huge < 2; ++huge) {  // mmap (+ THP advice) + cudaHostRegister
    const size_t align = size_t{2} << 20;
    const size_t len = (bytes + align - 1) / align * align;
    const size_t before = gpu_used();
    const auto t0 = std::chrono::steady_clock::now();
    void* raw = mmap(nullptr, len + align, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) {
      std::printf("  mmap failed\n");
      continue;
    }
    char* p = reinterpret_cast<char*>((reinterpret_cast<uintptr_t>(raw) + align - 1) / align * align);
    if (huge && madvise(p, len, MADV_HUGEPAGE) != 0) std::printf("  madvise(MADV_HUGEPAGE) failed\n");
    for (size_t off = 0; off < len; off += 4096) p[off] = 0;  // fault the pages in (huge ones where granted)
    if (ok(cudaHostRegister(p, len, cudaHostRegisterDefault), "cudaHostRegister")) {
      const double s = seconds_since(t0);
      report(huge ? "mmap + MADV_HUGEPAGE + cudaHostRegister" : "mmap + cudaHostRegister", before, gpu_used(), len,
             s, p);
      cudaHostUnregister(p);
    }
    munmap(raw, len + align);
  }
  if (FILE* f = std::fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r")) {
    char line[256] = {};
    if (std::fgets(line, sizeof line, f)) std::printf("transparent_hugepage/enabled: %s", line);
    std::fclose(f);
  }
  return 0;
}

#else

#include <cstdio>

int main() {
  std::puts("no CUDA build");
  return 0;
}

#endif
