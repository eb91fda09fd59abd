//! Processes and ports for the harness's servers: free loopback ports handed out once,
//! loopback addresses, programs found with the package that brings them.

use std::fs;
use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// Ports handed to servers of this test process, never handed out twice: the kernel may give
/// a port that a server has not bound yet to the next `bind(0)`.
static PORTS_TAKEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());

/// A port free on 127.0.0.1 for both TCP and UDP right now, never 53 and never one handed out
/// before by this process.
pub fn free_port() -> u16 {
    let mut taken = PORTS_TAKEN.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..100 {
        let tcp = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("binding a TCP port");
        let port = tcp.local_addr().expect("local address").port();
        if port == 53 || taken.contains(&port) {
            continue;
        }
        if UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            taken.push(port);
            return port;
        }
    }
    panic!("found no port free for both TCP and UDP on 127.0.0.1");
}

/// A port free for both TCP and UDP on every one of `ips` right now, never 53 and never one
/// handed out before by this process.
pub fn free_port_on(ips: &[Ipv4Addr]) -> u16 {
    let first = *ips.first().expect("at least one address");
    let mut taken = PORTS_TAKEN.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..100 {
        let tcp = TcpListener::bind((first, 0)).expect("binding a TCP port");
        let port = tcp.local_addr().expect("local address").port();
        if port == 53 || taken.contains(&port) {
            continue;
        }
        let free = ips.iter().all(|ip| {
            UdpSocket::bind((*ip, port)).is_ok()
                && (*ip == first || TcpListener::bind((*ip, port)).is_ok())
        });
        if free {
            taken.push(port);
            return port;
        }
    }
    panic!("found no port free for both TCP and UDP on all of {ips:?}");
}

/// Makes `ip` (a loopback address) an address of `lo`, where it is not already (127.0.0.1
/// always is). BIND listens only on the addresses of interfaces, not on the rest of 127/8 that
/// Linux routes to `lo` anyway; adding a /32 there changes no route. Needs CAP_NET_ADMIN
/// (root); without it, panics with the command to run once.
#[track_caller]
pub fn ensure_loopback(ip: Ipv4Addr) {
    assert!(ip.is_loopback(), "{ip} is not a loopback address");
    if ip == Ipv4Addr::LOCALHOST {
        return;
    }
    static LOCK: Mutex<()> = Mutex::new(());
    let _serial = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let program = find_program("ip", "iproute2");
    let shown = Command::new(&program)
        .args(["-4", "-o", "addr", "show", "dev", "lo"])
        .output()
        .expect("running `ip addr show`");
    if String::from_utf8_lossy(&shown.stdout).contains(&format!("inet {ip}/")) {
        return;
    }
    let out = Command::new(&program)
        .args(["addr", "add", &format!("{ip}/32"), "dev", "lo"])
        .output()
        .expect("running `ip addr add`");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Another test process may have added it meanwhile.
    assert!(
        out.status.success() || stderr.contains("File exists"),
        "cannot add {ip} to lo ({}): {stderr}BIND listens only on interface addresses; \
         run `ip addr add {ip}/32 dev lo` as root once",
        out.status
    );
}

/// `name` found in `PATH` or the sbin directories (not in a non-root `PATH` on Debian);
/// panics naming the Debian package to install.
#[track_caller]
pub fn find_program(name: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from));
    for dir in dirs {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "`{name}` not found in PATH or /usr/sbin: install the Debian package `{package}` \
         (scripts/test.sh installs everything the tests need)"
    );
}

/// Debian ships an AppArmor profile for `/usr/sbin/named` that keeps it out of temporary
/// directories. Where that profile is enforced, run a copy of the binary from `dir` instead
/// (profiles attach by path); elsewhere the installed binary as it is.
pub fn unconfined_named(program: PathBuf, dir: &Path) -> PathBuf {
    let profiles = fs::read_to_string("/sys/kernel/security/apparmor/profiles").unwrap_or_default();
    let confined = profiles.lines().any(|l| {
        (l.starts_with("named ") || l.starts_with("/usr/sbin/named ")) && l.contains("(enforce)")
    });
    if !confined {
        return program;
    }
    let copy = dir.join("named");
    fs::copy(&program, &copy).expect("copying named out of AppArmor's reach");
    copy
}

/// Waits for `child` to exit within `bound`, polling; kills it and panics with `what` if it
/// runs past the bound (so a hang fails the test instead of stalling the run).
pub fn wait_bounded(
    child: &mut std::process::Child,
    bound: std::time::Duration,
    what: &str,
) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + bound;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} still running after {bound:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
