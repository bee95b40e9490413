//! The AWS side of a run: one SDK configuration per region and profile, Parameter Store.
//!
//! The AWS SDK is async; the rest of the tool is a straight line of blocking steps that waits on
//! it through the process's runtime (`runtime`), started only when something needs it.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use anyhow::{Result, anyhow};
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_ssm::error::ProvideErrorMetadata;
use aws_smithy_http_client::{Connector, proxy::ProxyConfig, tls};
use aws_smithy_runtime_api::client::http::{SharedHttpClient, SharedHttpConnector, http_client_fn};

use crate::base::error::usage;
use crate::base::secret::Secret;

pub(crate) fn runtime() -> Result<&'static tokio::runtime::Runtime> {
    crate::base::runtime::get()
}

/// How long an AWS call may wait on the network: `--network-timeout`, set once per process
/// (as libgit2's) before any call; two minutes (the flag's default) where no run sets it, as in
/// the credential helper git starts.
static NETWORK_TIMEOUT: OnceLock<Duration> = OnceLock::new();

/// Bound every later AWS call by `timeout`. The SDK waits on a read for ever by default: a
/// Parameter Store, CodeCommit API or credential endpoint that accepts and then goes silent
/// would hold the build until CodeBuild's own timeout, the one step `--network-timeout` did not
/// reach. The first call decides, as for libgit2.
pub(crate) fn set_network_timeout(timeout: Duration) {
    let _ = NETWORK_TIMEOUT.set(timeout);
}

/// The SDK's timeouts for one network timeout: connect and each read bounded by it, one attempt
/// by it too (every call we make is one small request and answer), and the whole operation
/// (the SDK's own three attempts and backoff) by three times it.
fn timeouts() -> TimeoutConfig {
    let timeout = NETWORK_TIMEOUT
        .get()
        .copied()
        .unwrap_or(Duration::from_secs(120));
    TimeoutConfig::builder()
        .connect_timeout(timeout)
        .read_timeout(timeout)
        .operation_attempt_timeout(timeout)
        .operation_timeout(timeout.saturating_mul(3))
        .build()
}

/// The SDK configuration from the default chain (env, profile, web identity, container
/// credentials, IMDS), with `region` and `profile` overriding when given. One per (region,
/// profile) per process: every client made from it shares its credential cache, so a list of
/// fifty mirrors resolves the container's credentials once, not once per call.
pub(crate) fn sdk_config(region: Option<&str>, profile: Option<&str>) -> Result<SdkConfig> {
    type Key = (Option<String>, Option<String>);
    static CONFIGS: OnceLock<Mutex<HashMap<Key, SdkConfig>>> = OnceLock::new();
    let key = (region.map(str::to_string), profile.map(str::to_string));
    let configs = CONFIGS.get_or_init(Default::default);
    if let Some(config) = configs.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return Ok(config.clone());
    }
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(timeouts())
        .http_client(http_client());
    if let Some(region) = region {
        loader = loader.region(Region::new(region.to_string()));
    }
    if let Some(profile) = profile {
        loader = loader.profile_name(profile);
    }
    let config = runtime()?.block_on(loader.load());
    configs
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, config.clone());
    Ok(config)
}

/// The SDK's HTTP client as its default is, with the proxies of the environment (`HTTPS_PROXY`,
/// `NO_PROXY`... as curl reads them), which the default leaves out. One connection pool for the
/// process.
fn http_client() -> SharedHttpClient {
    let connector: Mutex<Option<SharedHttpConnector>> = Mutex::new(None);
    http_client_fn(move |settings, components| {
        let mut kept = connector.lock().unwrap_or_else(|e| e.into_inner());
        kept.get_or_insert_with(|| {
            let mut builder = Connector::builder()
                .connector_settings(settings.clone())
                .proxy_config(ProxyConfig::from_env());
            builder.set_sleep_impl(components.sleep_impl());
            SharedHttpConnector::new(
                builder
                    .tls_provider(tls::Provider::Rustls(
                        tls::rustls_provider::CryptoMode::AwsLc,
                    ))
                    .build(),
            )
        })
        .clone()
    })
}

/// The region to use: `explicit` when given (a flag, a URL), else what the SDK's providers find
/// in the environment (`AWS_REGION`, `AWS_DEFAULT_REGION`) or the profile (`profile`, else
/// `AWS_PROFILE`, in `AWS_CONFIG_FILE` or `~/.aws/config`), if any. The one region lookup of the
/// program. Instance metadata, the last link of the SDK's default chain, is left out: asked on a
/// machine that has none, it prints screens of warnings and talks to a non-local address only to
/// say there is no region, and CodeBuild sets `AWS_REGION` anyway.
pub(crate) fn region(explicit: Option<&str>, profile: Option<&str>) -> Result<Option<String>> {
    use aws_config::meta::region::RegionProviderChain;
    let given = |r: &str| Some(r.trim().to_string()).filter(|r| !r.is_empty());
    if let Some(region) = explicit.and_then(given) {
        return Ok(Some(region));
    }
    let mut from_profile = aws_config::profile::ProfileFileRegionProvider::builder();
    if let Some(profile) = profile {
        from_profile = from_profile.profile_name(profile);
    }
    let chain = RegionProviderChain::first_try(
        aws_config::environment::EnvironmentVariableRegionProvider::new(),
    )
    .or_else(from_profile.build());
    Ok(runtime()?
        .block_on(chain.region())
        .and_then(|r| given(r.as_ref())))
}

/// Read one parameter with decryption. `flag` names where the name came from, for messages.
/// Uses GetParameters (plural), the same IAM action CodeBuild's `parameter-store` block needs.
pub(crate) fn get_parameter(flag: &str, name: &str, region: Option<&str>) -> Result<Secret> {
    if !name.starts_with('/') && name.contains('/') {
        return Err(usage(format!(
            "{flag} '{name}': a parameter path must begin with '/'"
        )));
    }
    let config = sdk_config(region, None)?;
    let Some(region) = config.region().map(|r| r.to_string()) else {
        return Err(usage(format!(
            "{flag} '{name}' needs an AWS region: pass --region or set AWS_REGION"
        )));
    };
    let client = aws_sdk_ssm::Client::new(&config);
    let result = runtime()?.block_on(
        client
            .get_parameters()
            .names(name)
            .with_decryption(true)
            .send(),
    );
    let output = match result {
        Ok(output) => output,
        Err(err) => {
            let status = err.raw_response().map(|r| r.status().as_u16());
            let mut code = err.code().unwrap_or("").to_string();
            if code.is_empty() && status == Some(403) {
                code = "AccessDenied".to_string();
            }
            let message = err.message().unwrap_or("").to_string();
            return Err(match code.as_str() {
                "AccessDeniedException" | "AccessDenied" | "UnrecognizedClientException" => {
                    anyhow!(
                        "{flag} '{name}': not allowed to read the parameter in {region} ({code}); \
                         grant ssm:GetParameters on it and kms:Decrypt on its key"
                    )
                }
                "" => anyhow!(
                    "{flag} '{name}': cannot reach Parameter Store in {region}: {}",
                    crate::base::error::chain_line(&err)
                ),
                _ => anyhow!("{flag} '{name}': Parameter Store in {region} said {code}: {message}"),
            });
        }
    };
    let value = output
        .parameters()
        .iter()
        .find(|p| p.name() == Some(name) || output.parameters().len() == 1)
        .and_then(|p| p.value())
        .map(str::to_string);
    match value {
        Some(value) => Ok(Secret::new(value)),
        None => Err(usage(format!(
            "{flag} '{name}': no such parameter in region {region}; check the name and --region"
        ))),
    }
}
