//! The order of a sync: lock, look, plan, guard, push, look again; the relay, the target's
//! default branch, Git LFS objects.

/// Time a step into one of the summary's phase counters.
macro_rules! timed {
    ($summary:expr, $phase:ident, $body:expr) => {{
        let start = Instant::now();
        let value = $body;
        $summary.seconds.$phase += start.elapsed().as_secs_f64();
        value
    }};
}

pub(crate) mod default_branch;
pub(crate) mod lfs;
pub(crate) mod relay;
pub(crate) mod run;
pub(crate) mod target;
