//! Python tools the tests run (moto's server, octoDNS), each in a venv under `target/` that
//! `scripts/test.sh` makes, or made here when missing (pip needs the network once).

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

static MAKING: Mutex<()> = Mutex::new(());

/// The venv `$<env>`, else `target/<dir>`, with `requirement` installed (checked by
/// `bin/<program>`).
pub fn venv(dir: &str, env: &str, requirement: &str, program: &str) -> PathBuf {
    let dir = std::env::var_os(env).map_or_else(
        || {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("target")
                .join(dir)
        },
        PathBuf::from,
    );
    let _one = MAKING.lock().unwrap_or_else(|e| e.into_inner());
    if !dir.join("bin").join(program).exists() {
        let ok = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success())
            && Command::new(dir.join("bin/pip"))
                .args(["install", "-q", requirement])
                .status()
                .is_ok_and(|s| s.success());
        assert!(
            ok,
            "could not make the venv {} (python3-venv, then pip install \"{requirement}\"); \
             scripts/test.sh makes it",
            dir.display()
        );
    }
    dir
}
