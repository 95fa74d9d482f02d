//! Black-box harness: runs the real `keyward` binary on free ports with a temp
//! data dir, against the simulated upstream (`keyward mock-upstream`).
//! Readiness is read from the processes' own "listening on" lines, never a sleep.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_keyward");

/// A running child process whose output is captured for later inspection.
pub struct Proc {
    pub child: Child,
    pub stdout: Arc<Mutex<String>>,
    pub stderr: Arc<Mutex<String>>,
}

fn pump<R: Read + Send + 'static>(r: R, buf: Arc<Mutex<String>>, ready: Option<std::sync::mpsc::Sender<String>>) {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(r);
        let mut line = String::new();
        while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
            if let Some(tx) = &ready {
                let _ = tx.send(line.clone());
            }
            buf.lock().unwrap().push_str(&line);
            line.clear();
        }
    });
}

impl Proc {
    /// Spawn and wait until a stdout line contains every marker; returns the
    /// matching lines in marker order.
    pub fn spawn(args: &[&str], envs: &[(&str, &str)], markers: &[&str]) -> (Proc, Vec<String>) {
        let mut cmd = Command::new(BIN);
        cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).stdin(Stdio::null());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn keyward");
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        pump(child.stdout.take().unwrap(), stdout.clone(), Some(tx));
        pump(child.stderr.take().unwrap(), stderr.clone(), None);
        let mut found = vec![String::new(); markers.len()];
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while found.iter().any(|f| f.is_empty()) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = rx
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("process {args:?} not ready; stderr:\n{}", stderr.lock().unwrap()));
            for (i, m) in markers.iter().enumerate() {
                if line.contains(m) {
                    found[i] = line.trim().to_string();
                }
            }
        }
        (Proc { child, stdout, stderr }, found)
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                // give the pump threads a moment to copy the last lines
                std::thread::sleep(Duration::from_millis(50));
                return st;
            }
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("process did not stop on SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn output(&self) -> String {
        format!("{}{}", self.stdout.lock().unwrap(), self.stderr.lock().unwrap())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn addr_after(line: &str, prefix: &str) -> String {
    line.split(prefix).nth(1).unwrap().trim().to_string()
}

/// Run a CLI command to completion.
pub fn cli(args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    let mut child = cmd.spawn().unwrap();
    if let Some(s) = stdin {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    }
    child.wait_with_output().unwrap()
}

pub fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// A fake upstream key of a shape the leak scanner does not flag.
pub fn fake_upstream_key() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let n = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    format!("sk-ant-test-{:x}{:x}", n, std::process::id())
}

pub struct Mock {
    pub proc: Proc,
    pub url: String,
}

pub fn mock(accept_key: &str) -> Mock {
    mock_with(&["--accept-key", accept_key])
}

pub fn mock_with(args: &[&str]) -> Mock {
    let mut all = vec!["mock-upstream", "--listen", "127.0.0.1:0"];
    all.extend_from_slice(args);
    let (proc, lines) = Proc::spawn(&all, &[], &["listening on http://"]);
    let url = format!("http://{}", addr_after(&lines[0], "listening on http://"));
    Mock { proc, url }
}

/// An installation in a temp dir with a running server.
pub struct Gateway {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub token: String,
    pub data_url: String,
    pub admin_url: String,
    pub server: Option<Proc>,
    /// Everything CLI commands printed after the responses that created secrets.
    pub cli_log: String,
}

impl Gateway {
    pub fn init(upstream_url: &str) -> (Gateway, String) {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("kw");
        let out = cli(
            &[
                "init",
                "--data-dir",
                data.to_str().unwrap(),
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
                "--upstream-url",
                upstream_url,
            ],
            None,
        );
        assert!(out.status.success(), "init failed: {}", text(&out));
        let init_text = text(&out);
        let token = std::fs::read_to_string(data.join("admin.token")).unwrap().trim().to_string();
        assert!(init_text.contains(&token), "init prints the owner token once");
        (
            Gateway {
                config: data.join("keyward.toml"),
                dir,
                token,
                data_url: String::new(),
                admin_url: String::new(),
                server: None,
                cli_log: String::new(),
            },
            init_text,
        )
    }

    pub fn data_dir(&self) -> PathBuf {
        self.config.parent().unwrap().to_path_buf()
    }

    pub fn append_config(&self, extra: &str) {
        let mut c = std::fs::read_to_string(&self.config).unwrap();
        c.push_str(extra);
        std::fs::write(&self.config, c).unwrap();
    }

    /// Set `key = value` (TOML) in `[section]`, replacing an existing value and
    /// adding the section if needed.
    pub fn set_config(&self, section: &str, key: &str, value: &str) {
        let c = std::fs::read_to_string(&self.config).unwrap();
        let header = format!("[{section}]");
        let mut lines: Vec<String> = c.lines().map(str::to_string).collect();
        let line = format!("{key} = {value}");
        match lines.iter().position(|l| l.trim() == header) {
            Some(h) => {
                let end = lines[h + 1..]
                    .iter()
                    .position(|l| l.trim_start().starts_with('['))
                    .map_or(lines.len(), |e| h + 1 + e);
                match lines[h + 1..end].iter().position(|l| l.split('=').next().map(str::trim) == Some(key)) {
                    Some(i) => lines[h + 1 + i] = line,
                    None => lines.insert(h + 1, line),
                }
            }
            None => {
                lines.push(String::new());
                lines.push(header);
                lines.push(line);
            }
        }
        std::fs::write(&self.config, lines.join("\n") + "\n").unwrap();
    }

