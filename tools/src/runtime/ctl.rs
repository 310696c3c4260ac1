//! `kimp ctl`: control a running `kimp run` without Telegram, over a local Unix socket
//! that only its owner (and root) can use: mode 0600, and the peer's uid is checked.
//!
//! The server is a sidecar thread: it reads one request line per connection (`status`,
//! `stop`, `resume confirm`, `flatten BTC`), handles it with the same commands,
//! confirmations and answers as the Telegram bot (`kimp_sidecars::commands`), puts
//! controls in the loop's control channel and answers with text: `OK` or `ERR` on the
//! first line, the answer after it.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use crossbeam_channel::Sender;
use kimp_core::event::Control;
use kimp_sidecars::commands::{self, Cmd, Commands, Outcome, Syntax};
use kimp_sidecars::status::StatusBoard;

use super::config::Config;

/// Longest request line read.
const MAX_REQUEST: u64 = 1_024;
/// A client has this long to send its request.
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a control waits for room in the loop's channel (it drains it every turn).
const PUSH_PATIENCE: Duration = Duration::from_secs(1);

/// `kimp ctl` arguments.
#[derive(Debug, Args)]
#[command(
    about = "Control a running `kimp run` over its local socket (owner only)",
    long_about = "Control a running `kimp run` over its local socket, with the same commands, \
                  confirmations and answers as the Telegram bot. The socket is `[control] socket` \
                  of the configuration, by default kimp.sock in the journal directory."
)]
pub struct CtlArgs {
    /// Control socket of the running `kimp run` (default: from --config).
    #[arg(long, global = true, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Configuration file of the running `kimp run`, to find its socket.
    #[arg(long, global = true, value_name = "FILE", default_value = "config/default.toml")]
    pub config: PathBuf,
    /// What to do.
    #[command(subcommand)]
    pub cmd: CtlCmd,
}

/// `kimp ctl` subcommands.
#[derive(Debug, Subcommand)]
pub enum CtlCmd {
    /// Trading state, open pairs, realized PnL (Telegram's /status).
    Status,
    /// Halt new entries now; hedges and cancels continue (Telegram's /stop).
    Stop,
    /// Re-arm trading after a halt, also one latched from an earlier run (Telegram's
    /// /resume). Asks first; `kimp ctl resume confirm` within the window does it.
    Resume {
        /// Confirms a `kimp ctl resume` made within the confirmation window.
        #[arg(value_name = "confirm", value_parser = ["confirm"])]
        confirm: Option<String>,
    },
    /// Close open pairs (all, or one coin's) at market, then halt (Telegram's /flatten).
    /// Asks first; the same command followed by `confirm` within the window does it.
    Flatten {
        /// Coin to flatten (default: all coins).
        #[arg(value_name = "COIN")]
        coin: Option<String>,
        /// Confirms the same `kimp ctl flatten [COIN]` made within the window.
        #[arg(value_name = "confirm")]
        confirm: Option<String>,
    },
}

impl CtlCmd {
    /// The request line sent to the server.
    pub fn line(&self) -> String {
        let (verb, args) = match self {
            CtlCmd::Status => ("status", [&None, &None]),
            CtlCmd::Stop => ("stop", [&None, &None]),
            CtlCmd::Resume { confirm } => ("resume", [confirm, &None]),
            CtlCmd::Flatten { coin, confirm } => ("flatten", [coin, confirm]),
        };
        let mut line = verb.to_string();
        for a in args.into_iter().flatten() {
            line.push(' ');
            line.push_str(a);
        }
        line
    }
}

/// `kimp ctl ...`: sends one request, prints the answer.
pub fn ctl(args: CtlArgs) -> Result<()> {
    let path = match &args.socket {
        Some(p) => p.clone(),
        None => Config::load(&args.config)
            .map_err(|e| anyhow!("{e} (pass --socket PATH or --config FILE)"))?
            .control_socket(),
    };
    let (ok, text) = request(&path, &args.cmd.line())?;
    if !ok {
        bail!("{text}");
    }
    println!("{text}");
    Ok(())
}

