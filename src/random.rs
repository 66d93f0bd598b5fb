//! Random bytes from the operating system. Failure here means the machine cannot make keys,
//! which no caller can work around, so it surfaces as an internal error.

pub fn bytes<const N: usize>() -> anyhow::Result<[u8; N]> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).map_err(|e| anyhow::anyhow!("the OS random source failed: {e}"))?;
    Ok(buf)
}
