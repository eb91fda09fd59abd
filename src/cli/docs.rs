//! `man` and `completions`: the man page (clap_mangen, plus sections on the config, files,
//! signals and exit status) and shell completions (clap_complete), both from the clap
//! definition so they never fall behind it. The Debian package ships their output.

use std::io::Write;

use clap::CommandFactory;
use clap_complete::Shell;

use super::Cli;

/// The man page, roff, for `man -l -` or `/usr/share/man/man8/mta-stsd.8`.
pub(super) fn man(out: &mut dyn Write) -> std::io::Result<()> {
    let man = clap_mangen::Man::new(Cli::command())
        .section("8")
        .manual("System Administration")
        .source(concat!("mta-stsd ", env!("CARGO_PKG_VERSION")));
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    out.write_all(DESCRIPTION.as_bytes())?;
    man.render_options_section(out)?;
    commands(out)?;
    out.write_all(SECTIONS.as_bytes())?;
    man.render_version_section(out)
}

/// The commands, on this page: clap_mangen's own section names a page per command
/// (`mta-stsd-check(8)`…), which is not installed.
fn commands(out: &mut dyn Write) -> std::io::Result<()> {
    let mut roff = String::from(".SH COMMANDS\n");
    for sub in Cli::command()
        .get_subcommands()
        .filter(|c| !c.is_hide_set())
    {
        let about = sub.get_about().map(|a| a.to_string()).unwrap_or_default();
        roff.push_str(&format!(
            ".TP\n\\fB{}\\fR\n{}\n",
            escape(sub.get_name()),
            escape(&about)
        ));
    }
    roff.push_str(
        ".PP\nEach command's options: \\fBmta\\-stsd\\fR \\fIcommand\\fR \\fB\\-\\-help\\fR.\n",
    );
    out.write_all(roff.as_bytes())
}

/// Text for roff: `-` as `\-` (a hyphen, not a dash), `\` doubled, no line starting with a dot.
fn escape(text: &str) -> String {
    let t = text.replace('\\', "\\\\").replace('-', "\\-");
    match t.strip_prefix('.') {
        Some(rest) => format!("\\&.{rest}"),
        None => t,
    }
}

/// Completions for `shell` (bash, zsh, fish). Generated into memory first: clap_complete
/// panics on a write error (a closed pipe, say), and this one is reported instead.
pub(super) fn completions(shell: Shell, out: &mut dyn Write) -> std::io::Result<()> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "mta-stsd", &mut script);
    if shell == Shell::Bash {
        // clap_complete 4.6.12 names the per-subcommand cases of a hyphenated binary
        // `mta__subcmd__stsd__subcmd__plan` but sets `cmd=mta__stsd__subcmd__plan`, so no
        // subcommand's options would complete; make the labels match.
        let fixed = String::from_utf8_lossy(&script).replace("mta__subcmd__stsd", "mta__stsd");
        script = fixed.into_bytes();
    }
    out.write_all(&script)
}

const DESCRIPTION: &str = r#".PP
\fBmta\-stsd\fR serves each mail domain's MTA\-STS policy (RFC 8461) at
\fIhttps://mta\-sts.<domain>/.well\-known/mta\-sts.txt\fR, derives the policy id from its
content, and keeps the DNS records (\fI_mta\-sts\fR TXT, \fImta\-sts\fR CNAME, \fI_smtp._tls\fR
TXT for TLS\-RPT, RFC 8460) in step through RFC 2136 dynamic updates or a DNS provider's API.
It reloads when the config changes or on SIGHUP and keeps serving the last good config when
a change is broken. Every command has \fB\-\-help\fR.
"#;

