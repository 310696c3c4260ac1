//! Sending ILP files to QuestDB: the shipper thread that drains the spool, and
//! [`load_files`] for `kimp store load`.

use std::collections::{HashSet, VecDeque};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use questdb::ingress::Sender;

use super::files;
use super::ilp::{parse_line, split_lines};
use super::{AlertFn, QuestDbState, StoreAlert, StoreConfig, StoreError, StoreStats};

/// Bytes read from a file per flush.
const CHUNK: u64 = 1 << 20;

/// Adds what the store needs to a user's configuration string: protocol version 1 (the
/// spool is text ILP) and, over HTTP, a short retry budget so one flush cannot hold the
/// shipper for long. Keys the user set are left alone.
pub fn normalise_conf(conf: &str) -> String {
    let mut c = conf.trim().to_string();
    if !c.ends_with(';') {
        c.push(';');
    }
    if !c.contains("protocol_version=") {
        c.push_str("protocol_version=1;");
    }
    if c.starts_with("http") && !c.contains("retry_timeout=") {
        c.push_str("retry_timeout=1000;");
    }
    c
}

/// questdb-rs's message, except for configuration errors, whose text may quote a
/// credential from the string.
pub(crate) fn safe_msg(e: &questdb::Error) -> String {
    match e.code() {
        questdb::ErrorCode::ConfigError => "invalid configuration string".to_string(),
        _ => e.msg().to_string(),
    }
}

fn qerr(e: questdb::Error) -> StoreError {
    StoreError::QuestDb(safe_msg(&e))
}

/// Counts from [`load_files`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoadStats {
    /// Files read.
    pub files: usize,
    /// Rows sent.
    pub rows: u64,
    /// Bytes read.
    pub bytes: u64,
    /// Lines skipped because they did not parse (torn tails).
    pub bad_lines: u64,
}

/// Parses complete lines of `data`, sends them in one flush, and returns (rows, bad lines,
/// bytes consumed up to the last complete line).
fn send_lines(sender: &mut Sender, data: &[u8]) -> Result<(u64, u64, usize), questdb::Error> {
    let (lines, tail) = split_lines(data);
    let consumed = data.len() - tail.map_or(0, <[u8]>::len);
    let mut buf = sender.new_buffer();
    let mut bad = 0;
    for line in lines {
        match parse_line(line) {
            Ok(l) => {
                buf.set_marker()?;
                if l.write_to(&mut buf).is_err() {
                    buf.rewind_to_marker()?;
                    bad += 1;
                } else {
                    buf.clear_marker();
                }
            }
            Err(_) => bad += 1,
        }
    }
    let rows = buf.row_count() as u64;
    if rows > 0 {
        sender.flush(&mut buf)?;
    }
    Ok((rows, bad, consumed))
}

/// Sends ILP files (or every `.ilp` file of the directories given) to QuestDB, oldest
/// first. Rows are re-encoded from the parsed lines; a torn last line is counted and
/// skipped. Loading twice doubles rows unless the tables have DEDUP keys (docs/questdb.md).
pub fn load_files(paths: &[PathBuf], questdb_conf: &str) -> Result<LoadStats, StoreError> {
    let mut all = Vec::new();
    for p in paths {
        if p.is_dir() {
            all.extend(files::list(p)?);
        } else {
            all.push(p.clone());
        }
    }
    let mut sender = Sender::from_conf(normalise_conf(questdb_conf)).map_err(qerr)?;
    let mut st = LoadStats::default();
    for p in &all {
        let mut f = File::open(p)?;
        let mut data = Vec::new();
        loop {
            let n = (&mut f).take(CHUNK).read_to_end(&mut data)?;
            st.bytes += n as u64;
            let eof = n == 0;
            let (rows, bad, used) = send_lines(&mut sender, &data).map_err(qerr)?;
            st.rows += rows;
            st.bad_lines += bad;
            data.drain(..used);
            if eof {
                if !data.is_empty() {
                    st.bad_lines += 1;
                }
                break;
            }
        }
        st.files += 1;
    }
    Ok(st)
}