    pub fn start(&mut self) {
        self.start_with_env(&[]);
    }

    pub fn start_with_env(&mut self, extra: &[(&str, &str)]) {
        let mut envs = vec![("KEYWARD_LOG", "debug")];
        envs.extend_from_slice(extra);
        let (proc, lines) = Proc::spawn(
            &["serve", "--config", self.config.to_str().unwrap()],
            &envs,
            &["data plane listening on http://", "admin plane listening on http://"],
        );
        self.data_url = format!("http://{}", addr_after(&lines[0], "listening on http://"));
        self.admin_url = format!("http://{}", addr_after(&lines[1], "listening on http://"));
        self.server = Some(proc);
    }

    pub fn stop(&mut self) -> String {
        let mut p = self.server.take().unwrap();
        let st = p.stop();
        assert!(st.success(), "server exited with {st:?}: {}", p.output());
        p.output()
    }

    /// Run a management command against this installation (via --config).
    pub fn kw(&mut self, args: &[&str]) -> Output {
        self.kw_stdin(args, None)
    }

    pub fn kw_stdin(&mut self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut all: Vec<&str> = args.to_vec();
        let cfg = self.config.to_str().unwrap().to_string();
        all.push("--config");
        all.push(&cfg);
        let out = cli(&all, stdin);
        self.cli_log.push_str(&text(&out));
        out
    }

    /// Create service `svc`, an upstream for `env` holding `upstream_key`, and a key.
    pub fn provision(&mut self, svc: &str, env: &str, upstream_key: &str) -> (String, String) {
        let o = self.kw(&["service", "add", svc, "--owner", "team-a"]);
        assert!(o.status.success(), "{}", text(&o));
        let o = self.kw_stdin(&["upstream", "add", &format!("{env}-main"), "--env", env], Some(upstream_key));
        assert!(o.status.success(), "{}", text(&o));
        self.create_key(svc, env)
    }

    /// Returns (key id, secret). The creating output is not added to `cli_log`.
    pub fn create_key(&mut self, svc: &str, env: &str) -> (String, String) {
        self.create_key_with(svc, env, &[])
    }

    pub fn create_key_with(&mut self, svc: &str, env: &str, extra: &[&str]) -> (String, String) {
        let cfg = self.config.to_str().unwrap().to_string();
        let mut args = vec!["key", "create", "--service", svc, "--env", env, "--json", "--config", &cfg];
        args.extend_from_slice(extra);
        let o = cli(&args, None);
        assert!(o.status.success(), "{}", text(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        (v["id"].as_str().unwrap().to_string(), v["secret"].as_str().unwrap().to_string())
    }

    pub fn db_path(&self) -> PathBuf {
        self.data_dir().join("keyward.db")
    }
}

/// Every file under `dir`, concatenated as lossy text (database, WAL, logs).
pub fn read_all_files(dir: &Path) -> String {
    let mut out = String::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            out.push_str(&String::from_utf8_lossy(&std::fs::read(&p).unwrap()));
        }
    }
    out
}

/// A minimal HTTP/1.1 client (one request per connection), so tests control
/// every header and byte.
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&self.body)))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).to_string()
    }
}

pub fn split_url(url: &str) -> (String, String) {
    let rest = url.strip_prefix("http://").unwrap();
    match rest.find('/') {
        Some(i) => (rest[..i].to_string(), rest[i..].to_string()),
        None => (rest.to_string(), "/".to_string()),
    }
}

pub fn connect_and_send(method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> std::net::TcpStream {
    use std::io::Write;
    let (host, path) = split_url(url);
    let mut s = std::net::TcpStream::connect(&host).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n");
    let mut has_len = false;
    for (k, v) in headers {
        has_len |= k.eq_ignore_ascii_case("content-length");
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !has_len {
        req.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let _ = s.write_all(body);
    s
}

fn decode_chunked(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(i) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let n =
            usize::from_str_radix(std::str::from_utf8(&b[..i]).unwrap().split(';').next().unwrap().trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[i + 2..i + 2 + n]);
        b = &b[i + 2 + n + 2..];
    }
}

pub fn parse_response(raw: &[u8]) -> Resp {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("no header end");
    let head = std::str::from_utf8(&raw[..end]).unwrap();
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    if headers.iter().any(|(k, v)| k == "transfer-encoding" && v.contains("chunked")) {
        body = decode_chunked(&body);
    }
    Resp { status, headers, body }
}

pub fn http(method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
    let mut s = connect_and_send(method, url, headers, body);
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    parse_response(&raw)
}

pub const MSG: &str =
    r#"{"model":"claude-sonnet-4-6","max_tokens":32,"messages":[{"role":"user","content":"Hello there, gateway!"}]}"#;

pub fn post_messages(base: &str, key: &str, body: &str) -> Resp {
    http(
        "POST",
        &format!("{base}/v1/messages"),
        &[("x-api-key", key), ("anthropic-version", "2023-06-01"), ("content-type", "application/json")],
        body.as_bytes(),
    )
}

/// Poll `f` until it returns Some, for at most `secs` seconds (waiting on the
/// system under test to act, e.g. a scheduler tick; never a readiness sleep).
pub fn wait_for<T>(secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "condition not met within {secs}s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn json_out(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("not JSON: {}", text(o)))
}
