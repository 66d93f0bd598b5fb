//! Deployments of connector versions: verify connectivity first, then switch connections
//! over (immediate, blue-green, canary, rolling) inside the tenant's deploy windows, gate
//! each step on the runs' health, roll back on its own or by hand, and keep a timeline of
//! who deployed what.

mod driver;
pub mod gate;
mod model;
mod plan;
mod service;
mod switching;
mod timeline;
pub mod window;

pub use driver::{Clock, Deployer};
pub use model::{DeploymentView, EventView, NewDeployment, RollbackRequest, Strategy, TargetView};
pub use service::Deployments;
pub use switching::pinned_by;
pub use window::{DeployPolicy, DeployWindow, Freeze};