#[derive(Debug)]
struct Sent {
    path: PathBuf,
    at: Instant,
    confirmations: u32,
}

/// Tails the spool directory and sends it to QuestDB (see the module docs of `store`).
pub(crate) struct Shipper {
    dir: PathBuf,
    conf: String,
    stats: Arc<StoreStats>,
    alert: AlertFn,
    sender: Option<Sender>,
    /// File being sent and the offset of its first unsent byte.
    cursor: Option<(PathBuf, u64)>,
    /// Sent files awaiting deletion (TCP keeps them in case the link drops).
    sent: VecDeque<Sent>,
    replay: Duration,
    backoff: Duration,
    backoff_min: Duration,
    backoff_max: Duration,
    next_try: Instant,
    down_since: Option<Instant>,
    poll: Duration,
    drain: Duration,
    all_sealed: bool,
}

impl Shipper {
    pub(crate) fn new(
        cfg: &StoreConfig,
        conf: String,
        dir: PathBuf,
        stats: Arc<StoreStats>,
        alert: AlertFn,
    ) -> Self {
        let tcp = conf.starts_with("tcp");
        let backoff_min = Duration::from_millis(cfg.retry_min_ms.max(1));
        Self {
            dir,
            conf,
            stats,
            alert,
            sender: None,
            cursor: None,
            sent: VecDeque::new(),
            replay: if tcp { Duration::from_millis(cfg.tcp_replay_ms) } else { Duration::ZERO },
            backoff: backoff_min,
            backoff_min,
            backoff_max: Duration::from_millis(cfg.retry_max_ms.max(cfg.retry_min_ms).max(1)),
            next_try: Instant::now(),
            down_since: None,
            poll: Duration::from_millis(cfg.ship_poll_ms.max(1)),
            drain: Duration::from_millis(cfg.drain_ms),
            all_sealed: false,
        }
    }

    pub(crate) fn run(mut self, stop: &AtomicBool, worker_done: &AtomicBool) {
        let mut deadline = None;
        loop {
            // Once the worker has sealed its last file, no file is still being written.
            self.all_sealed = worker_done.load(Ordering::Acquire);
            let worked = self.turn(Instant::now());
            if stop.load(Ordering::Acquire) && self.all_sealed {
                let d = *deadline.get_or_insert_with(|| Instant::now() + self.drain);
                let empty = self.cursor.is_none() && self.unsent_files().is_empty();
                if empty || Instant::now() >= d {
                    return;
                }
            }
            if !worked {
                std::thread::sleep(self.poll);
            }
        }
    }

    fn unsent_files(&self) -> Vec<PathBuf> {
        let sent: HashSet<&Path> = self.sent.iter().map(|s| s.path.as_path()).collect();
        files::list(&self.dir)
            .unwrap_or_default()
            .into_iter()
            .filter(|p| !sent.contains(p.as_path()))
            .collect()
    }

    /// Deletes sent files that are safe to forget. Over HTTP a flush is acknowledged, so at
    /// once. Over TCP a write only reached the kernel: a file goes once two later flushes,
    /// both at least `replay` after it was sent, succeeded (a dead peer fails the second).
    fn delete_old(&mut self) {
        while let Some(s) = self.sent.front() {
            if !self.replay.is_zero() && s.confirmations < 2 {
                break;
            }
            let len = s.path.metadata().map_or(0, |m| m.len());
            if std::fs::remove_file(&s.path).is_ok() {
                let cur = self.stats.spool_bytes.load(Ordering::Relaxed);
                self.stats.spool_bytes.fetch_sub(len.min(cur), Ordering::Relaxed);
            }
            self.sent.pop_front();
        }
    }

    fn confirm_sent(&mut self, now: Instant) {
        for s in &mut self.sent {
            if now.duration_since(s.at) >= self.replay {
                s.confirmations += 1;
            }
        }
    }

    fn mark_sent(&mut self, path: PathBuf, now: Instant) {
        self.sent.push_back(Sent { path, at: now, confirmations: 0 });
        self.delete_old();
    }

