//! The model store and `hearth pull` end to end, against a local HTTP server (127.0.0.1
//! only) that imitates the Hugging Face file API: the repository tree listing and
//! `resolve/main/FILE` with Range support, plus faults (cut connection, wrong published
//! hash, 404, stall).

use hearth::model::{Arch, TinySpec};
use hearth::store::Store;
use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

const REPO: &str = "test-org/Tiny-GGUF";
const FILE: &str = "tiny-Q8_0.gguf";

fn model_bytes() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| TinySpec::new(Arch::Llama).build())
}

fn sha_hex(b: &[u8]) -> String {
    hearth::store::hex(&Sha256::digest(b))
}

/// One request for the model file, as the server saw it.
#[derive(Clone, Debug)]
struct FileRequest {
    range_from: Option<u64>,
    sent: u64,
}

#[derive(Default)]
struct Behaviour {
    /// Publish this sha256 instead of the real one.
    wrong_hash: bool,
    /// Cut the first full download after half the bytes.
    cut_first: AtomicBool,
    /// Send the file's headers, then nothing.
    stall: bool,
    /// Pause between 4 KiB chunks (so concurrent clients overlap).
    throttle: Option<Duration>,
}

struct Server {
    base: String,
    files: Arc<Mutex<Vec<FileRequest>>>,
    auth: Arc<Mutex<Vec<String>>>,
    tree_hits: Arc<AtomicUsize>,
}

impl Server {
    fn start(b: Behaviour) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let files = Arc::new(Mutex::new(Vec::new()));
        let auth = Arc::new(Mutex::new(Vec::new()));
        let tree_hits = Arc::new(AtomicUsize::new(0));
        let b = Arc::new(b);
        let (f, a, t) = (files.clone(), auth.clone(), tree_hits.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let (b, f, a, t) = (b.clone(), f.clone(), a.clone(), t.clone());
                std::thread::spawn(move || {
                    let _ = serve(conn, &b, &f, &a, &t);
                });
            }
        });
        Self {
            base,
            files,
            auth,
            tree_hits,
        }
    }

    fn file_requests(&self) -> Vec<FileRequest> {
        self.files.lock().unwrap().clone()
    }
}

fn serve(
    mut conn: TcpStream,
    b: &Behaviour,
    files: &Mutex<Vec<FileRequest>>,
    auth: &Mutex<Vec<String>>,
    tree_hits: &AtomicUsize,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
    let mut range_from = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" {
            break;
        }
        let lower = h.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("range: bytes=") {
            range_from = v.trim().trim_end_matches('-').parse::<u64>().ok();
        }
        if lower.starts_with("authorization:") {
            auth.lock().unwrap().push(h.trim().to_string());
        }
    }
    let data = model_bytes();
    let tree_path = format!("/api/models/{REPO}/tree/main");
    let file_path = format!("/{REPO}/resolve/main/{FILE}");
    if path.split('?').next() == Some(tree_path.as_str()) {
        tree_hits.fetch_add(1, Ordering::SeqCst);
        let oid = if b.wrong_hash {
            sha_hex(b"something else")
        } else {
            sha_hex(data)
        };
        let n = data.len();
        let body = format!(
            r#"[{{"type":"file","oid":"abc","size":42,"path":"README.md"}},
               {{"type":"file","oid":"def","size":{n},"path":"{FILE}","lfs":{{"oid":"{oid}","size":{n},"pointerSize":134}}}},
               {{"type":"file","oid":"0ab","size":{n},"path":"mmproj-Q8_0.gguf","lfs":{{"oid":"{oid}","size":{n},"pointerSize":134}}}}]"#
        );
        return respond(&mut conn, "200 OK", "application/json", body.as_bytes());
    }
    if path == file_path {
        // Like the Hub: the file itself comes from another place.
        let to = format!("http://{}/cdn/{FILE}", conn.local_addr()?);
        let head = format!(
            "HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        return conn.write_all(head.as_bytes());
    }
    if path == format!("/cdn/{FILE}") || path == "/direct/tiny.gguf" {
        let from = range_from.unwrap_or(0).min(data.len() as u64) as usize;
        let rest = &data[from..];
        let mut head = if range_from.is_some() {
            format!(
                "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {from}-{}/{}\r\n",
                data.len() - 1,
                data.len()
            )
        } else {
            "HTTP/1.1 200 OK\r\n".to_string()
        };
        head += &format!(
            "Content-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
            rest.len()
        );
        conn.write_all(head.as_bytes())?;
        if b.stall {
            std::thread::sleep(Duration::from_secs(20));
            return Ok(());
        }
        let cut = range_from.is_none() && b.cut_first.swap(false, Ordering::SeqCst);
        let to_send = if cut { &rest[..rest.len() / 2] } else { rest };
        let mut sent = 0u64;
        for chunk in to_send.chunks(4096) {
            if let Some(d) = b.throttle {
                std::thread::sleep(d);
            }
            conn.write_all(chunk)?;
            sent += chunk.len() as u64;
        }
        conn.flush()?;
        files.lock().unwrap().push(FileRequest { range_from, sent });
        if cut {
            // Drop the connection without sending the rest.
            let _ = conn.shutdown(std::net::Shutdown::Both);
        }
        return Ok(());
    }
    respond(
        &mut conn,
        "404 Not Found",
        "text/plain",
        b"Repository not found",
    )
}

