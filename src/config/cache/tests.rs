//! A load through the cache must be a fresh load, byte for byte: the config (every domain's
//! policy and id), the warnings and the errors with their places, in the same order.

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use super::{Cache, Counts};
use crate::config::load::Failed;
use crate::config::{load, load_cached, Loaded};

struct Dir {
    tmp: tempfile::TempDir,
}

impl Dir {
    fn new() -> Dir {
        let d = Dir {
            tmp: tempfile::tempdir().unwrap(),
        };
        fs::create_dir(d.path("d")).unwrap();
        d.write(
            "main.toml",
            r#"include = ["d/*.toml"]

[server]
https = []
http = ["127.0.0.1:0"]

[state]
dir = "state"

[policy]
mode = "enforce"
mx = ["mail.example.org"]
"#,
        );
        d
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    fn main(&self) -> PathBuf {
        self.path("main.toml")
    }

    /// Written in place (same inode).
    fn write(&self, rel: &str, text: &str) {
        fs::write(self.path(rel), text).unwrap();
    }

    /// Saved as editors do: a new file renamed over the old one.
    fn save(&self, rel: &str, text: &str) {
        let tmp = self.path(&format!("{rel}.new"));
        fs::write(&tmp, text).unwrap();
        fs::rename(tmp, self.path(rel)).unwrap();
    }

    fn domains(&self, rel: &str, names: &[&str]) {
        let text: String = names
            .iter()
            .map(|n| format!("[domains.\"{n}\"]\n\n"))
            .collect();
        self.save(rel, &text);
    }
}

/// Everything a load says, as text: the config (with every policy and id) and its warnings,
/// or every problem.
fn render(r: &Result<Loaded, Failed>) -> String {
    match r {
        Ok(l) => {
            let warnings: Vec<String> = l.warnings.iter().map(|w| w.to_string()).collect();
            format!("ok\n{:#?}\n{}", l.config, warnings.join("\n"))
        }
        Err(f) => {
            let all: Vec<String> = f.diagnostics.iter().map(|d| d.to_string()).collect();
            format!("failed\n{}", all.join("\n"))
        }
    }
}

/// Loads through `cache`, checks the result against a fresh load, and returns what the cached
/// load parsed.
fn cached_load(dir: &Dir, cache: &mut Cache) -> (Result<Loaded, Failed>, Counts) {
    let got = load_cached(&dir.main(), cache);
    let fresh = load(&dir.main());
    assert_eq!(render(&got), render(&fresh));
    (got, cache.last_load())
}

fn id_of(r: &Result<Loaded, Failed>, domain: &str) -> String {
    let config = &r.as_ref().expect("a valid config").config;
    config.domain(domain).unwrap().policy.id().to_string()
}

/// A cache that trusts the metadata at once; tests that use it change a file's size or inode.
fn eager() -> Cache {
    Cache {
        racy: Duration::ZERO,
        ..Cache::default()
    }
}

#[test]
fn an_edited_file_is_the_only_one_parsed() {
    let dir = Dir::new();
    dir.domains("d/a.toml", &["a1.example", "a2.example"]);
    dir.domains("d/b.toml", &["b1.example", "b2.example"]);
    dir.domains("d/c.toml", &["c1.example"]);
    let mut cache = eager();
    let (first, n) = cached_load(&dir, &mut cache);
    assert_eq!((n.included, n.read, n.parsed), (3, 3, 3));
    let (_, n) = cached_load(&dir, &mut cache);
    assert_eq!((n.read, n.parsed), (0, 0), "nothing changed");

    dir.save(
        "d/b.toml",
        "[domains.\"b1.example\"]\nmode = \"none\"\n\n[domains.\"b2.example\"]\n",
    );
    let (after, n) = cached_load(&dir, &mut cache);
    assert_eq!((n.read, n.parsed), (1, 1));
    assert_ne!(id_of(&first, "b1.example"), id_of(&after, "b1.example"));
    assert_eq!(id_of(&first, "a1.example"), id_of(&after, "a1.example"));
    // Memory: an unchanged file's names are the cached parse's, shared by both loads; the
    // edited file's are new.
    let text = |r: &Result<Loaded, Failed>, name: &str| {
        let config = &r.as_ref().expect("a valid config").config;
        config.domain(name).unwrap().name.as_str().as_ptr()
    };
    assert_eq!(text(&first, "a1.example"), text(&after, "a1.example"));
    assert_eq!(text(&first, "c1.example"), text(&after, "c1.example"));
    assert_ne!(text(&first, "b2.example"), text(&after, "b2.example"));
}

/// A one-file edit resolves that file only: the other files' domains are the very ones the
/// config before holds (shared, not copied), and a change to the main file resolves all again.
#[test]
fn an_edit_shares_the_untouched_files_domains() {
    let dir = Dir::new();
    dir.domains("d/a.toml", &["a1.example", "a2.example"]);
    dir.save("d/b.toml", "[domains.\"b1.example\"]\nmode = \"testing\"\n");
    dir.domains("d/c.toml", &["c1.example"]);
    let mut cache = eager();
    let (first, _) = cached_load(&dir, &mut cache);
    let first = first.expect("a valid config").config;
    dir.save("d/b.toml", "[domains.\"b1.example\"]\nmode = \"enforce\"\n");
    let (after, n) = cached_load(&dir, &mut cache);
    assert_eq!(n.parsed, 1);
    let after = after.expect("a valid config").config;
    let same = |c: &crate::config::Config, d: &crate::config::Config, name: &str| {
        crate::config::Domain::ptr_eq(c.domain(name).unwrap(), d.domain(name).unwrap())
    };
    for name in ["a1.example", "a2.example", "c1.example"] {
        assert!(same(&first, &after, name), "{name} is shared");
    }
    assert!(
        !same(&first, &after, "b1.example"),
        "the edited file's domain is new"
    );

    // Nothing changed: everything shared.
    let (again, _) = cached_load(&dir, &mut cache);
    let again = again.expect("a valid config").config;
    assert!(same(&after, &again, "b1.example"));

    // The main file changed: every domain resolved again, even where nothing it says differs.
    let main = fs::read_to_string(dir.main()).unwrap();
    dir.save("main.toml", &format!("{main}\n# touched\n"));
    let (touched, _) = cached_load(&dir, &mut cache);
    let touched = touched.expect("a valid config").config;
    for name in ["a1.example", "b1.example", "c1.example"] {
        assert!(!same(&again, &touched, name), "{name} resolved again");
    }
}

/// Domains that override only `mode` share one policy, not one each.
#[test]
fn domains_overriding_only_the_mode_share_their_policy() {
    let dir = Dir::new();
    let text: String = (0..5000)
        .map(|i| format!("[domains.\"t{i}.example\"]\nmode = \"testing\"\n"))
        .collect();
    dir.save("d/t.toml", &text);
    dir.save(
        "d/u.toml",
        "[domains.\"u.example\"]\nmode = \"testing\"\nmx = [\"mx.u.example\"]\n",
    );
    let config = load(&dir.main()).expect("a valid config").config;
    let policy = |n: &str| config.domain(n).unwrap().policy.clone();
    let first = policy("t0.example");
    assert_eq!(first.mode, crate::policy::Mode::Testing);
    // Across the parallel resolver's chunks too.
    for n in ["t1.example", "t4999.example"] {
        assert!(std::sync::Arc::ptr_eq(&first, &policy(n)), "{n}");
    }
    assert!(!std::sync::Arc::ptr_eq(&first, &policy("u.example")));
}

#[test]
fn removed_added_and_renamed_files() {
    let dir = Dir::new();
    // A warning here, to be ordered against a.toml's below.
    dir.save("d/b.toml", "[domains.\"b1.example\"]\nmode = \"testing\"\n");
    dir.domains("d/c.toml", &["c1.example"]);
    dir.domains("d/e.toml", &["e1.example"]);
    let mut cache = eager();
    cached_load(&dir, &mut cache).0.expect("a valid config");

    fs::remove_file(dir.path("d/c.toml")).unwrap();
    let (r, n) = cached_load(&dir, &mut cache);
    assert_eq!((n.included, n.parsed), (2, 0));
    assert!(r.unwrap().config.domain("c1.example").is_none());

    // Before every other file, and defining a domain again: the error names both places, and
    // problems stay in file order although the new file got the freed number.
    dir.save(
        "d/a.toml",
        "[domains.\"a1.example\"]\nmode = \"testing\"\n\n[domains.\"e1.example\"]\n",
    );
    let (r, n) = cached_load(&dir, &mut cache);
    assert_eq!(n.parsed, 1);
    let failed = r.expect_err("e1.example is defined twice");
    assert!(
        failed
            .diagnostics
            .iter()
            .any(|d| d.message.contains("defined twice") && d.message.contains("a.toml:4:")),
        "{failed:?}"
    );

    dir.domains("d/a.toml", &["a1.example"]);
    fs::rename(dir.path("d/e.toml"), dir.path("d/f.toml")).unwrap();
    let (r, n) = cached_load(&dir, &mut cache);
    assert_eq!((n.included, n.parsed), (3, 2), "the new a.toml and f.toml");
    assert!(r.unwrap().config.domain("e1.example").is_some());
}

#[test]
fn an_invalid_file_fails_as_a_fresh_load_does_and_recovers() {
    let dir = Dir::new();
    dir.domains("d/a.toml", &["a1.example"]);
    dir.domains("d/b.toml", &["b1.example"]);
    let mut cache = eager();
    cached_load(&dir, &mut cache).0.expect("a valid config");

    dir.save("d/b.toml", "[domains.\"b1.example\"\nmode = \"testing\"\n");
    let (r, _) = cached_load(&dir, &mut cache);
    assert!(r.is_err(), "TOML syntax");
    dir.save("d/b.toml", "[domains.\"b1.example\"]\nmood = \"testing\"\n");
    let (r, n) = cached_load(&dir, &mut cache);
    assert_eq!(n.parsed, 1);
    let failed = r.expect_err("an unknown key");
    assert!(failed.errors().any(|d| d.message.contains("mood")));
    // Loading it again (nothing changed) fails the same way, from the cache.
    let (r, n) = cached_load(&dir, &mut cache);
    assert_eq!(n.parsed, 0);
    assert!(r.is_err());

    dir.domains("d/b.toml", &["b1.example", "b2.example"]);
    let (r, n) = cached_load(&dir, &mut cache);
    assert_eq!(n.parsed, 1);
    assert_eq!(r.unwrap().config.domains.len(), 3);
}

#[test]
fn warnings_of_cached_files_keep_their_places() {
    let dir = Dir::new();
    dir.save(
        "d/a.toml",
        "[domains.\"a1.example\"]\nmode = \"testing\"\nttl = 5\n",
    );
    dir.save("d/b.toml", "[domains.\"b1.example\"]\nmode = \"testing\"\n");
    let mut cache = eager();
    let (r, _) = cached_load(&dir, &mut cache);
    assert!(r.unwrap().warnings.len() >= 3);
    // b.toml's warning moves two lines down; a.toml's come from the cache.
    dir.save(
        "d/b.toml",
        "# moved\n\n[domains.\"b1.example\"]\nmode = \"testing\"\n",
    );
    let (r, n) = cached_load(&dir, &mut cache);
    assert_eq!(n.parsed, 1);
    let warnings = r.unwrap().warnings;
    assert!(warnings.iter().any(|w| w
        .to_string()
        .contains("b.toml:4:8: warning: mode `testing`")));
    assert!(warnings
        .iter()
        .any(|w| w.to_string().contains("a.toml:3:7: warning: ttl 5")));
}

#[test]
fn a_changed_main_file_applies_to_cached_files() {
    let dir = Dir::new();
    dir.domains("d/a.toml", &["a1.example"]);
    dir.write(
        "ns.key",
        "key \"k\" {\n\talgorithm hmac-sha256;\n\tsecret \"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0\";\n};\n",
    );
    dir.save(
        "d/p.toml",
        "[providers.ns]\nkind = \"rfc2136\"\nserver = \"127.0.0.1:53\"\ntsig_key = \"../ns.key\"\n\n[domains.\"p1.example\"]\nprovider = \"ns\"\n",
    );
    let mut cache = eager();
    let (first, n) = cached_load(&dir, &mut cache);
    assert_eq!(n.parsed, 2);
    let main = fs::read_to_string(dir.main()).unwrap();
    dir.save(
        "main.toml",
        &main.replace("mail.example.org", "mx.example.org"),
    );
    let (after, n) = cached_load(&dir, &mut cache);
    assert_eq!(n.parsed, 0);
    assert_ne!(id_of(&first, "a1.example"), id_of(&after, "a1.example"));
    assert!(after.unwrap().config.providers.contains_key("ns"));
}

#[test]
fn a_rewrite_right_after_a_read_is_seen_whatever_the_timestamps() {
    let dir = Dir::new();
    dir.write("d/a.toml", "[domains.\"a1.example\"]\nmode = \"enforce\"\n");
    // The default window: the file was just written, so its content is compared.
    let mut cache = Cache::default();
    let (first, _) = cached_load(&dir, &mut cache);
    // The same size, in place, probably within the same timestamp tick.
    dir.write("d/a.toml", "[domains.\"a1.example\"]\nmode = \"testing\"\n");
    let (after, n) = cached_load(&dir, &mut cache);
    assert_eq!((n.read, n.parsed), (1, 1));
    assert_ne!(id_of(&first, "a1.example"), id_of(&after, "a1.example"));
}

#[test]
fn a_file_saved_unchanged_is_read_but_not_parsed() {
    let dir = Dir::new();
    dir.domains("d/a.toml", &["a1.example"]);
    let mut cache = eager();
    cached_load(&dir, &mut cache).0.expect("a valid config");
    dir.domains("d/a.toml", &["a1.example"]);
    let (_, n) = cached_load(&dir, &mut cache);
    assert_eq!((n.read, n.parsed), (1, 0));
}

#[test]
fn an_unreadable_file_is_reported_every_time() {
    let dir = Dir::new();
    dir.domains("d/a.toml", &["a1.example"]);
    let mut cache = eager();
    cached_load(&dir, &mut cache).0.expect("a valid config");
    let fifo =
        std::ffi::CString::new(dir.path("d/b.toml").into_os_string().into_encoded_bytes()).unwrap();
    // SAFETY: a valid C string; mkfifo only creates the node.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    for _ in 0..2 {
        let (r, _) = cached_load(&dir, &mut cache);
        let failed = r.expect_err("a FIFO is no config file");
        assert!(failed.errors().any(|d| d.message.contains("a FIFO")));
    }
    fs::remove_file(dir.path("d/b.toml")).unwrap();
    let (r, n) = cached_load(&dir, &mut cache);
    assert!(r.is_ok());
    assert_eq!(n.parsed, 0);
}
