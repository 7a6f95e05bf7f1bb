// How much GPU memory pinned host memory costs, by how it is pinned. The driver maps
// pinned pages into the GPU's page tables; with 4 KiB host pages that is about 1/512
// of the pinned bytes in GPU memory (measured: docs/offload.md), which is what makes a
// 4M-token plan need more GPU memory than a 512K one. Host memory backed by 2 MiB
// transparent huge pages and registered with cudaHostRegister may be mapped with large
// GPU pages instead. This measures, per method: GPU memory used per GiB pinned (from
// cudaMemGetInfo), time to pin, and H2D bandwidth from the pinned buffer. Also host
// memory from the virtual memory API (cuMemCreate on the host, mapped at its 2 MiB
// granularity) and from a host memory pool, which may be mapped with large GPU pages.
// Usage: cuda_pinned_map [GiB]   (default 8)

#include <cuda.h>
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

// Driver entry points through the runtime, so the benchmark needs no -lcuda.
template <typename F>
F driver_fn(const char* name) {
  void* fn = nullptr;
  cudaDriverEntryPointQueryResult q{};
  if (cudaGetDriverEntryPointByVersion(name, &fn, 12020, cudaEnableDefault, &q) != cudaSuccess ||
      q != cudaDriverEntryPointSuccess) {
    cudaGetLastError();
    return nullptr;
  }
  return reinterpret_cast<F>(fn);
}

const char* cu_err(CUresult r) {
  static char buf[32];
  std::snprintf(buf, sizeof buf, "CUresult %d", static_cast<int>(r));
  return buf;
}

// CPU write rate into the buffer: GB/s, or 0 when the CPU may not touch it.
double cpu_write_gbps(void* p, size_t bytes) {
  const auto t0 = std::chrono::steady_clock::now();
  std::memset(p, 1, bytes);
  return bytes / seconds_since(t0) / 1e9;
}

// cuMemCreate on the host, mapped into one reserved range, readable and writable
// by the device and the CPU.
void vmm_host(size_t bytes, CUmemLocationType where) {
  using Gran = CUresult (*)(size_t*, const CUmemAllocationProp*, CUmemAllocationGranularity_flags);
  using Create = CUresult (*)(CUmemGenericAllocationHandle*, size_t, const CUmemAllocationProp*, unsigned long long);
  using Reserve = CUresult (*)(CUdeviceptr*, size_t, size_t, CUdeviceptr, unsigned long long);
  using Map = CUresult (*)(CUdeviceptr, size_t, size_t, CUmemGenericAllocationHandle, unsigned long long);
  using Access = CUresult (*)(CUdeviceptr, size_t, const CUmemAccessDesc*, size_t);
  using Unmap = CUresult (*)(CUdeviceptr, size_t);
  using Release = CUresult (*)(CUmemGenericAllocationHandle);
  using Free = CUresult (*)(CUdeviceptr, size_t);
  auto gran_fn = driver_fn<Gran>("cuMemGetAllocationGranularity");
  auto create = driver_fn<Create>("cuMemCreate");
  auto reserve = driver_fn<Reserve>("cuMemAddressReserve");
  auto map = driver_fn<Map>("cuMemMap");
  auto access = driver_fn<Access>("cuMemSetAccess");
  auto unmap = driver_fn<Unmap>("cuMemUnmap");
  auto release = driver_fn<Release>("cuMemRelease");
  auto addr_free = driver_fn<Free>("cuMemAddressFree");
  const char* name = where == CU_MEM_LOCATION_TYPE_HOST ? "cuMemCreate (host) + cuMemMap" : "cuMemCreate (host NUMA 0) + cuMemMap";
  if (!gran_fn || !create || !reserve || !map || !access || !unmap || !release || !addr_free) {
    std::printf("  %s: driver entry points missing\n", name);
    return;
  }
  CUmemAllocationProp prop{};
  prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
  prop.location.type = where;
  prop.location.id = 0;
  size_t gran = 0;
  CUresult r = gran_fn(&gran, &prop, CU_MEM_ALLOC_GRANULARITY_RECOMMENDED);
  if (r != CUDA_SUCCESS) {
    std::printf("  %s: granularity: %s\n", name, cu_err(r));
    return;
  }
  const size_t len = (bytes + gran - 1) / gran * gran;
  const size_t before = gpu_used();
  const auto t0 = std::chrono::steady_clock::now();
  CUmemGenericAllocationHandle h{};
  if ((r = create(&h, len, &prop, 0)) != CUDA_SUCCESS) {
    std::printf("  %s: cuMemCreate: %s\n", name, cu_err(r));
    return;
  }
  CUdeviceptr va = 0;
  if ((r = reserve(&va, len, gran, 0, 0)) != CUDA_SUCCESS || (r = map(va, len, 0, h, 0)) != CUDA_SUCCESS) {
    std::printf("  %s: reserve/map: %s\n", name, cu_err(r));
    release(h);
    return;
  }
  CUmemAccessDesc desc[2]{};
  desc[0].location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  desc[0].location.id = 0;
  desc[0].flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
  desc[1].location.type = CU_MEM_LOCATION_TYPE_HOST_NUMA;
  desc[1].location.id = 0;
  desc[1].flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
  bool cpu = true;
  if ((r = access(va, len, desc, 2)) != CUDA_SUCCESS) {
    std::printf("  %s: access for device + CPU: %s; trying the device alone\n", name, cu_err(r));
    cpu = false;
    if ((r = access(va, len, desc, 1)) != CUDA_SUCCESS) std::printf("  %s: access for the device: %s\n", name, cu_err(r));
  }
  if (r == CUDA_SUCCESS) {
    const double s = seconds_since(t0);
    std::printf("  granularity %zu KiB; CPU write %.1f GB/s\n", gran >> 10,
                cpu ? cpu_write_gbps(reinterpret_cast<void*>(va), len) : 0.0);
    report(name, before, gpu_used(), len, s, reinterpret_cast<void*>(va));
  }
  unmap(va, len);
  addr_free(va, len);
  release(h);
}

