//! What DANE publication must remember across restarts: per MX host, the key its certificate
//! presented, each TLSA value we published (since when, and when it may go), and an
//! unannounced rollover. One JSON file, `<[state] dir>/dane.json`, written atomically.
//!
//! Kept behind this small API so it can move into the daemon's store later.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The file is small (a few hosts); a larger one is not ours.
const MAX_BYTES: u64 = 4 * 1024 * 1024;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Memory {
    /// By host (no trailing dot).
    pub hosts: BTreeMap<String, Host>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Host {
    /// Where the records are, so a host removed from the config can still be withdrawn.
    pub provider: String,
    pub zone: Option<String>,
    pub ttl: u32,
    /// The `3 1 1` value of the key the certificate presented when last read.
    pub presented: Option<String>,
    /// Our TLSA values (presentation form, `3 1 1 HEX`).
    pub values: BTreeMap<String, Value>,
    /// An unannounced rollover, until its key has been published for a TTL.
    pub finding: Option<Finding>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Value {
    /// When we first saw it in DNS (published by us); `None` while it is not there yet.
    pub published_at: Option<u64>,
    /// Set when the value stopped being wanted: it is withdrawn at this time, one TTL later.
    pub withdraw_at: Option<u64>,
    /// It was in DNS before we published it: someone else's, never removed by us.
    #[serde(default)]
    pub found: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub at: u64,
    pub message: String,
}

pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("dane.json")
}

/// Reads the file; a missing file is an empty memory. A damaged one is an error: guessing
/// would withdraw records too early or never.
pub fn load(state_dir: &Path) -> Result<Memory, String> {
    use std::io::Read;
    let p = path(state_dir);
    let file = match std::fs::File::open(&p) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Memory::default()),
        Err(e) => return Err(format!("{}: {e}", p.display())),
    };
    let mut buf = Vec::new();
    file.take(MAX_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|e| format!("{}: {e}", p.display()))?;
    if buf.len() as u64 > MAX_BYTES {
        return Err(format!("{}: larger than 4 MiB", p.display()));
    }
    serde_json::from_slice(&buf).map_err(|e| format!("{}: {e}", p.display()))
}

pub fn save(state_dir: &Path, memory: &Memory) -> Result<(), String> {
    let p = path(state_dir);
    std::fs::create_dir_all(state_dir).map_err(|e| format!("{}: {e}", state_dir.display()))?;
    let bytes = serde_json::to_vec_pretty(memory).map_err(|e| e.to_string())?;
    crate::state::write_atomic(&p, &bytes).map_err(|e| format!("{}: {e}", p.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_damage() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(load(dir.path()), Ok(Memory::default()));
        let mut m = Memory::default();
        m.hosts
            .entry("mail.example.org".into())
            .or_default()
            .values
            .insert(
                "3 1 1 AB".into(),
                Value {
                    published_at: Some(5),
                    withdraw_at: None,
                    found: false,
                },
            );
        save(dir.path(), &m).expect("save");
        assert_eq!(load(dir.path()), Ok(m));
        std::fs::write(path(dir.path()), b"{").expect("write");
        assert!(load(dir.path()).is_err());
    }
}
