//! Connect links: a seller authorises a marketplace by clicking a link. Owns the platform
//! apps (`apps`), each platform's consent URL, callback checks and code trade
//! (`platforms/`), the sessions that carry a seller there and back (`service`) and the
//! seller's pages (`page`). It creates connections, and rotates their credentials, through
//! `connections::Connections`; the credential keeper reaches it through
//! `connections::keeper::ReauthorizationLinks`, so the dependency runs one way.

mod apps;
mod callback;
mod model;
pub mod page;
mod platforms;
mod refusal;
mod service;
mod sessions;

pub use apps::{AppOwner, PlatformAppView, PlatformApps};
pub use model::{ConnectSessionView, CreatedConnectSession, NewConnectSession};
pub use platforms::Platform;
pub use refusal::Refusal;
pub use service::{CallbackOutcome, Connect, LinkDetails, STATE_LIFETIME};