// A host memory pool (cudaMemPoolCreate on the host), one allocation from it.
void host_pool(size_t bytes) {
  cudaMemPoolProps props{};
  props.allocType = cudaMemAllocationTypePinned;
  props.location.type = cudaMemLocationTypeHost;
  props.location.id = 0;
  cudaMemPool_t pool{};
  if (!ok(cudaMemPoolCreate(&pool, &props), "cudaMemPoolCreate (host)")) return;
  cudaMemAccessDesc desc{};
  desc.location.type = cudaMemLocationTypeDevice;
  desc.location.id = 0;
  desc.flags = cudaMemAccessFlagsProtReadWrite;
  ok(cudaMemPoolSetAccess(pool, &desc, 1), "cudaMemPoolSetAccess (device)");
  const size_t before = gpu_used();
  const auto t0 = std::chrono::steady_clock::now();
  void* p = nullptr;
  if (ok(cudaMallocFromPoolAsync(&p, bytes, pool, nullptr), "cudaMallocFromPoolAsync") &&
      ok(cudaStreamSynchronize(nullptr), "sync")) {
    const double s = seconds_since(t0);
    std::printf("  CPU write %.1f GB/s\n", cpu_write_gbps(p, bytes));
    report("host memory pool", before, gpu_used(), bytes, s, p);
    cudaFreeAsync(p, nullptr);
    cudaStreamSynchronize(nullptr);
  }
  cudaMemPoolDestroy(pool);
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
  vmm_host(bytes, CU_MEM_LOCATION_TYPE_HOST);
  vmm_host(bytes, CU_MEM_LOCATION_TYPE_HOST_NUMA);
  host_pool(bytes);
  if (FILE* f = std::fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r")) {
    char line[256] = {};
    if (std::fgets(line, sizeof line, f)) std::printf("transparent_hugepage/enabled: %s", line);
    std::fclose(f);
  }
  return 0;
}
