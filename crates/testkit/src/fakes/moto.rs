//! Not a fake: a real AWS Secrets Manager implementation, `moto_server`
//! (PyPI `moto[server]`, pinned in `tests/requirements.txt`), started on a
//! free loopback port for one test and killed when dropped.
//!
//! A missing moto is a test failure with the install command, never a skip:
//! CI installs `tests/requirements.txt`.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct MotoServer {
    child: Option<Child>,
    addr: SocketAddr,
}

const INSTALL: &str =
    "moto_server is not installed: run `python3 -m pip install -r tests/requirements.txt` (it pins moto[server])";

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl MotoServer {
    /// Start moto and wait until it accepts connections. Panics with the
    /// install command if moto is missing.
    pub fn start() -> Self {
        Self::start_with_env(&[])
    }

    pub fn start_with_env(env: &[(&str, &str)]) -> Self {
        let mut last_err = String::new();
        // the free port may be taken between probing and binding: try a few
        for _ in 0..3 {
            let port = match free_port() {
                Ok(p) => p,
                Err(e) => panic!("no free loopback port: {e}"),
            };
            let mut cmd = Command::new("python3");
            cmd.args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .env("PYTHONUNBUFFERED", "1");
            for (k, v) in env {
                cmd.env(k, v);
            }
            let child = match cmd.spawn() {
                Ok(c) => c,
                Err(e) => panic!("cannot run python3 ({e}); {INSTALL}"),
            };
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let mut server = MotoServer { child: Some(child), addr };
            match server.wait_ready() {
                Ok(()) => return server,
                Err(e) => last_err = e,
            }
        }
        panic!("moto_server did not start: {last_err}");
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    let mut err = String::new();
                    if let Some(mut s) = child.stderr.take() {
                        let _ = std::io::Read::read_to_string(&mut s, &mut err);
                    }
                    self.child = None;
                    if err.contains("No module named") {
                        panic!("{INSTALL}\n{err}");
                    }
                    return Err(format!("exited with {status}: {err}"));
                }
            }
            if Instant::now() > deadline {
                return Err("not accepting connections after 60 s".into());
            }
            // polling interval of the readiness probe, not a stand-in for it
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `http://127.0.0.1:PORT`, for `AWS_ENDPOINT_URL`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stop the server (an outage); later requests find nothing listening.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// From now on moto checks signatures and IAM policies on every request
    /// (`POST /moto-api/reset-auth` with `0`).
    pub fn enforce_auth(&self) -> std::io::Result<()> {
        use std::io::{Read, Write};
        let mut s = TcpStream::connect(self.addr)?;
        write!(
            s,
            "POST /moto-api/reset-auth HTTP/1.1\r\nHost: {}\r\nContent-Length: 1\r\nConnection: close\r\n\r\n0",
            self.addr
        )?;
        let mut resp = String::new();
        s.read_to_string(&mut resp)?;
        if resp.starts_with("HTTP/1.1 200") || resp.starts_with("HTTP/1.0 200") {
            Ok(())
        } else {
            Err(std::io::Error::other(format!("reset-auth answered {}", resp.lines().next().unwrap_or(""))))
        }
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        self.stop();
    }
}
