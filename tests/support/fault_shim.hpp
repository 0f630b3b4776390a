#pragma once

// Running a program under the fault shim (tests/support/fault_shim.cpp): an LD_PRELOAD library
// that makes open, write, fdatasync, fsync and close fail for files under one directory, as a
// control file says, switchable while the program runs:
//
//     auto control = dir / "faults";
//     set_faults(control, "");                       // none yet
//     subprocess p({pgpush_binary(), "serve", ...}, fault_env(data_dir, control));
//     set_faults(control, "write=ENOSPC\n");         // the disk is full from now on
//     set_faults(control, "");                       // and has room again
//
// Lines are `call=ERRNO` with call one of open, write, fdatasync, fsync, close.

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace pgpush::testing {

// The shared library to preload (set by CMake).
inline std::string fault_shim_library() {
    return PGPUSH_FAULT_SHIM;
}

// Environment entries that run a program under the shim, with faults applied under `dir` (and to
// `dir` itself) as the file `control` says. A sanitized program would refuse to start with a
// library loaded before its sanitizer runtime; the check is turned off for it.
inline std::vector<std::pair<std::string, std::string>>
fault_env(const std::filesystem::path& dir, const std::filesystem::path& control) {
    std::string asan = "verify_asan_link_order=0";
    if (const char* current = std::getenv("ASAN_OPTIONS"); current && *current) {
        asan = std::string(current) + ":" + asan;
    }
    return {{"LD_PRELOAD", fault_shim_library()},
            {"PGPUSH_FAULT_DIR", dir.string()},
            {"PGPUSH_FAULT_CONTROL", control.string()},
            {"ASAN_OPTIONS", asan}};
}

// Replaces the control file atomically (a temporary file renamed over it): the program sees the
// old faults or the new ones, never half a file. Empty text: no faults.
inline void set_faults(const std::filesystem::path& control, const std::string& text) {
    auto temporary = control;
    temporary += ".tmp";
    {
        std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
        out << text;
        out.close();
        if (!out) throw std::runtime_error("cannot write " + temporary.string());
    }
    std::filesystem::rename(temporary, control);
}

} // namespace pgpush::testing