/// Sends `line` to the server at `path`; returns whether it was taken and its answer.
pub fn request(path: &Path, line: &str) -> Result<(bool, String)> {
    let mut s = UnixStream::connect(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
            let left = if path.exists() {
                " (the socket file is left from a run that did not stop cleanly)"
            } else {
                ""
            };
            anyhow!("no kimp run is listening on {}{left}", path.display())
        }
        std::io::ErrorKind::PermissionDenied => {
            anyhow!("{}: permission denied (the socket belongs to another user)", path.display())
        }
        _ => anyhow!("cannot connect to {}: {e}", path.display()),
    })?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(format!("{line}\n").as_bytes())?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).with_context(|| format!("reading from {}", path.display()))?;
    let (head, text) = answer.split_once('\n').unwrap_or((answer.as_str(), ""));
    match head {
        "OK" => Ok((true, text.trim_end().to_owned())),
        "ERR" => Ok((false, text.trim_end().to_owned())),
        _ => Err(anyhow!("{}: unexpected answer {head:?}", path.display())),
    }
}

/// The bound socket, before the status board and the loop exist (binding first keeps a
/// second `kimp run` from touching the same journal).
#[derive(Debug)]
pub struct CtlListener {
    /// Taken by [`CtlListener::serve`]; a listener dropped unserved (start-up failed
    /// after binding) removes its socket file.
    listener: Option<UnixListener>,
    path: PathBuf,
    ino: u64,
}

impl Drop for CtlListener {
    fn drop(&mut self) {
        if self.listener.take().is_some() {
            remove_if_ours(&self.path, self.ino);
        }
    }
}

/// Removes the socket file at `path` unless it was replaced (another run's).
fn remove_if_ours(path: &Path, ino: u64) {
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.ino() == ino) {
        let _ = std::fs::remove_file(path);
    }
}

