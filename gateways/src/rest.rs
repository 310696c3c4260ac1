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
