//! Audit records streamed as CSV or JSON: pages of a search are read one after another and
//! written as they come, so an export of any size holds one page in memory.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use openmvs_core::answer::AuditRecordView;
use openmvs_national::National;
use openmvs_national::audit::AuditSearch;
use tokio::sync::mpsc;

/// Records read per page while exporting.
const EXPORT_PAGE: usize = 1000;

/// The formats of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// RFC 4180 CSV with a header line; `request` and `result` as JSON text.
    Csv,
    /// One JSON array of the records as `GET /v1/audit/records` gives them.
    Json,
}

/// The CSV columns, in order.
pub const CSV_COLUMNS: [&str; 10] =
    ["seq", "at", "actor", "role", "location", "operation", "subject", "return_code", "request", "result"];

/// One CSV field, quoted when it holds a comma, a quote or a line break (RFC 4180).
fn field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_owned() }
}

/// One record as a CSV line (with its line end).
pub fn csv_line(r: &AuditRecordView) -> String {
    let cells = [
        r.seq.to_string(),
        r.at.to_rfc3339(),
        r.actor.clone(),
        r.role.clone(),
        r.location.clone(),
        r.operation.clone(),
        r.subject.clone(),
        r.return_code.clone(),
        r.request.clone(),
        r.result.clone(),
    ];
    let mut line = cells.iter().map(|c| field(c)).collect::<Vec<_>>().join(",");
    line.push_str("\r\n");
    line
}

fn json_item(r: &AuditRecordView) -> String {
    serde_json::to_string(&openmvs_wire::api::AuditRecordView::from(r)).unwrap_or_default()
}

/// A stored record as an authority reads it.
pub fn view(r: &openmvs_audit::Sealed) -> AuditRecordView {
    AuditRecordView {
        seq: r.seq,
        at: openmvs_core::time::Timestamp::from_unix_millis(r.entry.at_millis),
        actor: r.entry.actor.clone(),
        role: r.entry.role.clone(),
        location: r.entry.location.clone(),
        operation: r.entry.operation.clone(),
        subject: r.entry.subject.clone(),
        return_code: r.entry.return_code.clone(),
        request: r.entry.request.clone(),
        result: r.entry.result.clone(),
    }
}

/// The chunks a producer task sends, as a body stream.
struct Chunks(mpsc::Receiver<Bytes>);

impl futures_core::Stream for Chunks {
    type Item = Result<Bytes, std::io::Error>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx).map(|c| c.map(Ok))
    }
}

/// Streams every record of `search`, from its cursor to the end of the trail, as `format`.
/// Stops reading when the client goes away. A store failure midway ends the body early (a CSV
/// cut short, a JSON array left open), and is logged.
pub fn stream(national: Arc<National>, search: AuditSearch, format: Format) -> Response {
    let (tx, rx) = mpsc::channel::<Bytes>(4);
    tokio::spawn(async move {
        let head = match format {
            Format::Csv => format!("{}\r\n", CSV_COLUMNS.join(",")),
            Format::Json => "[".to_owned(),
        };
        if tx.send(Bytes::from(head)).await.is_err() {
            return;
        }
        let mut page_search = search.from(search.after, EXPORT_PAGE);
        let mut first = true;
        loop {
            let page = match national.audit_page_of(&page_search).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = ?e, "an audit export stopped: the store could not be read");
                    return;
                }
            };
            let mut chunk = String::new();
            for r in &page.records {
                match format {
                    Format::Csv => chunk.push_str(&csv_line(r)),
                    Format::Json => {
                        if !first {
                            chunk.push(',');
                        }
                        chunk.push('\n');
                        chunk.push_str(&json_item(r));
                        first = false;
                    }
                }
            }
            if !chunk.is_empty() && tx.send(Bytes::from(chunk)).await.is_err() {
                return;
            }
            match page.next_cursor.and_then(|c| c.parse::<u64>().ok()) {
                Some(after) => page_search = search.from(after, EXPORT_PAGE),
                None => break,
            }
        }
        if format == Format::Json {
            let _ = tx.send(Bytes::from_static(b"\n]\n")).await;
        }
    });
    let (content_type, name) = match format {
        Format::Csv => ("text/csv; charset=utf-8", "audit.csv"),
        Format::Json => ("application/json", "audit.json"),
    };
    (
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\"")),
        ],
        Body::from_stream(Chunks(rx)),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_when_they_must_be() {
        assert_eq!(field("plain"), "plain");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("{\"batch\":\"B1\"}"), "\"{\"\"batch\"\":\"\"B1\"\"}\"");
        assert_eq!(field("two\nlines"), "\"two\nlines\"");
    }
}