fn respond(conn: &mut TcpStream, status: &str, ty: &str, body: &[u8]) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ty}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes())?;
    conn.write_all(body)?;
    conn.flush()
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hearth-store-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn hearth(models: &Path, server: Option<&Server>, args: &[&str]) -> Output {
    hearth_cmd(models, server, args).output().unwrap()
}

fn hearth_cmd(models: &Path, server: Option<&Server>, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_hearth"));
    c.args(args)
        .env("HEARTH_MODELS", models)
        .env("HEARTH_NO_EXTERNAL_MODELS", "1")
        .env("HEARTH_HTTP_TIMEOUT", "10")
        .env_remove("HF_TOKEN")
        .env(
            "HEARTH_HF_ENDPOINT",
            server
                .map(|s| s.base.as_str())
                .unwrap_or("http://127.0.0.1:9"),
        );
    c
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The one-line `hearth: error: …` of a failed command.
fn err(o: &Output) -> String {
    assert_eq!(o.status.code(), Some(1), "expected failure: {o:?}");
    let e = String::from_utf8_lossy(&o.stderr).into_owned();
    let last = e.lines().last().unwrap_or("").to_string();
    eprintln!("(expected) {last}");
    assert!(last.starts_with("hearth: error: "), "stderr: {e}");
    last
}

fn files_in(dir: &Path) -> Vec<String> {
    match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => vec![],
    }
}

fn spec() -> String {
    format!("hf.co/{REPO}:Q8_0")
}

