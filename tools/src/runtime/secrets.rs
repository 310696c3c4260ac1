//! API keys: from environment variables or a secrets file only its owner can read.
//!
//! Keys are wrapped in [`Secret`] (Debug and Display print `<redacted>`) the moment they
//! are read, and no error message ever contains one: errors name the variable or the file,
//! never the value. A secrets file readable by group or others is refused, as OpenSSH
//! refuses a private key with loose permissions.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use kimp_gateways::sign::Secret;
use serde::Deserialize;

use super::config::{KeySource, KeysSection, line_of};

/// The four keys the gateways need.
pub struct Keys {
    /// Upbit access key.
    pub upbit_access: Secret,
    /// Upbit secret key.
    pub upbit_secret: Secret,
    /// Binance API key.
    pub binance_key: Secret,
    /// Binance secret key.
    pub binance_secret: Secret,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys { <redacted> }")
    }
}

/// Why keys could not be loaded. Never contains key material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretsError {
    /// Environment variables that are missing or empty (every one of them, in order).
    MissingEnv(Vec<String>),
    /// The secrets file cannot be read or parsed.
    File(String),
    /// The secrets file is readable by group or others.
    TooOpen {
        /// File.
        path: String,
        /// Its mode bits.
        mode: u32,
    },
}

impl std::fmt::Display for SecretsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretsError::MissingEnv(v) if v.len() == 1 => {
                write!(f, "environment variable {} is not set", v[0])
            }
            SecretsError::MissingEnv(v) => {
                write!(f, "environment variables {} are not set", v.join(", "))
            }
            SecretsError::File(m) => write!(f, "secrets file: {m}"),
            SecretsError::TooOpen { path, mode } => write!(
                f,
                "permissions {mode:04o} for '{path}' are too open: it must not be readable by \
                 group or others (chmod 600 '{path}')"
            ),
        }
    }
}

impl std::error::Error for SecretsError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretsFile {
    upbit_access_key: String,
    upbit_secret_key: String,
    binance_api_key: String,
    binance_secret_key: String,
}

