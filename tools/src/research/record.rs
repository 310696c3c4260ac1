//! `kimp record`: connects to both venues' market streams with the gateways' transports
//! (`WsConn` over one mio `Poll`), subscribes to the config's coins, and writes every
//! message with its receive time into rotating capture files. Binance depth needs a REST
//! snapshot to be replayable: one is fetched (plain HTTP on loopback, blocking, off any hot
//! path) whenever the public stream (re)opens, and stored as a `Rest` frame after a `Sent`
//! frame naming the request.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use kimp_core::units::Nanos;
use kimp_gateways::transport::{
    DownReason, Endpoint, WsConfig, WsConn, WsPoll, webpki_client_config,
};
use mio::{Events, Poll, Token};

use super::capture::{CapVenue, Frame, FrameKind, RotatingWriter};
use super::timefmt::parse_duration_arg;
use crate::runtime::config::Config;

/// Record raw venue messages into capture files (docs/capture-format.md).
#[derive(Debug, Clone, clap::Args)]
pub struct RecordArgs {
    /// Runtime config: venue URLs and [[coins]].
    #[arg(long)]
    pub config: PathBuf,
    /// Output directory.
    #[arg(long, default_value = "data/capture")]
    pub out: PathBuf,
    /// File name prefix.
    #[arg(long, default_value = "kimp")]
    pub prefix: String,
    /// Stop after this long (e.g. `30s`, `10m`, `2h`); default: run until killed.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_arg)]
    pub duration: Option<Duration>,
    /// Stop after this many messages (0 = no limit).
    #[arg(long, default_value_t = 0)]
    pub max_frames: u64,
    /// Start a new file past this size, MiB.
    #[arg(long, default_value_t = 256)]
    pub rotate_mib: u64,
    /// Start a new file when the current one spans this long (e.g. `1h`, `30m`).
    #[arg(long, default_value = "1h", value_name = "DURATION", value_parser = parse_duration_arg)]
    pub rotate: Duration,
    /// Give up when no venue stream has opened after this long (e.g. `10s`).
    #[arg(long, default_value = "10s", value_name = "DURATION", value_parser = parse_duration_arg)]
    pub connect_timeout: Duration,
    /// Binance depth stream speed suffix (`@100ms`, `@500ms`, or empty for 250 ms).
    #[arg(long, default_value = "@100ms")]
    pub depth_speed: String,
}

fn wall_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

struct Feed {
    venue: CapVenue,
    /// The URL without its query (stream lists are long), for messages.
    url: String,
    conn: WsConn,
    /// The stream opened at least once.
    opened: bool,
    /// Why the last attempt failed.
    last_down: Option<DownReason>,
    subscribe: Option<String>,
    /// Binance symbols whose REST snapshot is fetched when this stream opens.
    snapshots: Vec<String>,
}

/// What a recording did.
#[derive(Debug, Default, Clone)]
pub struct RecordStats {
    /// Frames written (all kinds).
    pub frames: u64,
    /// WebSocket messages.
    pub messages: u64,
    /// Times a feed went down.
    pub downs: u64,
    /// Files written.
    pub files: Vec<PathBuf>,
}

fn ws_conn(url: &str, token: Token) -> anyhow::Result<WsConn> {
    let ep = Endpoint::parse(url).map_err(|e| anyhow::anyhow!("{url}: {e}"))?;
    let addr = ep.resolve().map_err(|e| anyhow::anyhow!("{url}: {e}"))?;
    let tls = if ep.is_tls() {
        Some(webpki_client_config().map_err(|e| anyhow::anyhow!("tls: {e}"))?)
    } else {
        None
    };
    WsConn::new(ep, addr, tls, token, WsConfig::default())
        .map_err(|e| anyhow::anyhow!("{url}: {e:?}"))
}

/// Fetches `GET <rest>/fapi/v1/depth?symbol=S&limit=1000` over plain HTTP (loopback).
fn fetch_snapshot(rest_url: &str, symbol: &str) -> anyhow::Result<(String, Vec<u8>)> {
    let ep = Endpoint::parse(rest_url).map_err(|e| anyhow::anyhow!("{rest_url}: {e}"))?;
    anyhow::ensure!(!ep.is_tls(), "snapshots are fetched over plain HTTP only (loopback)");
    let addr = ep.resolve().map_err(|e| anyhow::anyhow!("{rest_url}: {e}"))?;
    let target = format!("/fapi/v1/depth?symbol={symbol}&limit=1000");
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {target} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", ep.host_header())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let n = match resp.parse(&raw)? {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => anyhow::bail!("truncated HTTP response"),
    };
    anyhow::ensure!(resp.code == Some(200), "HTTP {:?}", resp.code);
    let chunked = resp.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("transfer-encoding")
            && String::from_utf8_lossy(h.value).contains("chunked")
    });
    let body = &raw[n..];
    let body = if chunked { dechunk(body)? } else { body.to_vec() };
    Ok((format!("GET {target}"), body))
}

