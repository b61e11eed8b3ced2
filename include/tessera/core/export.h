// TESSERA_API marks the public entry points exported from libtessera. The
// library's CUDA sources build with hidden visibility, so kernels and
// template instantiations stay private to it (no clashes with another library
// that instantiates the same device templates).
#pragma once

#if defined(_WIN32)
#define TESSERA_API
#else
#define TESSERA_API __attribute__((visibility("default")))
#endif
