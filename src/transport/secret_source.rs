//! Where a secret comes from: Parameter Store, an environment variable or a file.
//!
//! Sources are named at validation and read only once every local check passed, so a missing
//! file or variable costs no AWS call, and Parameter Store is asked once per run, before the
//! first connection, so a transfer never stalls half-way on it.

use std::path::PathBuf;

use anyhow::Context;

use crate::base::error::usage;
use crate::base::secret::Secret;

/// Where a secret comes from: one of `--<what>-ssm`, `--<what>-env`, `--<what>-file`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SecretSource {
    Ssm { flag: String, name: String },
    Env { flag: String, var: String },
    File { flag: String, path: PathBuf },
}

impl SecretSource {
    /// The source given for `what` (e.g. "ssh-key"), if any: `settings::flags` lets at most one of the
    /// three flags through.
    pub(crate) fn given(
        what: &str,
        ssm: Option<&String>,
        env: Option<&String>,
        file: Option<&PathBuf>,
    ) -> Option<SecretSource> {
        if let Some(name) = ssm {
            return Some(SecretSource::Ssm {
                flag: format!("--{what}-ssm"),
                name: name.trim().to_string(),
            });
        }
        if let Some(var) = env {
            crate::base::secret::register_variable(var.trim());
            return Some(SecretSource::Env {
                flag: format!("--{what}-env"),
                var: var.trim().to_string(),
            });
        }
        file.map(|path| SecretSource::File {
            flag: format!("--{what}-file"),
            path: path.clone(),
        })
    }

    pub(crate) fn flag(&self) -> &str {
        match self {
            SecretSource::Ssm { flag, .. }
            | SecretSource::Env { flag, .. }
            | SecretSource::File { flag, .. } => flag,
        }
    }

    /// Checks that need no network: the variable is set, the file is readable.
    pub(crate) fn check_local(&self) -> anyhow::Result<()> {
        match self {
            SecretSource::Ssm { flag, name } if name.is_empty() => Err(usage(format!(
                "{flag} is empty; give a parameter name such as /backlog/ssh-key"
            ))),
            SecretSource::Env { flag, var } => match std::env::var(var) {
                Ok(value) if !value.trim().is_empty() => Ok(()),
                Ok(_) => Err(usage(format!("{flag} {var}: the variable is empty"))),
                Err(_) => Err(usage(format!(
                    "{flag} {var}: the variable is not set (or not UTF-8); set it or pick another source"
                ))),
            },
            SecretSource::File { flag, path } => match std::fs::metadata(path) {
                Ok(meta) if meta.is_file() => Ok(()),
                Ok(_) => Err(usage(format!("{flag} '{}' is not a file", path.display()))),
                Err(e) => Err(usage(format!(
                    "{flag} '{}' cannot be read ({})",
                    path.display(),
                    crate::base::error::io_reason(&e)
                ))),
            },
            SecretSource::Ssm { .. } => Ok(()),
        }
    }

    /// Read the secret (Parameter Store is asked only here).
    pub(crate) fn read(&self, region: Option<&str>) -> anyhow::Result<Secret> {
        self.check_local()?;
        let value = match self {
            SecretSource::Ssm { flag, name } => {
                return crate::aws::config::get_parameter(flag, name, region);
            }
            SecretSource::Env { var, .. } => std::env::var(var).unwrap_or_default(),
            SecretSource::File { flag, path } => std::fs::read_to_string(path)
                .with_context(|| format!("{flag} '{}' cannot be read", path.display()))?,
        };
        Ok(Secret::new(value))
    }
}
