//! What can go wrong at a provider, sorted by what the caller should do about it.

/// Retrying depends on the kind: a transient failure is retried with backoff, a conflict is
/// re-read and re-planned at once, the rest need the admin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// Timeouts, refused connections, SERVFAIL, HTTP 5xx and 429.
    #[error("{message}")]
    Transient { code: String, message: String },
    /// The server refused the request (REFUSED, NOTAUTH, NOTZONE, HTTP 4xx).
    #[error("{message}")]
    Refused { code: String, message: String },
    /// Credentials were rejected (TSIG BADSIG/BADKEY/BADTIME, HTTP 401/403).
    #[error("{message}")]
    Auth { code: String, message: String },
    /// The records changed between our read and our write (RFC 2136 prerequisite failed).
    #[error("{message}")]
    Conflict { code: String, message: String },
    /// Nothing the server can fix: no zone for a name, a bad setting.
    #[error("{message}")]
    Config { code: String, message: String },
}

impl ProviderError {
    /// A short label for metrics and `/status`: an rcode name, an HTTP status, `timeout`…
    pub fn code(&self) -> &str {
        match self {
            ProviderError::Transient { code, .. }
            | ProviderError::Refused { code, .. }
            | ProviderError::Auth { code, .. }
            | ProviderError::Conflict { code, .. }
            | ProviderError::Config { code, .. } => code,
        }
    }

    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ProviderError::Transient { .. } | ProviderError::Conflict { .. }
        )
    }

    pub fn transient(code: impl Into<String>, message: impl Into<String>) -> Self {
        ProviderError::Transient {
            code: code.into(),
            message: message.into(),
        }
    }

    /// A record type this provider does not write (TLSA at most of the HTTP APIs).
    pub fn cannot_publish(provider: &str, rtype: &str) -> Self {
        ProviderError::config(format!("provider {provider} cannot publish {rtype}"))
    }

    pub fn config(message: impl Into<String>) -> Self {
        ProviderError::Config {
            code: "config".into(),
            message: message.into(),
        }
    }
}
