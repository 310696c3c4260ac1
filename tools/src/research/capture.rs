//! The capture format: raw venue messages with receive timestamps, versioned, compact,
//! length-prefixed (docs/capture-format.md).
//!
//! ```text
//! file   = header frame*
//! header = magic "KIMPCAP\0" (8) | version u16 | header_len u16 | flags u32 | created_ns u64
//!          | reserved (header_len - 24)                                  (little-endian)
//! frame  = len u32 | recv_ts_ns u64 | venue u8 | kind u8 | stream u16 | payload (len bytes)
//! ```
//! A reader accepts every version up to its own and skips the header by `header_len`, so
//! a later version may grow the header. A frame cut short by a crash (a torn tail) ends
//! the file cleanly and is counted.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// File magic.
pub const MAGIC: [u8; 8] = *b"KIMPCAP\0";
/// Format version written by this code.
pub const VERSION: u16 = 1;
/// Header length of version 1.
pub const HEADER_LEN: u16 = 24;
/// Frame header length.
pub const FRAME_HEADER: usize = 16;
/// Largest payload accepted (a frame claiming more is corruption).
pub const MAX_PAYLOAD: u32 = 16 << 20;

/// Where a frame came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum CapVenue {
    /// Upbit.
    Upbit = 0,
    /// Binance USDT-M futures.
    Binance = 1,
    /// Binance spot.
    BinanceSpot = 2,
}

impl CapVenue {
    /// From the wire byte.
    pub fn from_u8(b: u8) -> Option<Self> {
        match b {
            0 => Some(Self::Upbit),
            1 => Some(Self::Binance),
            2 => Some(Self::BinanceSpot),
            _ => None,
        }
    }
}

/// What a frame holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameKind {
    /// A WebSocket message payload as received (text or binary).
    Ws = 0,
    /// A REST response body (e.g. a depth snapshot); the stream field names the request.
    Rest = 1,
    /// A connection event (UTF-8 text: `open <url>`, `down <reason>`).
    Conn = 2,
    /// A message we sent (subscriptions), UTF-8.
    Sent = 3,
}

impl FrameKind {
    /// From the wire byte.
    pub fn from_u8(b: u8) -> Option<Self> {
        match b {
            0 => Some(Self::Ws),
            1 => Some(Self::Rest),
            2 => Some(Self::Conn),
            3 => Some(Self::Sent),
            _ => None,
        }
    }
}

/// One decoded frame, borrowing its payload from the reader's buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// Local receive time, ns since the Unix epoch.
    pub recv_ts_ns: u64,
    /// Venue.
    pub venue: CapVenue,
    /// Kind.
    pub kind: FrameKind,
    /// Connection / stream number (the recorder's connection index).
    pub stream: u16,
    /// The bytes as received.
    pub payload: &'a [u8],
}

fn header_bytes(created_ns: u64) -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[0..8].copy_from_slice(&MAGIC);
    h[8..10].copy_from_slice(&VERSION.to_le_bytes());
    h[10..12].copy_from_slice(&HEADER_LEN.to_le_bytes());
    h[16..24].copy_from_slice(&created_ns.to_le_bytes());
    h
}

/// Appends frames to a writer (any `Write`: a file, a `Vec`).
#[derive(Debug)]
pub struct FrameWriter<W: Write> {
    w: W,
    bytes: u64,
    frames: u64,
}

impl<W: Write> FrameWriter<W> {
    /// Writes the header and returns the writer.
    pub fn new(mut w: W, created_ns: u64) -> io::Result<Self> {
        w.write_all(&header_bytes(created_ns))?;
        Ok(Self { w, bytes: HEADER_LEN as u64, frames: 0 })
    }

    /// Appends one frame.
    pub fn write(&mut self, f: &Frame<'_>) -> io::Result<()> {
        let len = u32::try_from(f.payload.len())
            .ok()
            .filter(|&l| l <= MAX_PAYLOAD)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "payload too large"))?;
        let mut h = [0u8; FRAME_HEADER];
        h[0..4].copy_from_slice(&len.to_le_bytes());
        h[4..12].copy_from_slice(&f.recv_ts_ns.to_le_bytes());
        h[12] = f.venue as u8;
        h[13] = f.kind as u8;
        h[14..16].copy_from_slice(&f.stream.to_le_bytes());
        self.w.write_all(&h)?;
        self.w.write_all(f.payload)?;
        self.bytes += (FRAME_HEADER + f.payload.len()) as u64;
        self.frames += 1;
        Ok(())
    }

    /// Bytes written, header included.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Frames written.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Flushes.
    pub fn flush(&mut self) -> io::Result<()> {
        self.w.flush()
    }

    /// The inner writer.
    pub fn into_inner(self) -> W {
        self.w
    }
}

/// Why a capture cannot be read.
#[derive(Debug, PartialEq, Eq)]
pub enum CaptureError {
    /// Not a capture file.
    BadMagic,
    /// Written by a newer version.
    Version(u16),
    /// Header too short.
    Truncated,
}

impl std::fmt::Display for CaptureError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::BadMagic => f.write_str("not a kimp capture (bad magic)"),
            Self::Version(v) => {
                write!(f, "capture version {v} is newer than this reader ({VERSION})")
            }
            Self::Truncated => f.write_str("capture header truncated"),
        }
    }
}

impl std::error::Error for CaptureError {}

/// True when `b` starts with the capture magic.
pub fn is_capture(b: &[u8]) -> bool {
    b.starts_with(&MAGIC)
}

/// Iterates the frames of a capture held in memory.
#[derive(Debug)]
pub struct FrameReader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Version of the file.
    pub version: u16,
    /// Creation time in the header, ns.
    pub created_ns: u64,
    /// Bytes at the end that do not form a whole frame (a torn tail).
    pub torn_bytes: usize,
    /// Frames with an unknown venue or kind (skipped).
    pub unknown: u64,
}

