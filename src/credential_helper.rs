//! `backlog-mirror credential-helper`: git's credential protocol, answered with CodeCommit
//! signatures.
//!
//! It lets plain git (and our own git push engine) reach CodeCommit with the same native signing
//! as the sync, replacing `aws codecommit credential-helper` without Python. Configure it with
//! `credential.helper='!backlog-mirror credential-helper'` and `credential.UseHttpPath=true`: the
//! repository name is part of what is signed, so git must send the path. Hosts that are not
//! CodeCommit get no answer, so git falls through to its other helpers.

use std::collections::HashMap;
use std::io::{BufRead, Write};

use anyhow::{Context, Result};

use crate::cli::CredentialOperation;
use crate::codecommit::{self, Repo, Signer};

pub fn run(op: CredentialOperation, input: impl BufRead, mut output: impl Write) -> Result<()> {
    let mut request = HashMap::new();
    for line in input.lines() {
        let line = line.context("cannot read git's credential request")?;
        if line.is_empty() {
            break;
        }
        if let Some((key, value)) = line.split_once('=') {
            request.insert(key.to_string(), value.to_string());
        }
    }
    if op != CredentialOperation::Get {
        return Ok(());
    }
    if request.get("protocol").map(String::as_str) != Some("https") {
        return Ok(());
    }
    let Some(host) = request.get("host") else {
        return Ok(());
    };
    if !codecommit::is_codecommit_host(host) {
        return Ok(());
    }
    let Some(path) = request.get("path") else {
        anyhow::bail!(
            "git sent no repository path for {host}; set credential.UseHttpPath=true so the \
             repository can be signed"
        );
    };
    let name = path
        .trim_start_matches('/')
        .strip_prefix("v1/repos/")
        .map(|n| n.trim_end_matches('/').trim_end_matches(".git"))
        .with_context(|| format!("'{path}' is not a CodeCommit repository path (v1/repos/NAME)"))?;
    let parsed = codecommit::parse(&format!("https://{host}/v1/repos/{name}"));
    let region = match parsed {
        Some(Ok(repo)) => repo.region,
        _ => None,
    }
    .or_else(|| std::env::var("BACKLOG_MIRROR_REGION").ok())
    .filter(|r| !r.trim().is_empty());
    // Then as the SDK finds it (environment, AWS profile), as `sync` does.
    let region = match region {
        Some(region) => Some(region),
        None => crate::aws::default_region(None)?,
    };
    let repo = Repo {
        name: codecommit::check_name(name).map_err(anyhow::Error::msg)?,
        region: region.clone(),
        profile: None,
        host: Some(host.clone()),
    };
    let signer = Signer::new(&repo, region.as_deref(), Some(host))?;
    let (username, password) = signer.credentials()?;
    // The one place a password is written, by design: git reads it from our stdout.
    writeln!(output, "username={username}")?;
    writeln!(output, "password={}", password.expose())?;
    output.flush()?;
    Ok(())
}