impl CtlListener {
    /// Binds `path` with mode 0600. A socket file left by a run that was killed is
    /// replaced; one a live `kimp run` listens on is an error, as is any other file.
    pub fn bind(path: &Path) -> Result<CtlListener> {
        if let Ok(m) = std::fs::symlink_metadata(path) {
            if !m.file_type().is_socket() {
                bail!("control socket {}: exists and is not a socket", path.display());
            }
            match UnixStream::connect(path) {
                Ok(_) => {
                    bail!("control socket {}: another kimp run is listening on it", path.display())
                }
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    tracing::info!(socket = %path.display(), "control: replacing a stale socket file");
                    std::fs::remove_file(path)
                        .with_context(|| format!("removing the stale socket {}", path.display()))?;
                }
                Err(e) => bail!("control socket {}: {e}", path.display()),
            }
        }
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
        // Bound inside a directory only we can enter, made 0600 there and then renamed into
        // place: at no moment can anyone else connect, whatever the umask.
        let private = parent.join(format!(".kctl{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&private);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&private)
            .with_context(|| format!("creating {}", private.display()))?;
        let tmp = private.join("s");
        let bound = (|| -> Result<UnixListener> {
            let l = UnixListener::bind(&tmp)
                .with_context(|| format!("control socket {}", path.display()))?;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
            std::fs::rename(&tmp, path)
                .with_context(|| format!("control socket {}", path.display()))?;
            Ok(l)
        })();
        let _ = std::fs::remove_dir_all(&private);
        let listener = bound?;
        let ino = std::fs::symlink_metadata(path)?.ino();
        tracing::info!(socket = %path.display(), "control: kimp ctl listens");
        Ok(CtlListener { listener: Some(listener), path: path.to_owned(), ino })
    }

    /// Starts the server thread: requests are answered from `board`, controls go to
    /// `control`; `resume` and `flatten` wait `confirm` for their confirmation.
    pub fn serve(
        mut self,
        board: Arc<StatusBoard>,
        control: Sender<Control>,
        confirm: Duration,
    ) -> Result<CtlServer> {
        let stop = Arc::new(AtomicBool::new(false));
        let listener = self.listener.take().expect("a listener is served once");
        let fd = listener.as_raw_fd();
        let st = stop.clone();
        let thread = std::thread::Builder::new().name("kimp-ctl".into()).spawn(move || {
            let mut cmds = Commands::new(confirm, Syntax::Ctl);
            for conn in listener.incoming() {
                if st.load(Ordering::Relaxed) {
                    return;
                }
                match conn {
                    Ok(s) => {
                        if let Err(e) = serve_one(s, &mut cmds, &board, &control) {
                            tracing::warn!(error = %e, "control: request failed");
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "control: accept failed");
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            }
        })?;
        Ok(CtlServer { path: self.path.clone(), ino: self.ino, fd, stop, thread: Some(thread) })
    }
}

/// The running server.
#[derive(Debug)]
pub struct CtlServer {
    path: PathBuf,
    ino: u64,
    fd: RawFd,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl CtlServer {
    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops the thread and removes the socket file (if it is still ours).
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        let Some(t) = self.thread.take() else { return };
        self.stop.store(true, Ordering::Relaxed);
        // SAFETY: shutdown(2) on the listener's descriptor, which the thread keeps open
        // until it returns; on Linux it wakes a blocked accept(2).
        unsafe { libc::shutdown(self.fd, libc::SHUT_RDWR) };
        let _ = t.join();
        remove_if_ours(&self.path, self.ino);
    }
}

impl Drop for CtlServer {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// The uid of the process at the other end.
fn peer_uid(s: &UnixStream) -> Option<u32> {
    let mut cred = libc::ucred { pid: 0, uid: 0, gid: 0 };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt(2) writes at most `len` bytes into `cred`, a ucred.
    let r = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    (r == 0).then_some(cred.uid)
}

fn serve_one(
    mut s: UnixStream,
    cmds: &mut Commands,
    board: &StatusBoard,
    control: &Sender<Control>,
) -> std::io::Result<()> {
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    // SAFETY: geteuid(2) cannot fail.
    let me = unsafe { libc::geteuid() };
    // Root passes: it could read the journal or signal the process anyway.
    let Some(uid) = peer_uid(&s).filter(|&u| u == me || u == 0) else {
        tracing::warn!("control: refused a connection from another user");
        return s.write_all(b"ERR\nthis kimp run belongs to another user\n");
    };
    let mut line = String::new();
    BufReader::new((&s).take(MAX_REQUEST)).read_line(&mut line)?;
    let answer = match Cmd::parse_line(&line) {
        Err(_) => format!("ERR\n{}", Syntax::Ctl.unknown()),
        Ok(cmd) => {
            tracing::info!(command = ?cmd, "control: kimp ctl command");
            match cmds.handle(i64::from(uid), cmd, board, Instant::now()) {
                Outcome::Reply(t) => format!("OK\n{t}"),
                Outcome::Control(c, t) => match control.send_timeout(c, PUSH_PATIENCE) {
                    Ok(()) => format!("OK\n{t}"),
                    Err(_) => {
                        tracing::error!(control = ?c, "control: channel full or closed");
                        format!("ERR\n{}", commands::failed(c))
                    }
                },
            }
        }
    };
    s.write_all(answer.as_bytes())?;
    s.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn board() -> Arc<StatusBoard> {
        Arc::new(StatusBoard::new(Arc::new(kimp_sidecars::names::Names::from_markets(
            &kimp_core::testkit::btc_markets(),
        ))))
    }

    #[test]
    fn serves_commands_with_confirmations_and_removes_its_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kimp.sock");
        let (tx, rx) = crossbeam_channel::bounded(8);
        let server =
            CtlListener::bind(&path).unwrap().serve(board(), tx, Duration::from_secs(60)).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let (ok, text) = request(&path, "status").unwrap();
        assert!(ok && text.starts_with("Trading: unknown"), "{text}");
        let (ok, text) = request(&path, "resume").unwrap();
        assert!(ok && text.contains("kimp ctl resume confirm"), "{text}");
        assert!(rx.try_recv().is_err(), "asking sends nothing");
        assert!(request(&path, "resume confirm").unwrap().0);
        assert_eq!(rx.try_recv(), Ok(Control::Resume));
        let (ok, text) = request(&path, "launch").unwrap();
        assert!(!ok && text.contains("kimp ctl --help"), "{text}");
        // A second server on the same path is refused while this one listens.
        let e = CtlListener::bind(&path).unwrap_err().to_string();
        assert!(e.contains("another kimp run is listening"), "{e}");
        server.shutdown();
        assert!(!path.exists(), "socket file left behind");
        let e = request(&path, "status").unwrap_err().to_string();
        assert_eq!(e, format!("no kimp run is listening on {}", path.display()));
        // Bound, then start-up failed before serving: no file left either.
        drop(CtlListener::bind(&path).unwrap());
        assert!(!path.exists(), "an unserved listener left its socket file");
    }
}
