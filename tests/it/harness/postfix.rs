//! A real Postfix (Debian package `postfix`) as the MX hosts drift connects to: one `master`
//! with its own config, queue and data directories in a temporary directory (never
//! /etc/postfix or the system's queue), one `smtpd` per listener on a loopback address, all on
//! one port; each listener with its own certificate, or none (no STARTTLS). Stopped on drop.

use std::fs;
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::process::find_program;

const READY: Duration = Duration::from_secs(20);

/// What Debian's master.cf runs to queue and deliver (no chroot: the queue is a temporary
/// directory).
const DELIVERY_SERVICES: &str = "\
cleanup unix n - n - 0 cleanup
qmgr unix n - n 300 1 qmgr
rewrite unix - - n - - trivial-rewrite
bounce unix - - n - 0 bounce
defer unix - - n - 0 bounce
trace unix - - n - 0 bounce
verify unix - - n - 1 verify
flush unix n - n 1000? 0 flush
proxymap unix - - n - - proxymap
showq unix n - n - - showq
error unix - - n - - error
retry unix - - n - - error
discard unix - - n - - discard
anvil unix - - n - 1 anvil
scache unix - - n - 1 scache
";

/// One smtpd: its address and, for STARTTLS, a certificate chain and key (PEM).
pub struct Listener {
    pub ip: Ipv4Addr,
    pub tls: Option<(String, String)>,
}

pub struct Postfix {
    dir: TempDir,
    child: Child,
    pub port: u16,
}

impl Postfix {
    /// Starts Postfix with `listeners` on `port`, and waits until each answers its banner.
    #[track_caller]
    pub fn start(listeners: &[Listener], port: u16) -> Postfix {
        Self::start_with(listeners, port, "", "")
    }

    /// Like [`Self::start`], with lines added to main.cf (a later line wins) and master.cf,
    /// and the services that queue and deliver mail (cleanup, qmgr, trivial-rewrite, bounce…).
    #[track_caller]
    pub fn start_with(
        listeners: &[Listener],
        port: u16,
        main_extra: &str,
        master_extra: &str,
    ) -> Postfix {
        Self::start_in(listeners, port, main_extra, master_extra, None)
    }

