//! Keeps the process's resident memory near what it uses.
//!
//! glibc's malloc raises its mmap threshold each time a large block served by `mmap` is
//! freed, up to 32 MiB; after the first 8 MiB span or 16 MiB pack is freed, later ones come
//! from the per-thread arenas, and what an arena has handed out stays resident after it is
//! freed. With tokio's blocking threads each taking an arena, a transfer whose heap peaks
//! at about 40 MB was measured at 250 MB of RSS. Fixing the threshold at glibc's own
//! default (128 KiB) stops that: every buffer above it is mapped and unmapped whole.

/// The threshold set by [`limit_retention`]: glibc's default, made fixed.
pub const MMAP_THRESHOLD: i32 = 128 << 10;

/// Fixes malloc's mmap threshold (see the module), unless the operator set one through
/// `MALLOC_MMAP_THRESHOLD_` or `GLIBC_TUNABLES`. Call first thing in `main`. Returns
/// whether it was set (false off glibc).
pub fn limit_retention() -> bool {
    let chosen = std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_some()
        || std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("mmap_threshold"));
    !chosen && set_threshold()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_threshold() -> bool {
    // SAFETY: mallopt only changes malloc's parameters; it is safe to call at any time.
    unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_threshold() -> bool {
    false
}
