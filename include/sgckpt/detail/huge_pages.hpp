// sgckpt/detail/huge_pages.hpp: large storages on transparent huge pages.
//
// The first write to fresh memory costs a page fault per 4 KiB page; on the virtual machines
// we measure on, that made a 1 GiB copying load spend most of its time faulting (copy into
// operator new memory ~650 ms, into memory advised for 2 MiB pages ~190 ms: bench/pth_io).
// Large storages are therefore mapped anonymously and advised MADV_HUGEPAGE, which takes
// effect where the system's transparent huge pages are "madvise" or "always" and is a no-op
// elsewhere. Sanitizer builds keep operator new, so that ASan still sees every access.
#pragma once

#include <cstddef>

#if defined(__linux__) && !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
#if defined(__has_feature)
#if !__has_feature(address_sanitizer) && !__has_feature(thread_sanitizer) && !__has_feature(memory_sanitizer)
#define SGCKPT_HUGE_PAGES 1
#endif
#else
#define SGCKPT_HUGE_PAGES 1
#endif
#endif

#ifdef SGCKPT_HUGE_PAGES
#include <sys/mman.h>
#endif

namespace sgckpt::detail {

// Storages at least this large go on their own mapping (a few huge pages at least).
inline constexpr std::size_t kHugePageStorageBytes = std::size_t{4} << 20;

// Memory for `nbytes` (>= kHugePageStorageBytes) on its own mapping advised for huge pages,
// or nullptr when this build or system cannot (the caller falls back to operator new).
inline void* map_huge(std::size_t nbytes) noexcept {
#ifdef SGCKPT_HUGE_PAGES
  void* p = ::mmap(nullptr, nbytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return nullptr;
#ifdef MADV_HUGEPAGE
  ::madvise(p, nbytes, MADV_HUGEPAGE);  // advice only: failure leaves ordinary pages
#endif
  return p;
#else
  (void)nbytes;
  return nullptr;
#endif
}

inline void unmap_huge(void* p, std::size_t nbytes) noexcept {
#ifdef SGCKPT_HUGE_PAGES
  ::munmap(p, nbytes);
#else
  (void)p;
  (void)nbytes;
#endif
}

}  // namespace sgckpt::detail
