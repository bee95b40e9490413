//! Which refs the mirror manages.
//!
//! Some targets refuse whole namespaces (GitHub rejects `refs/pull/*`), and a mirror that tried
//! to push them would fail on every run. A ref that is not selected is invisible to the plan: never
//! pushed, never deleted, so what the target keeps there is its own business.

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

#[derive(Debug, Clone, Default)]
pub(crate) struct RefFilter {
    include: Option<GlobSet>,
    exclude: Option<GlobSet>,
}

impl RefFilter {
    /// Build from `--include` / `--exclude` patterns. Patterns match full ref names and `*`
    /// crosses `/`, so `refs/pull/*` covers `refs/pull/1/head`.
    pub(crate) fn new(include: &[String], exclude: &[String]) -> Result<RefFilter, String> {
        Ok(RefFilter {
            include: build("--include", include)?,
            exclude: build("--exclude", exclude)?,
        })
    }

    pub(crate) fn selects(&self, refname: &str) -> bool {
        let included = self
            .include
            .as_ref()
            .is_none_or(|set| set.is_match(refname));
        let excluded = self
            .exclude
            .as_ref()
            .is_some_and(|set| set.is_match(refname));
        included && !excluded
    }
}

fn build(flag: &str, patterns: &[String]) -> Result<Option<GlobSet>, String> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut set = GlobSetBuilder::new();
    for pattern in patterns {
        set.add(parse(flag, pattern)?);
    }
    set.build()
        .map(Some)
        .map_err(|e| format!("{flag}: cannot combine patterns: {e}"))
}

fn parse(flag: &str, pattern: &str) -> Result<Glob, String> {
    if pattern.trim().is_empty() {
        return Err(format!(
            "{flag} is empty; give a pattern such as 'refs/pull/*'"
        ));
    }
    if !pattern.starts_with("refs/") && !pattern.starts_with('*') {
        return Err(format!(
            "{flag} '{pattern}' cannot match anything: patterns match full ref names, \
             so write 'refs/{}'",
            pattern.trim_start_matches('/')
        ));
    }
    GlobBuilder::new(pattern)
        .literal_separator(false)
        .build()
        .map_err(|e| {
            format!("{flag} '{pattern}' is not a valid glob ({e}); use *, ?, [abc] and {{a,b}}")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(include: &[&str], exclude: &[&str]) -> RefFilter {
        let own = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        RefFilter::new(&own(include), &own(exclude)).unwrap()
    }

    #[test]
    fn default_selects_everything() {
        let f = filter(&[], &[]);
        assert!(f.selects("refs/heads/main"));
        assert!(f.selects("refs/pull/1/head"));
    }

    #[test]
    fn star_crosses_slashes() {
        let f = filter(&[], &["refs/pull/*"]);
        assert!(!f.selects("refs/pull/1/head"));
        assert!(f.selects("refs/heads/pull"));
    }

    #[test]
    fn include_then_exclude() {
        let f = filter(&["refs/heads/*", "refs/tags/*"], &["refs/heads/tmp/*"]);
        assert!(f.selects("refs/heads/main"));
        assert!(f.selects("refs/tags/v1"));
        assert!(!f.selects("refs/heads/tmp/x"));
        assert!(!f.selects("refs/notes/commits"));
    }

    #[test]
    fn rejects_bad_patterns_naming_the_flag() {
        let err = RefFilter::new(&["refs/[".into()], &[]).unwrap_err();
        assert!(err.starts_with("--include 'refs/['"), "{err}");
        let err = RefFilter::new(&[], &["pull/*".into()]).unwrap_err();
        assert!(
            err.contains("--exclude") && err.contains("refs/pull/*"),
            "{err}"
        );
    }
}
