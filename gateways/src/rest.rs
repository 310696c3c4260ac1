//! What both venues' REST order replies have in common: which request was answered, and
//! how HTTP status and transport failures map to order outcomes.

use kimp_core::event::{Event, OrderEvent, OrderEventKind};
use kimp_core::order::ClientId;
use kimp_core::units::Nanos;

/// Which order request a REST reply answers (the same body means different things).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrderRequestKind {
    /// New order.
    Place,
    /// Query by client id.
    Query,
    /// Cancel by client id.
    Cancel,
}

/// The event for a request whose outcome is unknown: timeout, connection lost after
/// sending, HTTP 5xx without a usable body. The order is queried, never re-sent.
pub fn unknown_outcome(cl_id: ClientId, now: Nanos) -> Event<'static> {
    Event::Order(OrderEvent { cl_id, exch_ts: now, kind: OrderEventKind::Unknown })
}

/// True for HTTP statuses after which a request may or may not have executed
/// (408 and every 5xx), per both venues' docs.
pub fn status_is_ambiguous(status: u16) -> bool {
    status == 408 || (500..600).contains(&status)
}

/// Which credential a venue refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Credential {
    /// The API (access) key: unknown, malformed, expired, or without the permission or the
    /// IP allow-listing the request needs.
    ApiKey,
    /// The secret: the request's signature does not verify.
    Secret,
}

/// A venue refused our credentials. Retrying cannot help, so start-up stops on it. Carries
/// the venue's code and message (never key material) and is `Copy`, like the codec errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuthError {
    /// The venue.
    pub venue: kimp_core::instrument::Venue,
    /// What the venue says is wrong.
    pub credential: Credential,
    /// HTTP status.
    pub status: u16,
    /// The venue's error code or name (`-1022`, `jwt_verification`).
    pub code: crate::codec::ErrText,
    /// The venue's message.
    pub message: crate::codec::ErrText,
}

impl std::fmt::Display for AuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let venue = match self.venue {
            kimp_core::instrument::Venue::Upbit => "Upbit",
            _ => "Binance",
        };
        let what = match self.credential {
            Credential::ApiKey => "the API key (or its IP allow-list or permissions)",
            Credential::Secret => "the request signature (wrong secret key)",
        };
        write!(f, "{venue} refused {what}: HTTP {} {}", self.status, self.code.as_str())?;
        if !self.message.as_str().is_empty() {
            write!(f, " \"{}\"", self.message.as_str())?;
        }
        Ok(())
    }
}

impl std::error::Error for AuthError {}

/// How a failed REST request (not an order) should be handled by whoever sent it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The credentials are wrong: stop, tell the operator which key.
    Auth(AuthError),
    /// Anything else: ask again later, no sooner than this says.
    Retry(crate::transport::Refusal),
}
