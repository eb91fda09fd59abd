//! A real PostgreSQL 15 for the integration tests: `initdb` and `pg_ctl` in a fresh temporary
//! directory, listening on a free loopback port, stopped (and removed) on drop.
//!
//! Debian's `postgresql` package (`scripts/test.sh` installs it). PostgreSQL refuses to run as
//! root, so as root the server runs as the `postgres` user through `runuser`. A missing
//! package fails the test; nothing is skipped.

use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

use super::process::free_port;

const PGBIN: &str = "/usr/lib/postgresql/15/bin";

/// A running server with one database, `mtasts`, owned by the trusted user `mta`.
pub struct Postgres {
    pub port: u16,
    dir: TempDir,
}

impl Postgres {
    #[track_caller]
    pub fn start() -> Postgres {
        let bin = Path::new(PGBIN);
        assert!(
            bin.join("initdb").exists(),
            "{PGBIN}/initdb not found: install the Debian package `postgresql` (scripts/test.sh does)"
        );
        let dir = tempfile::Builder::new()
            .prefix("mta-stsd-pg-")
            .tempdir()
            .expect("creating a temporary directory");
        let root = is_root();
        if root {
            // The server's user must own its directory (and reach it: tempdir is 0700).
            run(
                Command::new("chown")
                    .arg("postgres:postgres")
                    .arg(dir.path()),
                "chown",
            );
        }
        let data = dir.path().join("data");
        let cwd = dir.path().to_owned();
        let pg = |prog: &str| {
            let mut c = if root {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(bin.join(prog));
                c
            } else {
                Command::new(bin.join(prog))
            };
            c.current_dir(&cwd);
            c
        };
        run(
            pg("initdb").arg("-D").arg(&data).args([
                "-U",
                "mta",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ]),
            "initdb",
        );
        let port = free_port();
        let log: PathBuf = dir.path().join("log");
        run(
            pg("pg_ctl")
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(&log)
                .args(["-w", "-o"])
                .arg(format!(
                    "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
                    dir.path().display()
                ))
                .arg("start"),
            "pg_ctl start",
        );
        let server = Postgres { port, dir };
        run(
            pg("createdb").args([
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-U",
                "mta",
                "mtasts",
            ]),
            "createdb",
        );
        server
    }

    pub fn url(&self) -> String {
        format!("postgres://mta@127.0.0.1:{}/mtasts", self.port)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The directory holding the data and the server's Unix socket.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Stops the server (fast: every connection is closed), as an outage does.
    pub fn stop(&self) {
        run(self.ctl().args(["-m", "fast", "-w", "stop"]), "pg_ctl stop");
    }

    /// Starts the stopped server again on the same port.
    pub fn restart(&self) {
        run(
            self.ctl()
                .arg("-l")
                .arg(self.dir.path().join("log"))
                .args(["-w", "-o"])
                .arg(format!(
                    "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
                    self.port,
                    self.dir.path().display()
                ))
                .arg("start"),
            "pg_ctl start",
        );
    }

    /// `pg_ctl -D <data>`, as the server's user.
    fn ctl(&self) -> Command {
        let ctl = Path::new(PGBIN).join("pg_ctl");
        let mut c = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(ctl);
            c
        } else {
            Command::new(ctl)
        };
        c.arg("-D").arg(self.data()).current_dir(self.dir.path());
        c
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.ctl().args(["-m", "immediate", "-w", "stop"]).output();
    }
}

pub fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

#[track_caller]
pub fn run(cmd: &mut Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
