//! `kind = "exec"` with a real program speaking the protocol (`store.py`: the records in a
//! JSON file): the provider battery, a refused change read again, the program's own words in
//! errors.

mod lexicon;

use std::path::PathBuf;

use serde_json::{json, Value};

use crate::harness::ConfigDir;
use crate::providers::battery::{self, Backend, ZONE};

const TOKEN: &str = "exec-test-token";

struct Store {
    dir: tempfile::TempDir,
}

impl Store {
    fn start() -> Store {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let s = Store { dir };
        s.save(&json!({"token": TOKEN, "zones": [ZONE], "records": []}));
        s
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("store.json")
    }

    fn load(&self) -> Value {
        let text = std::fs::read_to_string(self.path()).expect("the store");
        serde_json::from_str(&text).expect("the store's JSON")
    }

    fn save(&self, v: &Value) {
        std::fs::write(self.path(), v.to_string()).expect("writing the store");
    }

    /// The ops the program was asked, in order.
    fn ops(&self) -> Vec<String> {
        let log =
            std::fs::read_to_string(self.dir.path().join("store.json.log")).unwrap_or_default();
        log.lines().map(str::to_owned).collect()
    }

    fn toml(&self, token: &str) -> String {
        format!(
            "[providers.p]\nkind = \"exec\"\ncommand = [\"python3\", \"{}\", \"{}\", \"--token\", \"{token}\"]\n",
            concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/exec/store.py"),
            self.path().display()
        )
    }
}

impl Backend for Store {
    fn provider_toml(&self, _dir: &ConfigDir) -> String {
        self.toml(TOKEN)
    }

    fn bad_auth_provider_toml(&self, _dir: &ConfigDir) -> String {
        self.toml("not-the-token")
    }

    fn query(&self, name: &str, rtype: &str) -> Vec<String> {
        self.load()["records"]
            .as_array()
            .expect("records")
            .iter()
            .filter(|r| r["name"] == name && r["type"] == rtype)
            .map(|r| r["value"].as_str().expect("a value").to_owned())
            .collect()
    }

    fn add(&self, name: &str, rtype: &str, data: &str) {
        let mut v = self.load();
        v["records"]
            .as_array_mut()
            .expect("records")
            .push(json!({"name": name, "type": rtype, "ttl": 300, "value": data}));
        self.save(&v);
    }

    fn kill(&mut self) {
        std::fs::write(self.dir.path().join("store.json.down"), "").expect("down flag");
    }

    fn revive(&mut self) {
        std::fs::remove_file(self.dir.path().join("store.json.down")).expect("down flag");
    }
}

crate::battery!(exec, Store::start);

/// Another writer removes the stale record we are about to remove (and adds its own) just
/// before our change: the program refuses (exit 1), mta-stsd reads again and the second change
/// keeps the other writer's record.
#[test]
fn refused_change_is_read_again() {
    let b = Store::start();
    let name = "_mta-sts.a.example.org.";
    b.add(name, "TXT", "v=STSv1; id=stale;");
    let dir = ConfigDir::new();
    battery::config(&b, &dir, "", 86400, false);
    let race = json!({
        "remove": [{"name": name, "type": "TXT", "ttl": 300, "value": "v=STSv1; id=stale;"}],
        "add": [{"name": name, "type": "TXT", "ttl": 300, "value": "foreign"}],
    });
    std::fs::write(b.dir.path().join("store.json.race"), race.to_string()).expect("race");
    let out = dir.run(&["apply"]);
    out.assert_status(0);
    let id = battery::policy_id(&dir, "a.example.org");
    let mut got = b.query(name, "TXT");
    got.sort();
    assert_eq!(
        got,
        vec!["foreign".to_owned(), format!("v=STSv1; id={id};")]
    );
    let changes = b.ops().iter().filter(|o| *o == "change").count();
    assert_eq!(changes, 2, "{:?}", b.ops());
}

/// A failing program's exit status and stderr are the error; nothing changes.
#[test]
fn program_error_is_quoted() {
    let b = Store::start();
    let dir = ConfigDir::new();
    battery::config(&b, &dir, "", 86400, true);
    let out = dir.run(&["plan"]);
    out.assert_status(1);
    assert!(
        out.stderr
            .contains("exit 2: authentication failed: wrong token"),
        "{}",
        out.dump()
    );
}

/// A TXT value longer than 255 octets goes through the protocol whole (the program sees
/// the text, not strings).
#[test]
fn long_txt_is_one_value() {
    let b = Store::start();
    let dir = ConfigDir::new();
    let rua = format!("mailto:{}@example.org", "r".repeat(300));
    battery::config(&b, &dir, &format!("tlsrpt = [\"{rua}\"]"), 86400, false);
    dir.run(&["apply"]).assert_status(0);
    assert_eq!(
        b.query("_smtp._tls.a.example.org.", "TXT"),
        vec![format!("v=TLSRPTv1; rua={rua};")]
    );
    dir.run(&["plan"]).assert_status(0);
}

/// A `[[dane]]` entry through the program: TLSA values in presentation form.
#[test]
fn tlsa_is_published_beside_a_foreign_value() {
    crate::dane::records::published_beside_a_foreign_value(&Store::start());
}
