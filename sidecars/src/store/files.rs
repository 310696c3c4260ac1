//! Rotating local ILP files: the default store, and the disk buffer (spool) in front of
//! QuestDB. Names are `YYYYMMDD-HHMMSS-NNNNNN.ilp` (UTC), so name order is write order.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// File extension of ILP files.
pub const EXT: &str = "ilp";

#[derive(Debug)]
struct Active {
    path: PathBuf,
    w: BufWriter<File>,
    bytes: u64,
}

/// An append-only, size-rotated set of ILP files in one directory.
#[derive(Debug)]
pub struct IlpFiles {
    dir: PathBuf,
    rotate_bytes: u64,
    active: Option<Active>,
    seq: u64,
}

impl IlpFiles {
    /// Opens (creates) the directory; files are started lazily on the first append.
    pub fn open(dir: &Path, rotate_bytes: u64) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        Ok(Self { dir: dir.to_path_buf(), rotate_bytes: rotate_bytes.max(1), active: None, seq: 0 })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file being written, if any.
    pub fn active_path(&self) -> Option<&Path> {
        self.active.as_ref().map(|a| a.path.as_path())
    }

    /// Appends whole lines; starts a new file first when this one would pass the size.
    pub fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        if let Some(a) = &self.active
            && a.bytes > 0
            && a.bytes + bytes.len() as u64 > self.rotate_bytes
        {
            self.seal()?;
        }
        if self.active.is_none() {
            self.active = Some(self.create()?);
        }
        if let Some(a) = &mut self.active {
            a.w.write_all(bytes)?;
            a.bytes += bytes.len() as u64;
        }
        Ok(())
    }

    fn create(&mut self) -> io::Result<Active> {
        let stamp = utc_stamp(SystemTime::now());
        loop {
            let path = self.dir.join(format!("{stamp}-{:06}.{EXT}", self.seq));
            self.seq += 1;
            // `create_new`: a restart within the same second must not append to (or
            // truncate) a file another run wrote.
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(f) => {
                    return Ok(Active { path, w: BufWriter::with_capacity(1 << 16, f), bytes: 0 });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Hands buffered bytes to the OS (survives a process kill, not a power loss).
    pub fn flush(&mut self) -> io::Result<()> {
        match &mut self.active {
            Some(a) => a.w.flush(),
            None => Ok(()),
        }
    }

    /// Flushes, syncs and closes the current file; the next append starts a new one.
    pub fn seal(&mut self) -> io::Result<()> {
        if let Some(mut a) = self.active.take() {
            a.w.flush()?;
            a.w.get_ref().sync_data()?;
        }
        Ok(())
    }
}

impl Drop for IlpFiles {
    fn drop(&mut self) {
        let _ = self.seal();
    }
}

/// The `.ilp` files of a directory, oldest first.
pub fn list(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = match fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == EXT))
            .collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    v.sort();
    Ok(v)
}

/// Total size of the `.ilp` files of a directory.
pub fn total_bytes(dir: &Path) -> io::Result<u64> {
    Ok(list(dir)?.iter().filter_map(|p| p.metadata().ok()).map(|m| m.len()).sum())
}

/// `YYYYMMDD-HHMMSS` in UTC.
pub fn utc_stamp(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let s = secs % 86_400;
    format!("{y:04}{m:02}{d:02}-{:02}{:02}{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn stamps_are_utc_dates() {
        assert_eq!(utc_stamp(UNIX_EPOCH), "19700101-000000");
        // 2024-02-29 23:59:58 UTC
        assert_eq!(utc_stamp(UNIX_EPOCH + Duration::from_secs(1_709_251_198)), "20240229-235958");
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
    }

    #[test]
    fn rotates_by_size_and_lists_in_order() {
        let dir = std::env::temp_dir().join(format!("kimp-files-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let mut f = IlpFiles::open(&dir, 20).unwrap();
        for i in 0..5 {
            f.append(format!("t v={i}i 1\n").as_bytes()).unwrap(); // 10 bytes each
        }
        f.seal().unwrap();
        let files = list(&dir).unwrap();
        assert_eq!(files.len(), 3, "{files:?}");
        let all: String = files.iter().map(|p| fs::read_to_string(p).unwrap()).collect();
        assert_eq!(all, "t v=0i 1\nt v=1i 1\nt v=2i 1\nt v=3i 1\nt v=4i 1\n");
        assert_eq!(total_bytes(&dir).unwrap(), 45);
        fs::remove_dir_all(&dir).unwrap();
    }
}
