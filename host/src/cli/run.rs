//! `mnvkd-host run`: flags → [`RunConfig`].

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use super::{CacheArgs, LimitArgs};
use crate::manifest::Manifest;
use crate::run_once::RunConfig;

#[derive(Debug, Args)]
pub(super) struct RunArgs {
    /// The guest: a wasm32-wasip1 command (`.wasm` or `.wat`)
    #[arg(value_name = "WASM")]
    wasm: PathBuf,
    /// Arguments passed to the guest after its name
    #[arg(
        value_name = "ARGS",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    args: Vec<String>,
    #[command(flatten)]
    limits: LimitArgs,
    #[command(flatten)]
    cache: CacheArgs,
}

impl RunArgs {
    pub(super) fn into_config(self) -> anyhow::Result<RunConfig> {
        let manifest = Manifest::load_for(&self.wasm)?;
        let mut settings = manifest
            .settings()
            .with_context(|| format!("in `{}`", Manifest::path_for(&self.wasm).display()))?;
        settings.limits = self
            .limits
            .apply(settings.limits)
            .validated()
            .context("invalid limits")?;
        settings.args = self.args;
        settings.terminal = true;
        Ok(RunConfig {
            path: self.wasm,
            settings,
            cache: self.cache.to_cache(),
        })
    }
}
