//! The process's allocator: mimalloc, told to hand freed memory back to the OS at once.
//!
//! mimalloc (docs/design/0008-allocator.md) keeps freed pages for reuse and purges them
//! after `purge_delay` (1 s in mimalloc v3, ×10 for whole arenas) — but only when the thread
//! that freed them calls into the allocator again. The management plane's threads go idle
//! after bursts (tantivy's indexing threads after a commit, tokio workers after a batch of
//! API requests), so the freed memory stayed resident: 13.5 MiB of private memory with no
//! cluster instead of 6.1, and the per-idle-cluster figure of `cattery-bench idle` at 100
//! clusters was 185 KiB instead of 73 (measurements in docs/design/0008-allocator.md).

/// mimalloc's option `purge_delay` (index 15 of `mi_option_t` in mimalloc v2 and v3;
/// libmimalloc-sys exports no constant for it).
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// What `purge_delay` is before we change it (mimalloc v3's default). Checked first, so that
/// a future mimalloc that renumbered its options is left alone rather than misconfigured.
const EXPECTED_DEFAULT_MS: std::os::raw::c_long = 1000;

/// The environment variable with which an operator chooses mimalloc's purge delay
/// (mimalloc reads it itself); when it is set, we leave the option alone.
const PURGE_DELAY_ENV: &str = "MIMALLOC_PURGE_DELAY";

/// What [`purge_freed_memory_at_once`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Purging {
    /// `purge_delay` is now 0.
    AtOnce,
    /// The operator set [`PURGE_DELAY_ENV`]; mimalloc uses that value.
    ChosenByOperator,
    /// The option was not where expected (a renumbered mimalloc); left as it is.
    Unchanged,
}

/// Makes mimalloc purge freed memory immediately (`purge_delay = 0`) unless the operator
/// chose a delay with `MIMALLOC_PURGE_DELAY` (immediate purging costs bulk streaming about
/// a quarter more CPU; docs/design/0008-allocator.md). Call once, first thing in `main`,
/// before other threads exist.
pub fn purge_freed_memory_at_once() -> Purging {
    if std::env::var_os(PURGE_DELAY_ENV).is_some() {
        return Purging::ChosenByOperator;
    }
    if set_purge_delay_zero() {
        Purging::AtOnce
    } else {
        Purging::Unchanged
    }
}

/// Sets `purge_delay` to 0 if it still has mimalloc's default; true if it is 0 afterwards.
#[allow(unsafe_code)]
fn set_purge_delay_zero() -> bool {
    // SAFETY: `mi_option_get`/`mi_option_set` read and write one entry of mimalloc's option
    // table; `PURGE_DELAY` is below `_mi_option_last`, so the index is in bounds. The table
    // is not synchronised, which is why this runs before any other thread is started.
    unsafe {
        if libmimalloc_sys::mi_option_get(PURGE_DELAY) != EXPECTED_DEFAULT_MS {
            return false;
        }
        libmimalloc_sys::mi_option_set(PURGE_DELAY, 0);
        libmimalloc_sys::mi_option_get(PURGE_DELAY) == 0
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_purge_delay_option_is_the_one_we_think() {
        // Fails if mimalloc renumbers its options or changes the default: then the
        // constants above need a look (the function itself would just do nothing).
        assert!(super::set_purge_delay_zero());
    }
}
