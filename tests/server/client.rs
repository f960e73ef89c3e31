//! The test harness: a `hearth serve` process over a temp store with a tiny model, and a
//! plain HTTP/1.1 client (chunked bodies, NDJSON, server-sent events) that can hang up at
//! any moment.

use hearth::model::{Arch, TinySpec};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const MODEL: &str = "tiny:test";

/// A running server, killed on drop.
pub struct Server {
    pub child: Child,
    pub addr: String,
    pub _dir: TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct TempDir(pub PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn temp_dir(tag: &str) -> TempDir {
    let dir = std::env::temp_dir().join(format!("hearth-serve-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    TempDir(dir)
}

/// `hearth import` of `file` as `name` into the store under `dir` (`--link`: hard link).
pub fn import(dir: &TempDir, file: &std::path::Path, name: &str, link: bool) {
    let mut args = vec!["import"];
    if link {
        args.push("--link");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(args)
        .args([file.to_str().unwrap(), name])
        .env("HEARTH_MODELS", dir.0.join("store"))
        .env("HEARTH_NO_EXTERNAL_MODELS", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn store_with_tiny(tag: &str) -> TempDir {
    let dir = temp_dir(tag);
    let file = dir.0.join("tiny.gguf");
    std::fs::write(&file, TinySpec::new(Arch::Gemma3).build()).unwrap();
    import(&dir, &file, MODEL, false);
    dir
}

pub fn serve(tag: &str, args: &[&str]) -> Server {
    serve_with_env(tag, args, &[])
}

/// `serve` with extra environment variables (e.g. `HEARTH_FAULT_INJECT`).
pub fn serve_with_env(tag: &str, args: &[&str], env: &[(&str, &str)]) -> Server {
    spawn(store_with_tiny(tag), args, env)
}

/// `hearth serve` over a temp store holding only `file`, imported (hard-linked) as `name`.
pub fn serve_file(tag: &str, file: &std::path::Path, name: &str, args: &[&str]) -> Server {
    let dir = temp_dir(tag);
    import(&dir, file, name, true);
    spawn(dir, args, &[])
}

/// Starts `hearth serve` on an ephemeral port over the store in `dir`.
fn spawn(dir: TempDir, args: &[&str], env: &[(&str, &str)]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(["serve", "--port", "0"])
        .args(args)
        .env("HEARTH_MODELS", dir.0.join("store"))
        .env("HEARTH_NO_EXTERNAL_MODELS", "1")
        .envs(env.iter().copied())
        .env_remove("HEARTH_API_KEY")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("hearth listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    Server {
        child,
        addr,
        _dir: dir,
    }
}

/// A response: status, headers (lowercase names) and the decoded body.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    pub fn lines(&self) -> Vec<Value> {
        self.body
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
    /// The JSON payloads of server-sent events, and whether `[DONE]` closed them.
    pub fn events(&self) -> (Vec<Value>, bool) {
        let mut out = Vec::new();
        let mut done = false;
        for l in self.body.lines() {
            match l.strip_prefix("data: ") {
                Some("[DONE]") => done = true,
                Some(d) => out.push(serde_json::from_str(d).unwrap()),
                None => assert!(l.is_empty(), "bad SSE line {l:?}"),
            }
        }
        (out, done)
    }
    pub fn error(&self) -> String {
        self.json()["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error string in {:?}", self.body))
            .to_string()
    }
}

pub fn send(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(300))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !body.is_empty() {
        req += "Content-Type: application/json\r\n";
    }
    for (k, v) in headers {
        req += &format!("{k}: {v}\r\n");
    }
    req += "\r\n";
    s.write_all(req.as_bytes()).unwrap();
    // The server may answer (413) and close before reading a large body.
    let _ = s.write_all(body);
    s
}

pub fn read_reply(s: TcpStream) -> Reply {
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("bad status line {line:?}"))
        .parse()
        .unwrap();
    let mut headers = Vec::new();
    loop {
        line.clear();
        r.read_line(&mut line).unwrap();
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (k, v) = l.split_once(':').unwrap();
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            r.read_line(&mut line).unwrap();
            let n = usize::from_str_radix(line.trim(), 16).unwrap();
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk).unwrap();
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else {
        r.read_to_end(&mut body).unwrap();
    }
    Reply {
        status,
        headers,
        body: String::from_utf8(body).unwrap(),
    }
}

pub fn call(addr: &str, method: &str, path: &str, body: Option<Value>) -> Reply {
    let b = body.map(|v| v.to_string()).unwrap_or_default();
    read_reply(send(addr, method, path, &[], b.as_bytes()))
}

pub fn post(addr: &str, path: &str, body: Value) -> Reply {
    call(addr, "POST", path, Some(body))
}

pub fn get(addr: &str, path: &str) -> Reply {
    call(addr, "GET", path, None)
}

pub fn ok(r: Reply) -> Reply {
    assert_eq!(r.status, 200, "{}", r.body);
    r
}
