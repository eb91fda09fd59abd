//! A real PgBouncer (Debian's 1.18) in transaction pooling mode in front of a [`Postgres`]:
//! each transaction may run on another server connection, and session state (advisory
//! locks, `SET`, prepared statements by name) does not follow the client. `scripts/test.sh`
//! installs the package; a missing one fails the test.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use super::postgres::{is_root, Postgres};
use super::process::free_port;

const PROGRAM: &str = "/usr/sbin/pgbouncer";

pub struct PgBouncer {
    pub port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl PgBouncer {
    #[track_caller]
    pub fn start(pg: &Postgres) -> PgBouncer {
        assert!(
            Path::new(PROGRAM).exists(),
            "{PROGRAM} not found: install the Debian package `pgbouncer` (scripts/test.sh does)"
        );
        let dir = tempfile::Builder::new()
            .prefix("mta-stsd-pgbouncer-")
            .tempdir()
            .expect("temporary directory");
        let port = free_port();
        let users = dir.path().join("users.txt");
        std::fs::write(&users, "\"mta\" \"\"\n").expect("users.txt");
        let ini = dir.path().join("pgbouncer.ini");
        // Two server connections for many clients: transactions of one client land on
        // either, so nothing may rely on a session. sqlx sets extra_float_digits at
        // connect, which PgBouncer refuses unless told to ignore it (README says so too).
        std::fs::write(
            &ini,
            format!(
                "[databases]\nmtasts = host=127.0.0.1 port={} dbname=mtasts user=mta\n\n\
                 [pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\n\
                 unix_socket_dir =\nauth_type = trust\nauth_file = {}\n\
                 pool_mode = transaction\ndefault_pool_size = 2\nmax_client_conn = 200\n\
                 ignore_startup_parameters = extra_float_digits\n\
                 server_login_retry = 1\nlogfile = {}\n",
                pg.port,
                users.display(),
                dir.path().join("log").display()
            ),
        )
        .expect("pgbouncer.ini");
        if is_root() {
            super::postgres::run(
                Command::new("chown")
                    .arg("-R")
                    .arg("postgres:postgres")
                    .arg(dir.path()),
                "chown",
            );
        }
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", PROGRAM]);
            c
        } else {
            Command::new(PROGRAM)
        };
        let child = cmd
            .arg(&ini)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting pgbouncer");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "pgbouncer did not listen on {port}: {}",
                std::fs::read_to_string(dir.path().join("log")).unwrap_or_default()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        PgBouncer {
            port,
            child,
            _dir: dir,
        }
    }

    pub fn url(&self) -> String {
        format!("postgres://mta@127.0.0.1:{}/mtasts", self.port)
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        // runuser passes the signal on to pgbouncer.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}