    /// One step: connect if due, then send one chunk. Returns whether it sent anything.
    fn turn(&mut self, now: Instant) -> bool {
        if self.sender.is_none() {
            if now < self.next_try {
                return false;
            }
            match Sender::from_conf(&self.conf) {
                Ok(s) => self.sender = Some(s),
                Err(e) => {
                    self.fail(&e);
                    return false;
                }
            }
        }
        if self.cursor.is_none() {
            match self.unsent_files().into_iter().next() {
                Some(p) => self.cursor = Some((p, 0)),
                None => return false,
            }
        }
        let Some((path, off)) = self.cursor.clone() else { return false };
        let data = match read_from(&path, off) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "store: spool file unreadable; skipped");
                self.cursor = None;
                self.mark_sent(path, now);
                return false;
            }
        };
        let Some(sender) = self.sender.as_mut() else { return false };
        match send_lines(sender, &data) {
            Ok((rows, bad, used)) => {
                self.stats.rows_sent.fetch_add(rows, Ordering::Relaxed);
                self.stats.bad_lines.fetch_add(bad, Ordering::Relaxed);
                if rows > 0 {
                    self.recovered(now);
                    self.confirm_sent(now);
                    self.delete_old();
                }
                if used > 0 {
                    self.cursor = Some((path, off + used as u64));
                    return true;
                }
                // Nothing complete left. A newer file means the worker sealed this one
                // (any remaining bytes are a torn tail); otherwise it is still being written.
                let newer = self.all_sealed || self.unsent_files().iter().any(|p| p > &path);
                if newer {
                    if !data.is_empty() {
                        self.stats.bad_lines.fetch_add(1, Ordering::Relaxed);
                    }
                    self.cursor = None;
                    self.mark_sent(path, now);
                    return true;
                }
                false
            }
            Err(e) => {
                self.fail(&e);
                false
            }
        }
    }

    fn recovered(&mut self, now: Instant) {
        self.backoff = self.backoff_min;
        if let Some(t) = self.down_since.take() {
            let down_ms = now.duration_since(t).as_millis() as u64;
            self.stats.set_questdb(QuestDbState::Up);
            tracing::info!(down_ms, "store: QuestDB is back; backfilling the spool");
            (self.alert)(StoreAlert::QuestDbUp { down_ms });
        }
    }

    fn fail(&mut self, e: &questdb::Error) {
        self.stats.questdb_errors.fetch_add(1, Ordering::Relaxed);
        self.sender = None;
        // Over TCP, re-send everything not yet deleted: rows written just before the
        // failure may never have reached the server (DEDUP keys absorb the repeats). Over
        // HTTP every flush up to the cursor was acknowledged: resume from there (sending
        // the file again from its start duplicated every acknowledged row of it).
        if !self.replay.is_zero() {
            self.cursor = None;
            self.sent.clear();
        }
        let now = Instant::now();
        self.next_try = now + self.backoff;
        self.backoff = (self.backoff * 2).min(self.backoff_max);
        if self.down_since.is_none() {
            self.down_since = Some(now);
            self.stats.outages.fetch_add(1, Ordering::Relaxed);
            self.stats.set_questdb(QuestDbState::Down);
            let error = safe_msg(e);
            tracing::error!(error, "store: QuestDB unavailable; buffering to the spool");
            (self.alert)(StoreAlert::QuestDbDown { error });
        }
    }
}

fn read_from(path: &Path, off: u64) -> std::io::Result<Vec<u8>> {
    let mut f = File::open(path)?;
    f.seek(SeekFrom::Start(off))?;
    let mut data = Vec::new();
    f.take(CHUNK).read_to_end(&mut data)?;
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conf_gets_protocol_and_retry_defaults_only_when_missing() {
        assert_eq!(normalise_conf("tcp::addr=h:9009;"), "tcp::addr=h:9009;protocol_version=1;");
        assert_eq!(
            normalise_conf("http::addr=h:9000"),
            "http::addr=h:9000;protocol_version=1;retry_timeout=1000;"
        );
        assert_eq!(
            normalise_conf("http::addr=h:9000;protocol_version=2;retry_timeout=5;"),
            "http::addr=h:9000;protocol_version=2;retry_timeout=5;"
        );
    }
}
