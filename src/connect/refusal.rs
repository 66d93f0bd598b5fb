//! Why a connect flow stopped, as a stable code (sent to the return URL and shown on the
//! seller's page) and a detail for ops.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: &'static str,
    pub detail: String,
}

impl Refusal {
    pub fn new(code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
        }
    }

    /// Whether trying again later may work; the rest needs the seller or ops to act.
    pub fn may_retry(&self) -> bool {
        self.code == "platform_unavailable"
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.detail)
    }
}
