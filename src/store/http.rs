//! HTTP for `hearth pull`: one configured agent, status and timeout errors that say what
//! to do, and the resumable download of one file into a partial file.

use super::pull::{Progress, PullOptions, Target};
use super::{hex, io_err, Result, StoreError};
use sha2::{Digest, Sha256};
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

pub(crate) fn agent(opts: &PullOptions) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .redirect_auth_headers(ureq::config::RedirectAuthHeaders::SameHost)
        .timeout_connect(Some(opts.timeout))
        .timeout_per_read(Some(opts.timeout))
        .timeout_send_request(Some(opts.timeout))
        .user_agent(concat!("hearth/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

fn is_timeout_io(e: &io::Error) -> bool {
    if matches!(
        e.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
    ) {
        return true;
    }
    let s = e.to_string().to_ascii_lowercase();
    s.contains("timeout") || s.contains("timed out")
}

pub(crate) fn map_ureq(url: &str, opts: &PullOptions, e: ureq::Error) -> StoreError {
    let timeout = StoreError::Timeout {
        url: url.into(),
        secs: opts.timeout.as_secs().max(1),
    };
    match e {
        ureq::Error::Timeout(_) => timeout,
        ureq::Error::Io(ref io) if is_timeout_io(io) => timeout,
        e => StoreError::Http {
            url: url.into(),
            why: e.to_string(),
        },
    }
}

pub(crate) fn get(
    agent: &ureq::Agent,
    opts: &PullOptions,
    url: &str,
    range_from: u64,
) -> Result<ureq::http::Response<ureq::Body>> {
    let mut req = agent.get(url);
    if let Some(t) = &opts.token {
        if url.starts_with(&opts.endpoint) {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
    }
    if range_from > 0 {
        req = req.header("Range", format!("bytes={range_from}-"));
    }
    // Byte counts and ranges must refer to the file itself, not a compressed encoding.
    req = req.header("Accept-Encoding", "identity");
    req.call().map_err(|e| map_ureq(url, opts, e))
}

pub(crate) fn status_error(url: &str, status: u16, what: &str) -> StoreError {
    let why = match status {
        401 | 403 => format!(
            "HTTP {status}: access denied to {what} (a gated or private repository? set HF_TOKEN)"
        ),
        404 => format!("HTTP 404: {what} not found"),
        s => format!("HTTP {s} for {what}"),
    };
    StoreError::Http {
        url: url.into(),
        why,
    }
}

/// Fetches `target` into `part`, resuming from its current length. Returns the sha256
/// hex of the whole file, its size, the bytes received now and the bytes reused.
pub(crate) fn download(
    agent: &ureq::Agent,
    opts: &PullOptions,
    target: &Target,
    part: &Path,
    progress: &mut dyn Progress,
) -> Result<(String, u64, u64, u64)> {
    let url = &target.url;
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(part)
        .map_err(io_err(part))?;
    let mut have = file.metadata().map_err(io_err(part))?.len();
    if target.size.is_some_and(|s| have > s) {
        file.set_len(0).map_err(io_err(part))?;
        have = 0;
    }
    let mut hasher = Sha256::new();
    if have > 0 {
        progress.message(&format!("resuming at {have} bytes"));
        let mut buf = vec![0u8; 1 << 20];
        let mut r = (&file).take(have);
        let mut n_read = 0u64;
        loop {
            let n = r.read(&mut buf).map_err(io_err(part))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            n_read += n as u64;
        }
        if n_read != have {
            // The file shrank under us; start over.
            file.set_len(0).map_err(io_err(part))?;
            hasher = Sha256::new();
            have = 0;
        }
    }
    if have > 0 && target.size == Some(have) {
        return Ok((hex(&hasher.finalize()), have, 0, have));
    }
    let mut resp = get(agent, opts, url, have)?;
    let mut status = resp.status().as_u16();
    if have > 0 && status == 416 {
        // Our partial file is not a prefix the server recognizes: start over.
        have = 0;
        resp = get(agent, opts, url, 0)?;
        status = resp.status().as_u16();
    }
    let resumed_ok = status == 206
        && have > 0
        && resp
            .headers()
            .get("content-range")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().starts_with(&format!("bytes {have}-")));
    if status == 206 && !resumed_ok {
        return Err(StoreError::Http {
            url: url.clone(),
            why: "the server sent a range we did not ask for".into(),
        });
    }
    if status != 200 && status != 206 {
        return Err(status_error(
            url,
            status,
            &format!("file {}", target.file_name),
        ));
    }
    if !resumed_ok {
        if have > 0 {
            progress.message("the server does not resume downloads; starting over");
        }
        have = 0;
        hasher = Sha256::new();
        file.set_len(0).map_err(io_err(part))?;
    }
    file.seek(SeekFrom::Start(have)).map_err(io_err(part))?;
    let length = resp
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let total = length.map(|l| l + have).or(target.size);
    progress.start(&target.file_name, total, have);
    let mut body = resp.into_body().into_reader();
    let mut buf = vec![0u8; 256 << 10];
    let mut transferred = 0u64;
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let _ = file.sync_all();
                if is_timeout_io(&e) {
                    return Err(StoreError::Timeout {
                        url: url.clone(),
                        secs: opts.timeout.as_secs().max(1),
                    });
                }
                return Err(StoreError::Http {
                    url: url.clone(),
                    why: format!(
                        "download interrupted after {} bytes ({e}); run the command again to resume",
                        have + transferred
                    ),
                });
            }
        };
        transferred += n as u64;
        if let Some(limit) = target.size {
            if have + transferred > limit {
                drop(file);
                let _ = fs::remove_file(part);
                return Err(StoreError::Http {
                    url: url.clone(),
                    why: format!(
                        "the server sent more than the published {limit} bytes; nothing was installed"
                    ),
                });
            }
        }
        file.write_all(&buf[..n]).map_err(io_err(part))?;
        hasher.update(&buf[..n]);
        progress.advance(n as u64);
    }
    file.sync_all().map_err(io_err(part))?;
    let size = have + transferred;
    if let Some(l) = length {
        if transferred != l {
            return Err(StoreError::Http {
                url: url.clone(),
                why: format!(
                    "connection closed after {size} bytes of {}; run the command again to resume",
                    l + have
                ),
            });
        }
    }
    Ok((hex(&hasher.finalize()), size, transferred, have))
}
