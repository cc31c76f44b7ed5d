//! `mnvkd-host run`: flags → [`RunConfig`].

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use super::LimitArgs;
use crate::config::Limits;
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
}

impl RunArgs {
    pub(super) fn into_config(self) -> anyhow::Result<RunConfig> {
        let manifest = Manifest::load_for(&self.wasm)?;
        let limits = self
            .limits
            .apply(manifest.apply(Limits::default())?)
            .validated()
            .context("invalid limits")?;
        Ok(RunConfig {
            path: self.wasm,
            args: self.args,
            env: manifest.env.into_iter().collect(),
            limits,
        })
    }
}