fn dechunk(mut b: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        match httparse::parse_chunk_size(b).map_err(|_| anyhow::anyhow!("bad chunk"))? {
            httparse::Status::Complete((i, 0)) => {
                let _ = i;
                return Ok(out);
            }
            httparse::Status::Complete((i, n)) => {
                let end = i + n as usize;
                anyhow::ensure!(b.len() >= end + 2, "truncated chunk");
                out.extend_from_slice(&b[i..end]);
                b = &b[end + 2..];
            }
            httparse::Status::Partial => anyhow::bail!("truncated chunk"),
        }
    }
}

/// Records until the duration or frame limit is reached.
pub fn record(a: &RecordArgs) -> anyhow::Result<RecordStats> {
    let cfg = Config::load(&a.config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let upbit_codes: Vec<String> = cfg
        .coins
        .iter()
        .map(|c| format!("\"{}\"", c.upbit))
        .chain(std::iter::once("\"KRW-USDT\"".to_string()))
        .collect();
    let sub = format!(
        "[{{\"ticket\":\"kimp-record\"}},{{\"type\":\"orderbook\",\"codes\":[{codes}]}},{{\"type\":\"trade\",\"codes\":[{codes}]}},{{\"format\":\"DEFAULT\"}}]",
        codes = upbit_codes.join(",")
    );
    let lower: Vec<String> = cfg.coins.iter().map(|c| c.binance.to_ascii_lowercase()).collect();
    let public: Vec<String> = lower
        .iter()
        .flat_map(|s| {
            [format!("{s}@depth{}", a.depth_speed), format!("{s}@bookTicker"), format!("{s}@trade")]
        })
        .collect();
    let market: Vec<String> = lower.iter().map(|s| format!("{s}@markPrice@1s")).collect();
    let b = cfg.venues.binance.ws_url.trim_end_matches('/');
    let mut feeds = [
        Feed::new(CapVenue::Upbit, &cfg.venues.upbit.ws_url, "", 0, Some(sub), vec![])?,
        Feed::new(
            CapVenue::Binance,
            &format!("{b}/public/stream"),
            &format!("?streams={}", public.join("/")),
            1,
            None,
            cfg.coins.iter().map(|c| c.binance.clone()).collect(),
        )?,
        Feed::new(
            CapVenue::Binance,
            &format!("{b}/market/stream"),
            &format!("?streams={}", market.join("/")),
            2,
            None,
            vec![],
        )?,
    ];
    let mut out = RotatingWriter::new(
        &a.out,
        &a.prefix,
        a.rotate_mib.max(1) << 20,
        (a.rotate.as_nanos() as u64).max(1),
    )
    .with_context(|| format!("creating {}", a.out.display()))?;
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(64);
    let start = Instant::now();
    let mut stats = RecordStats::default();
    let mut last_flush = Instant::now();
    let mut err: Option<std::io::Error> = None;
    loop {
        if a.duration.is_some_and(|d| start.elapsed() >= d)
            || (a.max_frames > 0 && stats.messages >= a.max_frames)
        {
            break;
        }
        // Nothing listening (a wrong URL, the simulator not started): say so instead of
        // recording reconnect attempts forever.
        if !feeds.iter().any(|f| f.opened) && start.elapsed() >= a.connect_timeout {
            break;
        }
        poll.poll(&mut events, Some(Duration::from_millis(5)))?;
        let mut fired = [false; 3];
        for ev in events.iter() {
            if let Some(f) = fired.get_mut(ev.token().0) {
                *f = true;
            }
        }
        for (i, feed) in feeds.iter_mut().enumerate() {
            let stream = i as u16;
            let mut changes = Vec::new();
            if fired[i] {
                let venue = feed.venue;
                let (out, stats, err) = (&mut out, &mut stats, &mut err);
                let ts_now = wall_ns();
                let r = feed.conn.poll(Nanos(ts_now), |payload| {
                    let f = Frame {
                        recv_ts_ns: wall_ns(),
                        venue,
                        kind: FrameKind::Ws,
                        stream,
                        payload,
                    };
                    if let Err(e) = out.write(&f) {
                        *err = Some(e);
                    }
                    stats.messages += 1;
                });
                changes.push(r);
            }
            changes.push(feed.conn.tick(poll.registry(), Nanos(wall_ns())));
            for c in changes {
                match c {
                    WsPoll::Idle => {}
                    WsPoll::Opened => {
                        feed.opened = true;
                        let ts = wall_ns();
                        let note = format!("open {}", feed.conn.token().0);
                        out.write(&Frame {
                            recv_ts_ns: ts,
                            venue: feed.venue,
                            kind: FrameKind::Conn,
                            stream,
                            payload: note.as_bytes(),
                        })?;
                        if let Some(s) = &feed.subscribe {
                            let _ = feed.conn.send_text(Nanos(ts), s);
                            out.write(&Frame {
                                recv_ts_ns: ts,
                                venue: feed.venue,
                                kind: FrameKind::Sent,
                                stream,
                                payload: s.as_bytes(),
                            })?;
                        }
                        for sym in &feed.snapshots {
                            match fetch_snapshot(&cfg.venues.binance.rest_url, sym) {
                                Ok((req, body)) => {
                                    out.write(&Frame {
                                        recv_ts_ns: ts,
                                        venue: feed.venue,
                                        kind: FrameKind::Sent,
                                        stream,
                                        payload: req.as_bytes(),
                                    })?;
                                    out.write(&Frame {
                                        recv_ts_ns: wall_ns(),
                                        venue: feed.venue,
                                        kind: FrameKind::Rest,
                                        stream,
                                        payload: &body,
                                    })?;
                                }
                                Err(e) => eprintln!("warning: snapshot {sym}: {e:#}"),
                            }
                        }
                    }
                    WsPoll::Down(r) => {
                        stats.downs += 1;
                        feed.last_down = Some(r);
                        let note = format!("down {}", describe(r));
                        out.write(&Frame {
                            recv_ts_ns: wall_ns(),
                            venue: feed.venue,
                            kind: FrameKind::Conn,
                            stream,
                            payload: note.as_bytes(),
                        })?;
                    }
                }
            }
        }
        if let Some(e) = err.take() {
            return Err(e).context("writing capture");
        }
        if last_flush.elapsed() >= Duration::from_millis(200) {
            out.flush()?;
            last_flush = Instant::now();
        }
    }
    for f in feeds.iter_mut() {
        f.conn.close(Nanos(wall_ns()));
    }
    out.close()?;
    stats.frames = out.frames;
    stats.files = out.files.clone();
    let unreachable: Vec<String> = feeds
        .iter()
        .filter(|f| !f.opened)
        .map(|f| {
            let why = f.last_down.map_or_else(|| "no answer".to_string(), describe);
            format!("{} ({why})", f.url)
        })
        .collect();
    if unreachable.len() == feeds.len() {
        // Only reconnect notes were written: a file of those would look like a recording.
        for f in &stats.files {
            let _ = std::fs::remove_file(f);
        }
        anyhow::bail!(
            "could not connect to any venue stream in {}s, nothing recorded: {} (is the \
             simulator running on the config's ports? see docs/capture-format.md)",
            start.elapsed().as_secs(),
            unreachable.join(", ")
        );
    }
    if !unreachable.is_empty() {
        anyhow::bail!(
            "recorded {} messages into {}, but these streams never opened: {}",
            stats.messages,
            stats.files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", "),
            unreachable.join(", ")
        );
    }
    Ok(stats)
}

/// A down reason in words.
fn describe(r: DownReason) -> String {
    match r {
        DownReason::ConnectFailed(k) => format!("connect failed: {k}"),
        DownReason::ConnectTimeout => "connect timed out".into(),
        DownReason::HandshakeStatus(s) => format!("upgrade refused with HTTP {s}"),
        other => format!("{other:?}"),
    }
}

impl Feed {
    fn new(
        venue: CapVenue,
        url: &str,
        query: &str,
        token: usize,
        subscribe: Option<String>,
        snapshots: Vec<String>,
    ) -> anyhow::Result<Self> {
        Ok(Feed {
            venue,
            url: url.to_string(),
            conn: ws_conn(&format!("{url}{query}"), Token(token))?,
            opened: false,
            last_down: None,
            subscribe,
            snapshots,
        })
    }
}

/// `kimp record`.
pub fn run_record(a: RecordArgs) -> anyhow::Result<()> {
    let s = record(&a)?;
    println!(
        "recorded {} messages ({} frames, {} disconnects) into {} file(s):",
        s.messages,
        s.frames,
        s.downs,
        s.files.len()
    );
    for f in &s.files {
        println!("  {}", f.display());
    }
    Ok(())
}
