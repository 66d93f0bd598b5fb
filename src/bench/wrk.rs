//! wrk (github.com/wg/wrk) as a second load generator: a C program driven by a Lua script,
//! so its own cost per request differs from the built-in generator's, and a figure that holds
//! under both is the server's, not the generator's.
//!
//! The script is written for each run: a fixed body and headers, one header whose value is
//! unique per request (`{run}-{thread}-{n}`), and a `done` hook that prints the summary as
//! one line this module parses.

use std::time::Duration;

use anyhow::Context;

/// What one wrk run measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WrkReport {
    /// Responses with a status below 400.
    pub ok: u64,
    /// Responses with 400 and above, and socket errors and timeouts.
    pub failed: u64,
    pub elapsed: Duration,
    pub p50_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
}

/// A POST request: `unique_header` gets a value no other request of the run has.
pub struct WrkRequest<'a> {
    pub path: &'a str,
    pub headers: &'a [(&'a str, &'a str)],
    pub unique_header: &'a str,
    pub body: &'a [u8],
}

/// Where wrk is, or why it can't be used.
pub fn find() -> anyhow::Result<std::path::PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("wrk"))
        .find(|candidate| candidate.is_file())
        .context("wrk is not on PATH (Debian: apt-get install wrk)")
}

/// Runs wrk against `addr` for `duration` with `connections` keep-alive connections.
pub async fn run(
    addr: &str,
    connections: usize,
    duration: Duration,
    run: &str,
    request: &WrkRequest<'_>,
) -> anyhow::Result<WrkReport> {
    let dir = super::fixture::scratch_dir("synchub-wrk")?;
    let script = dir.join("request.lua");
    std::fs::write(&script, script_text(run, request)?)?;
    let output = run_wrk(&script, addr, connections, duration, request.path).await;
    let _ = std::fs::remove_dir_all(&dir);
    let output = output?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        anyhow::bail!(
            "wrk failed ({}): {}{}",
            output.status,
            stdout,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    parse_summary(&stdout)
        .with_context(|| format!("wrk printed no summary line; its output:\n{stdout}"))
}

async fn run_wrk(
    script: &std::path::Path,
    addr: &str,
    connections: usize,
    duration: Duration,
    path: &str,
) -> anyhow::Result<std::process::Output> {
    // One wrk thread a core, as wrk's own default of 2 is on this 2-core machine.
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(connections);
    tokio::process::Command::new(find()?)
        .arg(format!("--threads={threads}"))
        .arg(format!("--connections={connections}"))
        .arg(format!("--duration={}s", duration.as_secs().max(1)))
        .arg("--timeout=10s")
        .arg(format!("--script={}", script.display()))
        .arg(format!("http://{addr}{path}"))
        .output()
        .await
        .context("starting wrk")
}

const SUMMARY_PREFIX: &str = "synchub-wrk-summary";

fn script_text(run: &str, request: &WrkRequest<'_>) -> anyhow::Result<String> {
    let body = std::str::from_utf8(request.body).context("the wrk body must be UTF-8")?;
    // A Lua long string holds the body as it is, unless the body holds its closing bracket.
    anyhow::ensure!(!body.contains("]==]"), "the body holds ]==]");
    let mut headers = String::new();
    for (name, value) in request.headers {
        headers.push_str(&format!(
            "wrk.headers[{}] = {}\n",
            lua_quote(name),
            lua_quote(value)
        ));
    }
    Ok(format!(
        r#"wrk.method = "POST"
wrk.body = [==[{body}]==]
{headers}
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("thread_number", threads)
end

local n = 0
function request()
  n = n + 1
  -- Led by a scattered prefix, as the built-in generator's ids (`webhooks::event_id`).
  wrk.headers[{unique}] = string.format("%08x", math.random(0, 2147483647)) .. "-" .. {run} .. "-" .. thread_number .. "-" .. n
  return wrk.format()
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("{SUMMARY_PREFIX} %.0f %.0f %.0f %.0f %.0f %.0f %.0f\n",
    summary.requests, e.status, e.connect + e.read + e.write + e.timeout, summary.duration,
    latency:percentile(50), latency:percentile(99), latency.max))
end
"#,
        unique = lua_quote(request.unique_header),
        run = lua_quote(run),
    ))
}

/// A Lua string literal.
fn lua_quote(text: &str) -> String {
    let mut quoted = String::from("\"");
    for c in text.chars() {
        match c {
            '"' | '\\' => {
                quoted.push('\\');
                quoted.push(c);
            }
            '\n' => quoted.push_str("\\n"),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

/// The line `done` prints: requests, status errors, socket errors, duration (µs), p50, p99
/// and max latency (µs).
fn parse_summary(stdout: &str) -> Option<WrkReport> {
    let line = stdout
        .lines()
        .find_map(|line| line.strip_prefix(SUMMARY_PREFIX))?;
    let numbers: Vec<f64> = line
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    let [
        requests,
        status_errors,
        socket_errors,
        duration_us,
        p50,
        p99,
        max,
    ] = numbers[..]
    else {
        return None;
    };
    Some(WrkReport {
        // wrk counts a response as a request, whatever its status.
        ok: (requests - status_errors).max(0.0) as u64,
        failed: (status_errors + socket_errors) as u64,
        elapsed: Duration::from_micros(duration_us as u64),
        p50_us: p50,
        p99_us: p99,
        max_us: max,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_line_is_read_among_wrks_own_output() {
        let stdout = "Running 10s test @ http://127.0.0.1:8080/hook\n  2 threads and 64 connections\n\
            synchub-wrk-summary 120000 5 2 10000000 450 2100 9000\n";
        let report = parse_summary(stdout).unwrap();
        assert_eq!(report.ok, 119_995);
        assert_eq!(report.failed, 7);
        assert_eq!(report.elapsed, Duration::from_secs(10));
        assert_eq!(
            (report.p50_us, report.p99_us, report.max_us),
            (450.0, 2100.0, 9000.0)
        );
        assert_eq!(parse_summary("Running 10s test\n"), None);
        assert_eq!(parse_summary("synchub-wrk-summary 1 2 3\n"), None);
    }

    #[test]
    fn header_values_are_quoted_for_lua() {
        assert_eq!(lua_quote(r#"a"b\c"#), r#""a\"b\\c""#);
        let text = script_text(
            "measured",
            &WrkRequest {
                path: "/hook",
                headers: &[("X-Shopify-Hmac-Sha256", "abc=")],
                unique_header: "X-Shopify-Event-Id",
                body: b"{\"id\": 1}",
            },
        )
        .unwrap();
        assert!(text.contains(r#"wrk.headers["X-Shopify-Hmac-Sha256"] = "abc=""#));
        assert!(text.contains(
            r#"wrk.headers["X-Shopify-Event-Id"] = string.format("%08x", math.random(0, 2147483647)) .. "-" .. "measured" .. "-""#
        ));
        assert!(text.contains("wrk.body = [==[{\"id\": 1}]==]"));
    }
}
