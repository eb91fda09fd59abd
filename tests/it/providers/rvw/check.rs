//! What `check` says of the new provider kinds.

use crate::harness::ConfigDir;
use crate::providers::battery;

/// `check` names each provider's kind and what it guarantees against a concurrent writer.
#[test]
fn check_prints_each_providers_guarantee() {
    let dir = ConfigDir::new();
    let key = dir.write(
        "k.key",
        crate::harness::tsig_key_file("mta-stsd", "hmac-sha256"),
    );
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let token = dir.write("api.token", "t\n");
    std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let mut providers = format!(
        "[providers.ns]\nkind = \"rfc2136\"\nserver = \"127.0.0.1:53\"\ntsig_key = \"{}\"\n",
        key.display()
    );
    for kind in ["cloudflare", "hetzner", "desec", "digitalocean", "gandi"] {
        providers.push_str(&format!(
            "[providers.{kind}-1]\nkind = \"{kind}\"\napi_token_file = \"{}\"\n",
            token.display()
        ));
    }
    providers.push_str(&format!(
        "[providers.ovh-1]\nkind = \"ovh\"\nregion = \"ovh-ca\"\napplication_key_file = \"{0}\"\n\
         application_secret_file = \"{0}\"\nconsumer_key_file = \"{0}\"\n",
        token.display()
    ));
    battery::config_with(
        &providers.replace("[providers.ns]", "[providers.p]"),
        &dir,
        "",
        86400,
    );
    let out = dir.check();
    out.assert_status(0);
    for line in [
        "provider cloudflare-1: cloudflare, read-verify-write",
        "provider hetzner-1: hetzner, read-verify-write",
        "provider desec-1: desec, read-verify-write",
        "provider digitalocean-1: digitalocean, read-verify-write",
        "provider gandi-1: gandi, read-verify-write",
        "provider ovh-1: ovh, read-verify-write",
        "provider p: rfc2136, compare-and-swap",
    ] {
        assert!(
            out.stdout.lines().any(|l| l == line),
            "no `{line}`\n{}",
            out.dump()
        );
    }
}

/// The new kinds' keys: secrets only from files or the environment, unknown keys and a bad OVH
/// region refused at their place.
#[test]
fn check_refuses_inline_secrets_unknown_keys_and_bad_regions() {
    let dir = ConfigDir::new();
    let providers = "[providers.p]\nkind = \"hetzner\"\napi_token = \"inline\"\n\
                     [providers.d]\nkind = \"desec\"\napi_token_env = \"HOME\"\nzone_id = \"1\"\n\
                     [providers.o]\nkind = \"ovh\"\nregion = \"ovh-xx\"\napplication_key_env = \"HOME\"\n\
                     application_secret_env = \"HOME\"\nconsumer_key_env = \"HOME\"\n";
    battery::config_with(providers, &dir, "", 86400);
    let out = dir.check();
    out.assert_status(1);
    for want in [
        "`api_token`: secrets are not allowed inline",
        "zone_id",
        "region `ovh-xx` is not one of ovh-eu, ovh-ca, ovh-us",
    ] {
        assert!(out.stderr.contains(want), "no `{want}`\n{}", out.dump());
    }
}
