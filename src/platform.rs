//! The platforms an image is headed for. The name only: what each demands of an image is
//! `target`'s (the pipeline's); the guest checks grade their findings per platform too,
//! so the name sits below both.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    Azure,
    HypervGen1,
    HypervGen2,
}

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Target::Azure => "azure",
            Target::HypervGen1 => "hyperv-gen1",
            Target::HypervGen2 => "hyperv-gen2",
        }
    }
}