#[test]
fn pull_then_list_show_resolve_cp_rm() {
    let server = Server::start(Behaviour::default());
    let dir = temp_dir("success");
    let out = ok(&hearth_cmd(&dir, Some(&server), &["pull", &spec()])
        .env("HF_TOKEN", "secret-token")
        .output()
        .unwrap());
    assert!(out.starts_with("tiny:q8_0 "), "{out}");
    assert!(server
        .auth
        .lock()
        .unwrap()
        .iter()
        .any(|a| a.ends_with("Bearer secret-token")));
    assert_eq!(server.file_requests().len(), 1);
    assert_eq!(server.tree_hits.load(Ordering::SeqCst), 1);

    let list = ok(&hearth(&dir, None, &["list"]));
    let lines: Vec<&str> = list.lines().collect();
    assert!(lines[0].starts_with("NAME"), "{list}");
    assert_eq!(lines.len(), 2, "{list}");
    assert!(
        lines[1].starts_with("tiny:q8_0") && lines[1].contains("Q8_0"),
        "{list}"
    );
    let id = &sha_hex(model_bytes())[..12];
    assert!(lines[1].contains(id), "{list}");

    let show = ok(&hearth(&dir, None, &["show", "tiny:q8_0"]));
    let fields: Vec<String> = show
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    for want in [
        "architecture llama",
        "context length 1024",
        "quantization Q8_0",
        "chat template built-in llama",
    ] {
        assert!(
            fields.iter().any(|f| f.starts_with(want)),
            "{want:?} missing in\n{show}"
        );
    }
    // The hf.co spec resolves to the same model once pulled.
    assert!(ok(&hearth(&dir, None, &["show", &spec()])).contains("architecture"));

    let store = Store::open(&dir).unwrap();
    let blob = store.resolve("tiny:q8_0").unwrap();
    assert_eq!(std::fs::read(&blob).unwrap(), model_bytes());
    assert_eq!(store.resolve(&spec()).unwrap(), blob);
    let e = store.resolve("nosuch:model").unwrap_err().to_string();
    assert!(
        e.contains("tiny:q8_0")
            && e.contains("hearth pull hf.co/OWNER/REPO:QUANT --name nosuch:model"),
        "{e}"
    );

    // Pulling again downloads nothing.
    let again = hearth(&dir, Some(&server), &["pull", &spec()]);
    ok(&again);
    assert!(String::from_utf8_lossy(&again.stderr).contains("already in the store"));
    assert_eq!(server.file_requests().len(), 1);

    ok(&hearth(&dir, None, &["cp", "tiny:q8_0", "mine"]));
    assert_eq!(store.resolve("mine").unwrap(), blob);
    ok(&hearth(&dir, None, &["rm", "tiny:q8_0"]));
    assert!(blob.is_file(), "blob still used by mine:latest");
    assert!(err(&hearth(&dir, None, &["show", "tiny:q8_0"])).contains("not installed"));
    ok(&hearth(&dir, None, &["rm", "mine"]));
    assert!(!blob.exists(), "blob of the last name removed");
    assert_eq!(ok(&hearth(&dir, None, &["list"])).lines().count(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn import_copy_link_and_direct_url() {
    let server = Server::start(Behaviour::default());
    let dir = temp_dir("import");
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("src.gguf");
    std::fs::write(&src, model_bytes()).unwrap();
    let models = dir.join("models");
    let src_s = src.to_str().unwrap();
    ok(&hearth(&models, None, &["import", src_s, "a:copy"]));
    ok(&hearth(
        &models,
        None,
        &["import", src_s, "b:link", "--link"],
    ));
    let store = Store::open(&models).unwrap();
    assert_eq!(
        store.resolve("a:copy").unwrap(),
        store.resolve("b:link").unwrap()
    );
    assert_eq!(files_in(&models.join("blobs")).len(), 1);
    // Re-using a name for other content drops the old blob once nothing uses it.
    let other = dir.join("other.gguf");
    std::fs::write(&other, TinySpec::new(Arch::Qwen3).build()).unwrap();
    let other_s = other.to_str().unwrap();
    ok(&hearth(&models, None, &["import", other_s, "a:copy"]));
    assert_eq!(files_in(&models.join("blobs")).len(), 2);
    ok(&hearth(&models, None, &["import", other_s, "b:link"]));
    assert_eq!(files_in(&models.join("blobs")).len(), 1);
    ok(&hearth(
        &models,
        None,
        &["import", src_s, "b:link", "--link"],
    ));
    // A path resolves to itself.
    assert_eq!(store.resolve(src_s).unwrap(), src);
    // Not a GGUF: rejected, nothing registered.
    let junk = dir.join("junk.gguf");
    std::fs::write(&junk, b"not a gguf at all").unwrap();
    assert!(err(&hearth(
        &models,
        None,
        &["import", junk.to_str().unwrap(), "junk"]
    ))
    .contains("GGUF"));
    assert!(store.resolve("junk").is_err());

    let url = format!("{}/direct/tiny.gguf", server.base);
    let out = hearth(&models, Some(&server), &["pull", &url]);
    assert!(ok(&out).starts_with("tiny:latest"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no published hash"));
    assert_eq!(store.list().unwrap().len(), 3);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn resume_after_a_cut_connection_fetches_only_the_rest() {
    let server = Server::start(Behaviour {
        cut_first: AtomicBool::new(true),
        ..Default::default()
    });
    let dir = temp_dir("resume");
    let e = err(&hearth(&dir, Some(&server), &["pull", &spec()]));
    assert!(e.contains("resume"), "{e}");
    assert!(Store::open(&dir).unwrap().list().unwrap().is_empty());
    assert!(Store::open(&dir).unwrap().resolve("tiny:q8_0").is_err());

    ok(&hearth(&dir, Some(&server), &["pull", &spec()]));
    let reqs = server.file_requests();
    let total = model_bytes().len() as u64;
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    let first = reqs[0].sent;
    assert!(first > 0 && first < total);
    assert_eq!(reqs[1].range_from, Some(first), "{reqs:?}");
    assert_eq!(reqs[1].sent, total - first, "{reqs:?}");
    let blob = Store::open(&dir).unwrap().resolve("tiny:q8_0").unwrap();
    assert_eq!(std::fs::read(blob).unwrap(), model_bytes());
    assert!(!files_in(&dir.join("partial"))
        .iter()
        .any(|f| f.ends_with(".part")));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn hash_mismatch_installs_nothing() {
    let server = Server::start(Behaviour {
        wrong_hash: true,
        ..Default::default()
    });
    let dir = temp_dir("mismatch");
    let e = err(&hearth(&dir, Some(&server), &["pull", &spec()]));
    assert!(e.contains("sha256 mismatch"), "{e}");
    assert!(files_in(&dir.join("blobs")).is_empty());
    assert!(files_in(&dir.join("manifests")).is_empty());
    assert!(!files_in(&dir.join("partial"))
        .iter()
        .any(|f| f.ends_with(".part")));
    assert_eq!(ok(&hearth(&dir, None, &["list"])).lines().count(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn not_found_is_a_clear_error() {
    let server = Server::start(Behaviour::default());
    let dir = temp_dir("404");
    let e = err(&hearth(
        &dir,
        Some(&server),
        &["pull", "hf.co/nobody/missing"],
    ));
    assert!(e.contains("404") && e.contains("nobody/missing"), "{e}");
    let e = err(&hearth(
        &dir,
        Some(&server),
        &["pull", &format!("hf.co/{REPO}:Q2_K")],
    ));
    assert!(e.contains("Q2_K") && e.contains(FILE), "{e}");
    let e = err(&hearth(&dir, None, &["pull", "nosuch:model"]));
    assert!(e.contains("gemma3:270m"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_stalled_server_times_out() {
    let server = Server::start(Behaviour {
        stall: true,
        ..Default::default()
    });
    let dir = temp_dir("stall");
    let t = Instant::now();
    let o = hearth_cmd(&dir, Some(&server), &["pull", &spec()])
        .env("HEARTH_HTTP_TIMEOUT", "1")
        .output()
        .unwrap();
    let e = err(&o);
    assert!(e.contains("timeout"), "{e}");
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert!(Store::open(&dir).unwrap().list().unwrap().is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn two_pulls_at_once_leave_one_intact_model() {
    let server = Server::start(Behaviour {
        throttle: Some(Duration::from_millis(5)),
        ..Default::default()
    });
    let dir = temp_dir("concurrent");
    let children: Vec<_> = (0..2)
        .map(|_| {
            hearth_cmd(&dir, Some(&server), &["pull", &spec()])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut fresh = 0;
    for c in children {
        let o = c.wait_with_output().unwrap();
        ok(&o);
        if !String::from_utf8_lossy(&o.stderr).contains("already in the store") {
            fresh += 1;
        }
    }
    // One downloaded, the other waited for it and found the blob.
    assert_eq!(fresh, 1);
    assert_eq!(server.file_requests().len(), 1);
    let store = Store::open(&dir).unwrap();
    let list = store.list().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(std::fs::read(&list[0].path).unwrap(), model_bytes());
    assert_eq!(
        files_in(&dir.join("blobs")).len(),
        1,
        "{:?}",
        files_in(&dir.join("blobs"))
    );
    assert!(!files_in(&dir.join("partial"))
        .iter()
        .any(|f| f.ends_with(".part")));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_names_touch_nothing() {
    let dir = temp_dir("badnames");
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("m.gguf");
    std::fs::write(&src, model_bytes()).unwrap();
    let models = dir.join("models");
    let long = "a".repeat(300);
    for name in [
        "../x",
        "/abs",
        "a/b",
        "x/../../y",
        "a:b:c",
        "",
        long.as_str(),
    ] {
        let e = err(&hearth(
            &models,
            None,
            &["import", src.to_str().unwrap(), name],
        ));
        assert!(e.contains("invalid model name"), "{name}: {e}");
        assert!(e.len() < 300, "{e}");
        let e = err(&hearth(
            &models,
            None,
            &["pull", "gemma3:270m", "--name", name],
        ));
        assert!(e.contains("invalid model name"), "{name}: {e}");
        err(&hearth(&models, None, &["cp", "x", name]));
        err(&hearth(&models, None, &["rm", name]));
    }
    assert!(!models.exists(), "the store was touched");
    let mut left = files_in(&dir);
    left.sort();
    assert_eq!(left, ["m.gguf"]);
    assert!(!dir.parent().unwrap().join("x").exists());
    let _ = std::fs::remove_dir_all(&dir);
}