impl<'a> FrameReader<'a> {
    /// Checks the header.
    pub fn new(buf: &'a [u8]) -> Result<Self, CaptureError> {
        if buf.len() < 12 {
            return Err(if is_capture(buf) || buf.len() < 8 {
                CaptureError::Truncated
            } else {
                CaptureError::BadMagic
            });
        }
        if !is_capture(buf) {
            return Err(CaptureError::BadMagic);
        }
        let version = u16::from_le_bytes([buf[8], buf[9]]);
        if version == 0 || version > VERSION {
            return Err(CaptureError::Version(version));
        }
        let hl = u16::from_le_bytes([buf[10], buf[11]]) as usize;
        if hl < 24 || buf.len() < hl {
            return Err(CaptureError::Truncated);
        }
        let created_ns = u64::from_le_bytes(buf[16..24].try_into().unwrap_or([0; 8]));
        Ok(Self { buf, pos: hl, version, created_ns, torn_bytes: 0, unknown: 0 })
    }

    /// The next frame; `None` at the end (or at a torn tail, see `torn_bytes`).
    #[inline]
    pub fn next_frame(&mut self) -> Option<Frame<'a>> {
        loop {
            let rest = &self.buf[self.pos..];
            if rest.len() < FRAME_HEADER {
                self.torn_bytes = rest.len();
                return None;
            }
            let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
            let end = FRAME_HEADER + len as usize;
            if len > MAX_PAYLOAD || rest.len() < end {
                self.torn_bytes = rest.len();
                return None;
            }
            let ts = u64::from_le_bytes([
                rest[4], rest[5], rest[6], rest[7], rest[8], rest[9], rest[10], rest[11],
            ]);
            let (v, k) = (CapVenue::from_u8(rest[12]), FrameKind::from_u8(rest[13]));
            let stream = u16::from_le_bytes([rest[14], rest[15]]);
            self.pos += end;
            match (v, k) {
                (Some(venue), Some(kind)) => {
                    return Some(Frame {
                        recv_ts_ns: ts,
                        venue,
                        kind,
                        stream,
                        payload: &rest[FRAME_HEADER..end],
                    });
                }
                _ => self.unknown += 1,
            }
        }
    }
}

impl<'a> Iterator for FrameReader<'a> {
    type Item = Frame<'a>;
    fn next(&mut self) -> Option<Frame<'a>> {
        self.next_frame()
    }
}

/// Reads a whole capture file into memory.
pub fn read_file(path: &Path) -> io::Result<Vec<u8>> {
    let mut v = Vec::new();
    File::open(path)?.read_to_end(&mut v)?;
    Ok(v)
}

/// Maps a capture file read-only (replay without copying it into memory first).
pub fn map_file(path: &Path) -> io::Result<memmap2::Mmap> {
    let f = File::open(path)?;
    // SAFETY: the map is read-only and captures are not modified while replayed (the
    // recorder only appends to the file it is writing, which is never the one replayed).
    unsafe { memmap2::MmapOptions::new().populate().map(&f) }
}

/// Writes frames to files in a directory, starting a new file when the current one
/// reaches `max_bytes` or is older than `max_age_ns` (by frame time).
#[derive(Debug)]
pub struct RotatingWriter {
    dir: PathBuf,
    prefix: String,
    max_bytes: u64,
    max_age_ns: u64,
    cur: Option<(FrameWriter<BufWriter<File>>, u64)>,
    seq: u32,
    /// Files written so far (closed and current).
    pub files: Vec<PathBuf>,
    /// Frames written in all files.
    pub frames: u64,
}

impl RotatingWriter {
    /// A writer into `dir` (created if missing) with file names `<prefix>-<seq>-<unix s>.kcap`.
    pub fn new(dir: &Path, prefix: &str, max_bytes: u64, max_age_ns: u64) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(Self {
            dir: dir.to_owned(),
            prefix: prefix.to_string(),
            max_bytes: max_bytes.max(1 << 10),
            max_age_ns: max_age_ns.max(1),
            cur: None,
            seq: 0,
            files: Vec::new(),
            frames: 0,
        })
    }

    /// Appends a frame, rotating first when due.
    pub fn write(&mut self, f: &Frame<'_>) -> io::Result<()> {
        let rotate = match &self.cur {
            None => true,
            Some((w, started)) => {
                w.bytes() >= self.max_bytes
                    || f.recv_ts_ns.saturating_sub(*started) >= self.max_age_ns
            }
        };
        if rotate {
            self.close()?;
            self.seq += 1;
            let name =
                format!("{}-{:05}-{}.kcap", self.prefix, self.seq, f.recv_ts_ns / 1_000_000_000);
            let path = self.dir.join(name);
            let file = BufWriter::with_capacity(1 << 20, File::create(&path)?);
            self.cur = Some((FrameWriter::new(file, f.recv_ts_ns)?, f.recv_ts_ns));
            self.files.push(path);
        }
        if let Some((w, _)) = self.cur.as_mut() {
            w.write(f)?;
            self.frames += 1;
        }
        Ok(())
    }

    /// Flushes the current file.
    pub fn flush(&mut self) -> io::Result<()> {
        match self.cur.as_mut() {
            Some((w, _)) => w.flush(),
            None => Ok(()),
        }
    }

    /// Flushes and closes the current file.
    pub fn close(&mut self) -> io::Result<()> {
        if let Some((w, _)) = self.cur.take() {
            let mut inner = w.into_inner();
            inner.flush()?;
            inner.get_ref().sync_data()?;
        }
        Ok(())
    }
}
