//! `GET /v2/tickets`: a resource shaped as many real APIs shape theirs, not
//! as JSONPlaceholder does. The records sit in an envelope
//! (`{"data": [...], "page": 1, "total": 120}`), their key is a string
//! (`"TCK-00042"`), and they carry a time, a nullable time, a decimal as a
//! string, a nested object and a field no resources file is likely to name.
//! Pages of [`PAGE_SIZE`] are asked for with `?page=N`, and each names the
//! next in a `Link` header. Ticket [`BAD_TICKET`] has a priority out of any
//! sane range, for a resources file's check to quarantine.

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::Served;

/// Tickets served, with ids `TCK-00001` to `TCK-00120`.
pub const TICKETS: u32 = 120;
/// Tickets per page.
pub const PAGE_SIZE: u32 = 50;
/// The ticket whose `priority` is 9.
pub const BAD_TICKET: u32 = 77;

const STATUSES: [&str; 3] = ["open", "pending", "closed"];
const TIERS: [&str; 3] = ["free", "pro", "enterprise"];

/// Ticket `n` of revision `rev`: in each revision, every 5th ticket moves
/// on to the next status.
pub fn ticket(n: u32, rev: u32) -> Value {
    let moved = if n.is_multiple_of(5) { rev } else { 0 };
    let status = STATUSES[((n + moved) % 3) as usize];
    let opened = 1_764_576_000 + i64::from(n) * 3_600; // 2025-12-01T08:00:00Z on
    let at = |secs: i64| {
        time::OffsetDateTime::from_unix_timestamp(secs)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_else(|| unreachable!("a time in range"))
    };
    json!({
        "id": format!("TCK-{n:05}"),
        "subject": format!("Printer {n} says « PC LOAD LETTER » — 東京 office"),
        "status": status,
        "priority": if n == BAD_TICKET { 9 } else { n % 4 + 1 },
        "opened_at": at(opened),
        "closed_at": (status == "closed").then(|| at(opened + 7_200)),
        "amount": format!("{}.{:02}", n * 3, n % 100),
        "customer": {"id": n % 17 + 1, "tier": TIERS[(n % 3) as usize], "tags": ["vip", "emea"]},
        "channel": if n.is_multiple_of(2) { "email" } else { "chat" },
    })
}

#[derive(Debug, Deserialize)]
pub(crate) struct TicketsQuery {
    page: Option<u32>,
    rev: Option<u32>,
}

pub(crate) async fn tickets(
    State(served): State<Arc<Served>>,
    Query(q): Query<TicketsQuery>,
) -> Response {
    let rev = q
        .rev
        .unwrap_or_else(|| served.revision.load(Ordering::SeqCst));
    let page = q.page.unwrap_or(1).max(1);
    let first = (page - 1) * PAGE_SIZE + 1;
    let last = (page * PAGE_SIZE).min(TICKETS);
    let data: Vec<Value> = (first..=last).map(|n| ticket(n, rev)).collect();
    let body = json!({"data": data, "page": page, "total": TICKETS});
    let mut response = (
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response();
    if last < TICKETS {
        let rev = q.rev.map(|r| format!("&rev={r}")).unwrap_or_default();
        let next = format!("</v2/tickets?page={}{rev}>; rel=\"next\"", page + 1);
        response.headers_mut().insert(
            header::LINK,
            next.parse().unwrap_or_else(|_| unreachable!("ASCII")),
        );
    }
    response
}