impl Keys {
    /// Loads keys as `[keys]` says, reading variables through `env` (injectable for tests).
    pub fn load(
        cfg: &KeysSection,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Keys, SecretsError> {
        match cfg.source {
            KeySource::Env => {
                // Every missing variable is named at once: fixing them one run at a time
                // is four restarts.
                let mut missing = Vec::new();
                let mut get = |name: &str| match env(name) {
                    Some(v) if !v.is_empty() => Some(Secret::new(v)),
                    _ => {
                        missing.push(name.to_string());
                        None
                    }
                };
                let keys = (
                    get(&cfg.upbit_access_env),
                    get(&cfg.upbit_secret_env),
                    get(&cfg.binance_key_env),
                    get(&cfg.binance_secret_env),
                );
                match keys {
                    (
                        Some(upbit_access),
                        Some(upbit_secret),
                        Some(binance_key),
                        Some(binance_secret),
                    ) => Ok(Keys { upbit_access, upbit_secret, binance_key, binance_secret }),
                    _ => Err(SecretsError::MissingEnv(missing)),
                }
            }
            KeySource::File => {
                let path = cfg
                    .file
                    .as_deref()
                    .ok_or_else(|| SecretsError::File("no file configured".into()))?;
                Self::from_file(path)
            }
        }
    }

    /// Loads keys from a TOML secrets file after checking its permissions.
    pub fn from_file(path: &Path) -> Result<Keys, SecretsError> {
        let shown = path.display().to_string();
        let meta =
            std::fs::metadata(path).map_err(|e| SecretsError::File(format!("{shown}: {e}")))?;
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(SecretsError::TooOpen { path: shown, mode });
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| SecretsError::File(format!("{shown}: {e}")))?;
        // The parser's message may quote the offending line, which could hold a key:
        // report only where it failed.
        let f: SecretsFile = toml::from_str(&text).map_err(|e| {
            let line = e.span().map(|s| line_of(&text, s.start));
            SecretsError::File(format!(
                "{shown}: not a valid secrets file (line {})",
                line.unwrap_or(0)
            ))
        })?;
        Ok(Keys {
            upbit_access: Secret::new(f.upbit_access_key),
            upbit_secret: Secret::new(f.upbit_secret_key),
            binance_key: Secret::new(f.binance_api_key),
            binance_secret: Secret::new(f.binance_secret_key),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CANARY: &str = "CANARY-SECRET-7f3a9c";

    fn file_with(mode: u32, body: &str) -> (std::path::PathBuf, tempdir::Dir) {
        let dir = tempdir::Dir::new();
        let p = dir.path.join("secrets.toml");
        std::fs::write(&p, body).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        (p, dir)
    }

    mod tempdir {
        /// A throw-away directory under the target dir, removed on drop.
        pub(crate) struct Dir {
            pub(crate) path: std::path::PathBuf,
        }
        impl Dir {
            pub(crate) fn new() -> Self {
                use std::sync::atomic::{AtomicU32, Ordering};
                static N: AtomicU32 = AtomicU32::new(0);
                let path = std::env::temp_dir().join(format!(
                    "kimp-secrets-{}-{}",
                    std::process::id(),
                    N.fetch_add(1, Ordering::Relaxed)
                ));
                std::fs::create_dir_all(&path).unwrap();
                Self { path }
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.path);
            }
        }
    }

    fn body() -> String {
        format!(
            "upbit_access_key = \"{CANARY}-ua\"\nupbit_secret_key = \"{CANARY}-us\"\n\
             binance_api_key = \"{CANARY}-ba\"\nbinance_secret_key = \"{CANARY}-bs\"\n"
        )
    }

    #[test]
    fn world_readable_file_is_refused_without_reading_it() {
        let (p, _d) = file_with(0o644, &body());
        let e = Keys::from_file(&p).unwrap_err();
        assert!(matches!(e, SecretsError::TooOpen { mode: 0o644, .. }));
        let msg = e.to_string();
        assert!(msg.contains("0644") && msg.contains("too open"), "{msg}");
        assert!(!msg.contains(CANARY));
    }

    #[test]
    fn owner_only_file_loads_and_debug_is_redacted() {
        let (p, _d) = file_with(0o600, &body());
        let k = Keys::from_file(&p).unwrap();
        assert_eq!(k.binance_secret.expose(), format!("{CANARY}-bs").as_bytes());
        let shown = format!("{k:?} {:?} {:?}", k.upbit_secret, k.binance_key);
        assert!(!shown.contains(CANARY), "{shown}");
    }

    #[test]
    fn parse_errors_do_not_echo_the_file() {
        let (p, _d) = file_with(0o600, &format!("upbit_access_key = {CANARY} oops\n"));
        let msg = Keys::from_file(&p).unwrap_err().to_string();
        assert!(!msg.contains(CANARY), "{msg}");
        assert!(msg.contains("line 1"), "{msg}");
    }

    #[test]
    fn env_source_names_the_missing_variable_only() {
        let cfg = KeysSection::default();
        let e = Keys::load(&cfg, |n| (n != "KIMP_BINANCE_SECRET_KEY").then(|| CANARY.to_string()))
            .unwrap_err();
        assert_eq!(e, SecretsError::MissingEnv(vec!["KIMP_BINANCE_SECRET_KEY".into()]));
        assert_eq!(e.to_string(), "environment variable KIMP_BINANCE_SECRET_KEY is not set");
        let e = Keys::load(&cfg, |n| n.starts_with("KIMP_UPBIT_ACCESS").then(|| CANARY.into()))
            .unwrap_err();
        let msg = e.to_string();
        assert_eq!(
            msg,
            "environment variables KIMP_UPBIT_SECRET_KEY, KIMP_BINANCE_API_KEY, \
             KIMP_BINANCE_SECRET_KEY are not set"
        );
        let k = Keys::load(&cfg, |_| Some(CANARY.to_string())).unwrap();
        assert!(!format!("{k:?}").contains(CANARY));
    }
}