const SECTIONS: &str = r#".SH CONFIGURATION
The config is TOML; unknown keys are errors, reported as \fIfile:line:col\fR by
\fBmta\-stsd check\fR. Relative paths are relative to the file they are written in. Secrets
(TSIG keys, API tokens) come only from files or environment variables and are never logged.
.TP
\fB[server]\fR
\fBhttps\fR (listeners, default \fB["[::]:443"]\fR; \fB[]\fR behind a TLS\-terminating reverse
proxy), \fBhttp\fR (plain listeners), \fBadmin\fR (\fI/status\fR, \fI/metrics\fR,
\fI/healthz\fR; keep it on loopback), timeouts and limits.
.TP
\fB[tls]\fR
\fBcerts\fR = [{ cert = ..., key = ... }]: certificates chosen by their SANs;
\fBself_signed\fR = true for development.
.TP
\fB[policy]\fR
What every domain inherits: \fBmode\fR (enforce, testing, none), \fBmx\fR (host patterns,
\fB*.\fR only as the whole left\-most label), \fBmax_age\fR (seconds).
.TP
\fB[dns]\fR
\fBtarget\fR (the mta\-sts CNAME target; \fBfalse\fR for none), \fBttl\fR, \fBtlsrpt\fR
(rua URIs), \fBprovider\fR (the default provider; \fB"none"\fR: records set by hand).
.TP
\fB[providers.NAME]\fR
\fBkind\fR = "rfc2136" with \fBserver\fR and \fBtsig_key\fR (a key file from
\fBtsig\-keygen\fR, mode 0640, group mta\-stsd); "powerdns" with \fBurl\fR and
\fBapi_key_file\fR or \fBapi_key_env\fR; "cloudflare", "hetzner", "desec", "gandi" or
"digitalocean" with \fBapi_token_file\fR or \fBapi_token_env\fR; "ovh" with \fBregion\fR and
\fBapplication_key\fR, \fBapplication_secret\fR and \fBconsumer_key\fR, each \fB_file\fR or
\fB_env\fR (any of them with \fBbase_url\fR to point elsewhere). \fBcheck\fR prints what each guarantees against a concurrent writer.
.TP
\fB[domains."example.org"]\fR
One table per mail domain; any \fB[policy]\fR or \fB[dns]\fR key overrides the inherited one;
\fBzone\fR names its DNS zone when the provider should not look it up.
.TP
\fB[delegation]\fR
\fBzone\fR: the zone that holds delegated domains' TXT records at
\fI<domain>.<zone>.\fR, which each customer's \fI_mta\-sts\fR CNAME points at (RFC 8461
\(sc8.2); a domain (or \fB[dns]\fR) says \fBdelegated\fR = true.
.TP
\fB[tlsrpt]\fR
Receiving TLS reports (RFC 8460): \fBhosts\fR (HTTPS names that take reports),
\fBpath\fR (default \fI/v1/tlsrpt\fR), \fBstore\fR ("sqlite" in the state directory, the
default, or "postgres" with \fBurl_env\fR or \fBurl_file\fR), \fBretention\fR (default
"400d"), \fBmax_report_bytes\fR (default 4194304), \fBresolver\fR (for DKIM keys of mailed
reports; default the system's).
.TP
\fB[alerts]\fR
Where drift events go: \fBwebhook\fR (or \fBwebhook_env\fR, \fBwebhook_file\fR; an https://
URL, never logged) and/or \fBcommand\fR (run with the JSON event on stdin).
.TP
\fB[acme]\fR, \fB[drift]\fR, \fB[state]\fR
ACME certificates (RFC 8555), periodic drift checks, and the state directory; see the README.
.TP
\fBinclude\fR
= ["domains.d/*.toml"]: more files with \fB[providers.*]\fR and \fB[domains.*]\fR, watched too.
.SH FILES
.TP
\fI/etc/mta\-stsd/mta\-stsd.toml\fR
The config (or \fB\-\-config\fR, or \fB$MTA_STSD_CONFIG\fR).
.TP
\fI/var/lib/mta\-stsd\fR
State: ACME account and certificates, the development CA, id history, and the TLS report
store (\fItlsrpt.sqlite\fR), which \fBapt purge\fR keeps.
.SH SIGNALS
\fBSIGHUP\fR reloads the config; \fBSIGTERM\fR and \fBSIGINT\fR stop serving after in\-flight
requests (at most \fBshutdown_timeout\fR).
.SH EXIT STATUS
\fBcheck\fR: 0 valid, 1 invalid. \fBplan\fR: 0 nothing to do, 2 changes pending, 1 error.
\fBapply\fR: 0 done, 1 error. \fBdrift\fR: 0 OK, 1 warning, 2 critical, 3 could not check.
\fBstatus\fR: 0 fine, 1 warnings, 2 errors, 3 daemon not reachable.
.SH SEE ALSO
RFC 8461, RFC 8460, RFC 2136, \fBtsig\-keygen\fR(8), \fBsystemctl\fR(1).
"#;
