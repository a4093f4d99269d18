/*
 * A stand-in for Windows' bcryptprimitives.dll, for running kubectl-purelb.exe under Debian 12's Wine 8.0
 * only (krew/cross.sh installs it into its own throw-away Wine prefix; it is never shipped).
 *
 * Rust's standard library (1.78 and later) takes its random numbers from ProcessPrng in
 * bcryptprimitives.dll, which every supported Windows (10 and later) has. Wine gained that DLL in 8.13;
 * Debian 12 ships 8.0, where a Rust program fails to start (status c0000135, exit code 53). This DLL
 * exports the one function, answered by RtlGenRandom (advapi32's SystemFunction036), which Wine 8.0 has.
 *
 * Built by krew/cross.sh: x86_64-w64-mingw32-gcc -shared bcryptprimitives.c bcryptprimitives.def -ladvapi32
 */
#include <windows.h>
#include <ntsecapi.h>

/* Fills len bytes at data with random bytes; TRUE on success, as Windows' ProcessPrng. */
BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    while (len > 0) {
        ULONG chunk = len > 0x40000000 ? 0x40000000 : (ULONG)len;
        if (!RtlGenRandom(data, chunk))
            return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