    /// Like [`Self::start_with`]; with `resolv_conf`, Postfix runs in a private mount namespace
    /// (`unshare -m`) where that file is /etc/resolv.conf: its libc resolver (port 53 only)
    /// then asks the test's resolver, and nothing changes for the rest of the machine.
    #[track_caller]
    pub fn start_in(
        listeners: &[Listener],
        port: u16,
        main_extra: &str,
        master_extra: &str,
        resolv_conf: Option<&std::path::Path>,
    ) -> Postfix {
        let postfix = find_program("postfix", "postfix");
        let dir = tempfile::Builder::new()
            .prefix("mta-stsd-postfix-")
            .tempdir()
            .expect("a temporary directory");
        let d = dir.path();
        // Postfix's unprivileged processes (user `postfix`) must reach their directories.
        fs::set_permissions(d, fs::Permissions::from_mode(0o755)).unwrap();
        let mut master_cf = String::new();
        for (i, l) in listeners.iter().enumerate() {
            let mut line = format!("{}:{port} inet n - n - - smtpd", l.ip);
            match &l.tls {
                Some((cert, key)) => {
                    let (c, k) = (d.join(format!("l{i}.crt")), d.join(format!("l{i}.key")));
                    fs::write(&c, cert).unwrap();
                    fs::write(&k, key).unwrap();
                    line += &format!(
                        " -o smtpd_tls_security_level=may -o smtpd_tls_chain_files={},{}",
                        k.display(),
                        c.display()
                    );
                }
                None => line += " -o smtpd_tls_security_level=none",
            }
            master_cf += &line;
            master_cf.push('\n');
        }
        master_cf += "tlsmgr unix - - n 1000? 1 tlsmgr\npostlog unix-dgram n - n - 1 postlogd\n";
        if !master_extra.is_empty() {
            master_cf += DELIVERY_SERVICES;
            master_cf += master_extra;
        }
        fs::write(d.join("master.cf"), master_cf).unwrap();
        let main_cf = format!(
            "compatibility_level = 3.6\n\
             config_directory = {d}\n\
             queue_directory = {d}/queue\n\
             data_directory = {d}/data\n\
             mail_owner = postfix\n\
             inet_interfaces = loopback-only\n\
             inet_protocols = ipv4\n\
             myhostname = mx.test\n\
             maillog_file = /dev/stdout\n\
             smtpd_banner = $myhostname ESMTP\n\
             smtpd_tls_session_cache_database =\n\
             local_recipient_maps =\n\
             alias_maps =\n\
             alias_database =\n\
             smtpd_relay_restrictions = reject\n{main_extra}",
            d = d.display()
        );
        fs::write(d.join("main.cf"), main_cf).unwrap();
        // What `postfix check` would create; `quick-start` skips the slow full check.
        for (sub, owner, mode) in [
            ("queue/pid", "root", 0o755),
            ("queue/private", "postfix", 0o700),
            ("queue/public", "postfix:postdrop", 0o710),
            ("data", "postfix", 0o700),
            ("queue/incoming", "postfix", 0o700),
            ("queue/active", "postfix", 0o700),
            ("queue/deferred", "postfix", 0o700),
            ("queue/defer", "postfix", 0o700),
            ("queue/bounce", "postfix", 0o700),
            ("queue/trace", "postfix", 0o700),
            ("queue/flush", "postfix", 0o700),
            ("queue/hold", "postfix", 0o700),
            ("queue/corrupt", "postfix", 0o700),
            ("queue/saved", "postfix", 0o700),
        ] {
            let p = d.join(sub);
            fs::create_dir_all(&p).unwrap();
            let ok = Command::new("chown")
                .arg(owner)
                .arg(&p)
                .status()
                .expect("running chown");
            assert!(
                ok.success(),
                "chown {owner} {} (the tests run as root)",
                p.display()
            );
            fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        }
        fs::write(d.join("queue/quick-start"), "").unwrap();
        let log = fs::File::create(d.join("postfix.log")).unwrap();
        let mut cmd = match resolv_conf {
            None => Command::new(postfix),
            Some(r) => {
                let mut c = Command::new(find_program("unshare", "util-linux"));
                c.args([
                    "-m",
                    "--propagation",
                    "private",
                    "sh",
                    "-c",
                    "mount --bind \"$0\" /etc/resolv.conf && exec \"$@\"",
                ])
                .arg(r)
                .arg(postfix);
                c
            }
        };
        let child = cmd
            .arg("-c")
            .arg(d)
            .arg("start-fg")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting postfix");
        let mut p = Postfix { dir, child, port };
        for l in listeners {
            p.wait_banner(SocketAddr::from((l.ip, port)));
        }
        p
    }

    fn wait_banner(&mut self, addr: SocketAddr) {
        let deadline = Instant::now() + READY;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("postfix exited ({status})\n{}", self.log());
            }
            if let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
                s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let mut b = [0u8; 3];
                if s.read_exact(&mut b).is_ok() && &b == b"220" {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "postfix does not answer on {addr}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("postfix.log")).unwrap_or_default()
    }

    /// SMTP sessions that said EHLO (the harness's own banner checks do not), as smtpd
    /// logged them at disconnect; waits until there are at least `n`, then returns the count.
    #[track_caller]
    pub fn ehlo_sessions_at_least(&self, n: usize) -> usize {
        let count = || {
            self.log()
                .lines()
                .filter(|l| l.contains(": disconnect from ") && l.contains(" ehlo="))
                .count()
        };
        let deadline = Instant::now() + READY;
        while count() < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        count()
    }

    /// The configuration (and queue) directory, for `postqueue -c`.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.path().join("queue/pid/master.pid")
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        // SIGTERM to master: it stops its smtpd children, then `start-fg` returns.
        if let Ok(pid) = fs::read_to_string(self.pid_file()) {
            let _ = Command::new("kill")
                .args(["-TERM", pid.trim()])
                .stderr(Stdio::null())
                .status();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
