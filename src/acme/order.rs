//! One order (RFC 8555 §7.4) for one `mta-sts.<domain>` name: the challenge answered by our own
//! listeners, a fresh key and CSR, the chain downloaded.

use std::sync::Arc;
use std::time::Duration;

use instant_acme::{
    Account, AuthorizationStatus, ChallengeType, Identifier, NewOrder, OrderStatus, RetryPolicy,
};
use tracing::{debug, info};

use super::challenge::{Challenges, Published};
use super::AcmeError;
use crate::config::Challenge;

/// How long the server may take to validate, and then to issue.
const VALIDATION: RetryPolicy = RetryPolicy::new()
    .initial_delay(Duration::from_millis(250))
    .backoff(1.5)
    .timeout(Duration::from_secs(90));
const ISSUANCE: RetryPolicy = RetryPolicy::new()
    .initial_delay(Duration::from_millis(250))
    .backoff(1.5)
    .timeout(Duration::from_secs(60));

/// What an order yields: the chain (leaf first, then the intermediates) and its key, as PEM.
pub(super) struct Issued {
    pub chain_pem: String,
    pub key_pem: String,
}

/// Orders a certificate for `host`, answering `challenge` through `challenges`.
pub(super) async fn obtain(
    account: &Account,
    host: &str,
    challenge: Challenge,
    challenges: &Arc<Challenges>,
) -> Result<Issued, AcmeError> {
    let identifiers = [Identifier::Dns(host.to_owned())];
    let mut order = account
        .new_order(&NewOrder::new(&identifiers))
        .await
        .map_err(|e| AcmeError::from_acme("new order", e))?;
    debug!(url = order.url(), "order created");
    let kind = match challenge {
        Challenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
        Challenge::Http01 => ChallengeType::Http01,
    };

    // Held until the server has validated: dropping them withdraws the answers.
    let mut published: Vec<Published> = Vec::new();
    let mut authorizations = order.authorizations();
    while let Some(authz) = authorizations.next().await {
        let mut authz = authz.map_err(|e| AcmeError::from_acme("authorization", e))?;
        match authz.status {
            AuthorizationStatus::Pending => {}
            // Still valid from an earlier order (RFC 8555 §7.1.4): nothing to prove.
            AuthorizationStatus::Valid => continue,
            other => {
                return Err(AcmeError::Refused(format!(
                    "authorization for {host} is {other:?}"
                )))
            }
        }
        let mut ch = authz.challenge(kind.clone()).ok_or_else(|| {
            AcmeError::Refused(format!("the ACME server offers no {kind:?} challenge"))
        })?;
        let key_authorization = ch.key_authorization();
        published.push(match challenge {
            Challenge::TlsAlpn01 => challenges
                .publish_tls_alpn01(host, key_authorization.as_str())
                .await
                .map_err(AcmeError::Local)?,
            Challenge::Http01 => {
                challenges
                    .publish_http01(&ch.token, key_authorization.as_str())
                    .await
            }
        });
        // RFC 8555 §7.5.1: tell the server the answer is in place — in the store too by now,
        // for whichever replica the CA reaches.
        ch.set_ready()
            .await
            .map_err(|e| AcmeError::from_acme("challenge", e))?;
    }

    let status = order
        .poll_ready(&VALIDATION)
        .await
        .map_err(|e| AcmeError::from_acme("validation", e))?;
    drop(published);
    if status != OrderStatus::Ready {
        return Err(AcmeError::Refused(format!(
            "validation failed: {}",
            why_invalid(&mut order).await
        )));
    }

    // A fresh key per certificate; ECDSA P-256, which every ACME CA accepts.
    let key = rcgen::KeyPair::generate().map_err(|e| AcmeError::Local(e.to_string()))?;
    let mut params = rcgen::CertificateParams::new(vec![host.to_owned()])
        .map_err(|e| AcmeError::Local(e.to_string()))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = params
        .serialize_request(&key)
        .map_err(|e| AcmeError::Local(e.to_string()))?;
    order
        .finalize_csr(csr.der())
        .await
        .map_err(|e| AcmeError::from_acme("finalize", e))?;
    let chain_pem = order
        .poll_certificate(&ISSUANCE)
        .await
        .map_err(|e| AcmeError::from_acme("certificate download", e))?;
    info!("certificate issued");
    Ok(Issued {
        chain_pem,
        key_pem: key.serialize_pem(),
    })
}

/// The errors of the failed challenges, as the server reports them.
async fn why_invalid(order: &mut instant_acme::Order) -> String {
    let mut reasons = Vec::new();
    let mut authorizations = order.authorizations();
    while let Some(Ok(mut authz)) = authorizations.next().await {
        if authz.refresh().await.is_err() {
            continue;
        }
        for ch in &authz.challenges {
            if let Some(problem) = &ch.error {
                reasons.push(problem.to_string());
            }
        }
    }
    if reasons.is_empty() {
        "the order became invalid".to_owned()
    } else {
        reasons.join("; ")
    }
}
