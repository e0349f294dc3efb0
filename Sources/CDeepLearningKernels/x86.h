// DLK_X86: 1 where the kernels' x86-64 vector versions can be compiled (gcc or clang on
// x86-64, each version under its own target attribute, chosen at run time), with the
// intrinsics included; 0 elsewhere, where only the plain C loops are built. Private to the
// kernels' .c files.
#ifndef DLK_X86_H
#define DLK_X86_H

#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
#define DLK_X86 1
#include <immintrin.h>
#else
#define DLK_X86 0
#endif

#endif
