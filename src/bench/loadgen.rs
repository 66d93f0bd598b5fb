//! A small HTTP/1.1 load generator: N keep-alive connections, each sending requests back to
//! back for a fixed time, recording each request's latency. Raw sockets keep its own cost low
//! on a 2-core machine shared with the server.

use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub struct Report {
    pub ok: u64,
    pub failed: u64,
    pub elapsed: Duration,
    pub latency_us: Histogram<u64>,
}

impl Report {
    pub fn p(&self, quantile: f64) -> f64 {
        self.latency_us.value_at_quantile(quantile) as f64 / 1000.0
    }
}

/// Builds request number `n` of connection `c` as raw bytes.
pub type RequestFn = std::sync::Arc<dyn Fn(usize, u64) -> Vec<u8> + Send + Sync>;

pub async fn run(
    addr: &str,
    connections: usize,
    duration: Duration,
    request: RequestFn,
) -> anyhow::Result<Report> {
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..connections {
        let addr = addr.to_string();
        let request = request.clone();
        tasks.push(tokio::spawn(async move {
            connection(&addr, c, deadline, request).await
        }));
    }
    let mut report = Report {
        ok: 0,
        failed: 0,
        elapsed: Duration::ZERO,
        latency_us: Histogram::new_with_bounds(1, 60_000_000, 3)?,
    };
    for task in tasks {
        let (ok, failed, histogram) = task.await??;
        report.ok += ok;
        report.failed += failed;
        report.latency_us.add(histogram)?;
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

async fn connection(
    addr: &str,
    c: usize,
    deadline: Instant,
    request: RequestFn,
) -> anyhow::Result<(u64, u64, Histogram<u64>)> {
    let mut stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut buf = vec![0u8; 64 * 1024];
    let (mut ok, mut failed) = (0u64, 0u64);
    let mut n = 0u64;
    while Instant::now() < deadline {
        let bytes = request(c, n);
        n += 1;
        let sent = Instant::now();
        stream.write_all(&bytes).await?;
        let status = read_response(&mut stream, &mut buf).await?;
        histogram.record(sent.elapsed().as_micros().max(1) as u64)?;
        if (200..300).contains(&status) {
            ok += 1;
        } else {
            failed += 1;
        }
    }
    Ok((ok, failed, histogram))
}

/// Reads one response (status line, headers, Content-Length body) and returns its status.
async fn read_response(stream: &mut TcpStream, buf: &mut [u8]) -> anyhow::Result<u16> {
    let mut filled = 0;
    let header_end = loop {
        let read = stream.read(&mut buf[filled..]).await?;
        if read == 0 {
            anyhow::bail!("the server closed the connection");
        }
        filled += read;
        if let Some(pos) = buf[..filled].windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
        if filled == buf.len() {
            anyhow::bail!("response headers too large");
        }
    };
    let head = std::str::from_utf8(&buf[..header_end]).context("response head is not UTF-8")?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("no status code")?;
    let length: usize = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut remaining = length.saturating_sub(filled - header_end);
    while remaining > 0 {
        let chunk = remaining.min(buf.len());
        let read = stream.read(&mut buf[..chunk]).await?;
        if read == 0 {
            anyhow::bail!("the server closed the connection mid-body");
        }
        remaining -= read;
    }
    Ok(status)
}
