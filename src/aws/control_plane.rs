//! CodeCommit's control plane: what its Git endpoint cannot do.
//!
//! A push can create and delete refs but cannot create a repository or say which branch is the
//! default (Git has no command for a remote's `HEAD`), so those go through the CodeCommit API
//! (`GetRepository`, `CreateRepository`, `UpdateDefaultBranch`). The client is built from the same
//! region, profile and credential chain as the Git signature, so one set of credentials serves
//! both. Its endpoint is the SDK's own (`codecommit.REGION.amazonaws.com`), or the standard
//! `AWS_ENDPOINT_URL_CODECOMMIT` / `AWS_ENDPOINT_URL` override: the Git endpoint override
//! (`--codecommit-endpoint`) names another host (`git-codecommit...`, or its VPC endpoint), so it
//! is not reused here.

use anyhow::{Result, anyhow};
use aws_sdk_codecommit::error::{ProvideErrorMetadata, SdkError};

use crate::aws::codecommit::CodeCommit;

/// One CodeCommit repository's control plane.
pub(crate) struct ControlPlane {
    client: aws_sdk_codecommit::Client,
    pub(crate) name: String,
    pub(crate) region: String,
}

/// What `GetRepository` says, as far as a mirror cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Metadata {
    /// The default branch's short name (`main`); none until a branch exists.
    pub(crate) default_branch: Option<String>,
}

/// Why a control-plane call failed, where the caller decides by it.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    #[error(
        "not allowed to call codecommit:{action} on '{name}' in {region} ({code}); grant the \
         build role codecommit:{action} on the repository"
    )]
    Denied {
        action: &'static str,
        name: String,
        region: String,
        code: String,
    },
    #[error("CodeCommit {action} on '{name}' in {region} failed: {detail}")]
    Other {
        action: &'static str,
        name: String,
        region: String,
        detail: String,
    },
}

impl ControlPlane {
    pub(crate) fn new(repo: &CodeCommit) -> Result<ControlPlane> {
        let config = crate::aws::config::sdk_config(Some(&repo.region), repo.profile.as_deref())?;
        Ok(ControlPlane {
            client: aws_sdk_codecommit::Client::new(&config),
            name: repo.name.clone(),
            region: repo.region.clone(),
        })
    }

    /// The repository's metadata, or `None` when it does not exist.
    pub(crate) fn get(&self) -> Result<Option<Metadata>> {
        let sent = crate::aws::config::runtime()?.block_on(
            self.client
                .get_repository()
                .repository_name(&self.name)
                .send(),
        );
        match sent {
            Ok(out) => Ok(Some(Metadata {
                default_branch: out
                    .repository_metadata()
                    .and_then(|m| m.default_branch())
                    .map(str::to_string),
            })),
            Err(err) if err.code() == Some("RepositoryDoesNotExistException") => Ok(None),
            Err(err) => Err(self.failed("GetRepository", err)),
        }
    }

    /// Create the repository, with `description` when there is one.
    pub(crate) fn create(&self, description: Option<&str>) -> Result<()> {
        let request = self
            .client
            .create_repository()
            .repository_name(&self.name)
            .set_repository_description(description.map(str::to_string));
        match crate::aws::config::runtime()?.block_on(request.send()) {
            Ok(_) => Ok(()),
            // Another sync of the same mirror created it first: that is what was wanted.
            Err(err) if err.code() == Some("RepositoryNameExistsException") => Ok(()),
            Err(err) => Err(self.failed("CreateRepository", err)),
        }
    }

    /// Make `branch` (a short name) the default branch.
    pub(crate) fn set_default_branch(&self, branch: &str) -> Result<()> {
        let request = self
            .client
            .update_default_branch()
            .repository_name(&self.name)
            .default_branch_name(branch);
        crate::aws::config::runtime()?
            .block_on(request.send())
            .map(|_| ())
            .map_err(|err| self.failed("UpdateDefaultBranch", err))
    }

    /// The command that creates this repository, for a message.
    pub(crate) fn create_command(&self) -> String {
        format!(
            "aws codecommit create-repository --repository-name {} --region {}",
            self.name, self.region
        )
    }

    fn failed<E, R>(&self, action: &'static str, err: SdkError<E, R>) -> anyhow::Error
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
        SdkError<E, R>: ProvideErrorMetadata,
    {
        let code = err.code().unwrap_or("").to_string();
        let (name, region) = (self.name.clone(), self.region.clone());
        if matches!(
            code.as_str(),
            "AccessDeniedException" | "AccessDenied" | "UnrecognizedClientException"
        ) {
            return anyhow!(ApiError::Denied {
                action,
                name,
                region,
                code,
            });
        }
        let detail = match (code.as_str(), err.message()) {
            ("", _) => crate::base::error::chain_line(&err),
            (code, Some(message)) => format!("{code}: {message}"),
            (code, None) => code.to_string(),
        };
        anyhow!(ApiError::Other {
            action,
            name,
            region,
            detail,
        })
    }
}
