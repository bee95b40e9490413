//! Escape hatches: `BACKLOG_MIRROR_LIBGIT2_*` variables that give a step back to libgit2, should
//! one of this tool's own clients ever misbehave in the field. One reader for all of them.

/// Whether the escape hatch `var` is set (`1` or `true`, any case).
pub(crate) fn is_set(var: &str) -> bool {
    std::env::var(var).is_ok_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true"))
}
