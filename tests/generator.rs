//! The benchmark's hosted-project dataset has the shape of a hosted project's, and the same spec
//! always gives the same repository: pull-request heads on side commits that no branch or tag
//! contains, some of them stacked on others, branches of which some have commits of their own.

use crate::support::*;

fn spec() -> ShapedSpec {
    ShapedSpec {
        commits: 400,
        files: 60,
        blob_bytes: 400,
        fresh_bytes: 200,
        pull_requests: 60,
        branches: 10,
        tags: 8,
    }
}

fn count(repo: &std::path::Path, args: &[&str]) -> usize {
    git(repo, args).trim().parse().expect("a count")
}

#[test]
fn shaped_repository_has_pull_requests_off_the_branches_and_is_deterministic() {
    let sb = Sandbox::new();
    let (repo, counts) = generate_shaped_repo(&sb.join("one.git"), &spec());
    let refs = refs(&repo);
    let kind = |prefix: &str| refs.keys().filter(|n| n.starts_with(prefix)).count();
    assert_eq!(kind("refs/pull/"), 60);
    assert_eq!(kind("refs/heads/"), 11, "main and 10 branches");
    assert_eq!(kind("refs/tags/"), 8);
    assert_eq!(
        counts.main_commits + counts.pull_commits + counts.branch_commits,
        400
    );
    assert!(counts.branch_commits > 0, "every fifth branch has commits");
    assert_eq!(count(&repo, &["rev-list", "--all", "--count"]), 400);

    // Every pull request's own commits are reachable from no branch or tag, and they are
    // exactly the commits outside the branches and tags.
    let off_branches = count(
        &repo,
        &[
            "rev-list",
            "--count",
            "--all",
            "--not",
            "--branches",
            "--tags",
        ],
    );
    assert_eq!(off_branches, counts.pull_commits);
    let mut own_total = 0;
    for (name, _) in refs.iter().filter(|(n, _)| n.starts_with("refs/pull/")) {
        let own = count(
            &repo,
            &["rev-list", "--count", name, "--not", "--branches", "--tags"],
        );
        assert!(own >= 1, "{name} has no commit of its own");
        own_total += own;
    }
    assert!(
        own_total > counts.pull_commits,
        "no pull request is stacked on another ({own_total} own commits, {} in all)",
        counts.pull_commits
    );

    let (again, _) = generate_shaped_repo(&sb.join("two.git"), &spec());
    assert_eq!(
        refs,
        crate::support::refs(&again),
        "same spec, same object ids"
    );
}
