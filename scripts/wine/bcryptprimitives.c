/* bcryptprimitives.dll for Wine 8.0 (Debian 12): Rust's std (1.78+) imports ProcessPrng from
 * it, which Wine has only from 8.13, so every Rust program fails to start there ("not found",
 * exit 53). This fills the buffer from RtlGenRandom (SystemFunction036), as ProcessPrng does
 * on Windows. Built by scripts/windows.sh into the test Wine prefix; never shipped. */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length) {
    while (length > 0) {
        ULONG chunk = length > 0x10000000 ? 0x10000000 : (ULONG)length;
        if (!SystemFunction036(data, chunk)) return FALSE;
        data += chunk;
        length -= chunk;
    }
    return TRUE;
}
