//! One request to the program: spawned with the JSON on stdin, stdout and stderr read to a
//! bound, killed at the timeout.

use std::process::Stdio;
use std::time::Duration;

use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use crate::ProviderError;

/// The longest one request may take, the program's start included.
pub const TIMEOUT: Duration = Duration::from_secs(30);
/// The most of stdout read (a read of many names' records fits well within it).
const MAX_STDOUT: u64 = 4 << 20;
/// The most of stderr kept for the message.
const MAX_STDERR: u64 = 16 << 10;

/// Runs `command` once with `input` on stdin and returns its stdout as JSON. A non-zero exit
/// is [`ProviderError::Refused`] with stderr as the message — for a `change`
/// (`refusal_is_conflict`) exit 1 is a [`ProviderError::Conflict`]: the program found a value
/// to remove gone, and the caller reads again.
pub async fn request(
    command: &[String],
    input: &serde_json::Value,
    refusal_is_conflict: bool,
) -> Result<serde_json::Value, ProviderError> {
    let program = &command[0];
    let op = input["op"].as_str().unwrap_or("?");
    let what = format!("exec {program} ({op})");
    let mut child = Command::new(program)
        .args(&command[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| ProviderError::config(format!("{what}: cannot start: {e}")))?;
    let (Some(mut stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(ProviderError::config(format!("{what}: no pipes")));
    };
    let body = input.to_string();
    let talk = async {
        let write = async {
            // A program that exits without reading its input is answered by its exit status.
            let _ = stdin.write_all(body.as_bytes()).await;
            drop(stdin);
        };
        let (_, out, err, status) = tokio::join!(
            write,
            bounded(stdout, MAX_STDOUT),
            bounded(stderr, MAX_STDERR),
            child.wait()
        );
        (out, err, status)
    };
    let (out, err, status) = tokio::time::timeout(TIMEOUT, talk).await.map_err(|_| {
        ProviderError::transient("timeout", format!("{what}: no answer within {TIMEOUT:?}"))
    })?;
    let status = status.map_err(|e| ProviderError::transient("exec", format!("{what}: {e}")))?;
    let (out, out_cut) = out;
    let (err, _) = err;
    let stderr_text = String::from_utf8_lossy(&err).trim().to_owned();
    if !status.success() {
        let code = status
            .code()
            .map_or_else(|| "signal".to_owned(), |c| format!("exit {c}"));
        let message = format!(
            "{what}: {code}: {}",
            if stderr_text.is_empty() {
                "(no message on stderr)"
            } else {
                &stderr_text
            }
        );
        return Err(if refusal_is_conflict && status.code() == Some(1) {
            ProviderError::Conflict { code, message }
        } else {
            ProviderError::Refused { code, message }
        });
    }
    if out_cut {
        return Err(ProviderError::Refused {
            code: "too-large".into(),
            message: format!("{what}: more than {MAX_STDOUT} bytes on stdout"),
        });
    }
    serde_json::from_slice(&out).map_err(|e| ProviderError::Refused {
        code: "bad-answer".into(),
        message: format!("{what}: stdout is not one JSON object: {e}"),
    })
}

/// The answer as `T`, or a clear refusal.
pub fn decode<T: DeserializeOwned>(
    command: &[String],
    op: &str,
    v: serde_json::Value,
) -> Result<T, ProviderError> {
    serde_json::from_value(v).map_err(|e| ProviderError::Refused {
        code: "bad-answer".into(),
        message: format!("exec {} ({op}): unexpected answer: {e}", command[0]),
    })
}

/// At most `limit` bytes of `r`, and whether there was more (the rest is drained so the
/// program is not blocked writing).
async fn bounded(mut r: impl AsyncRead + Unpin, limit: u64) -> (Vec<u8>, bool) {
    let mut kept = Vec::new();
    let _ = (&mut r).take(limit).read_to_end(&mut kept).await;
    let mut rest = [0u8; 8192];
    let mut cut = false;
    while let Ok(n) = r.read(&mut rest).await {
        if n == 0 {
            break;
        }
        cut = true;
    }
    (kept, cut)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Vec<String> {
        vec!["sh".into(), "-c".into(), script.into()]
    }

    #[tokio::test]
    async fn answers_errors_and_bounds() {
        let ok = request(
            &sh("cat >/dev/null; echo '{\"records\": []}'"),
            &serde_json::json!({"op": "read"}),
            false,
        )
        .await
        .unwrap();
        assert_eq!(ok, serde_json::json!({"records": []}));

        let refused = sh("echo 'value gone' >&2; exit 1");
        let op = serde_json::json!({"op": "change"});
        let err = request(&refused, &op, true).await.unwrap_err();
        assert!(matches!(err, ProviderError::Conflict { .. }), "{err:?}");
        assert!(err.to_string().ends_with("exit 1: value gone"), "{err}");
        let err = request(&refused, &op, false).await.unwrap_err();
        assert!(matches!(err, ProviderError::Refused { .. }), "{err:?}");

        let huge = sh("head -c 5000000 /dev/zero");
        let err = request(&huge, &op, false).await.unwrap_err();
        assert_eq!(err.code(), "too-large", "{err}");

        let err = request(&sh("echo not json"), &op, false).await.unwrap_err();
        assert_eq!(err.code(), "bad-answer", "{err}");

        let missing = vec!["/nonexistent/mta-stsd-dns".to_owned()];
        let err = request(&missing, &op, false).await.unwrap_err();
        assert!(matches!(err, ProviderError::Config { .. }), "{err:?}");
    }

    /// A program that never answers is killed at [`TIMEOUT`] (time paused: no real wait).
    #[tokio::test(start_paused = true)]
    async fn hung_program_times_out() {
        let op = serde_json::json!({"op": "read"});
        let err = request(&sh("exec sleep 600"), &op, false)
            .await
            .unwrap_err();
        assert!(matches!(err, ProviderError::Transient { .. }), "{err:?}");
        assert_eq!(err.code(), "timeout");
    }
}
