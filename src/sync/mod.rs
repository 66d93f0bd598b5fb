//! The sync engine: executes one run of a flow. Reads the source page by page, maps records
//! onto unified records, delivers the ones whose version is new to the destination (with
//! idempotency keys), and checkpoints after each page in one transaction with the records it
//! covers, so a run that dies resumes at the page it was on and delivers nothing twice.

mod delivery;
mod engine;
mod records;
mod slots;
mod streams;

pub use crate::runs::RunReport;
pub use engine::SyncEngine;
pub use slots::{VersionKey, VersionSlots};
