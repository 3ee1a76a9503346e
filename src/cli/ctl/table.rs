//! The columns of the list verbs and the aligned text table they print.

use std::fmt::Write as _;

use clap::ValueEnum;
use serde_json::Value;

/// A column of `list-queues`: a field of the queue objects of `GET /api/queues`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "snake_case")]
pub(super) enum QueueColumn {
    Name,
    Durable,
    Dynamic,
    Ready,
    Unacked,
    Delayed,
    Consumers,
    Groups,
    Bytes,
    Enqueued,
    Delivered,
    Acked,
    Redelivered,
    Rejected,
    Expired,
    DeadLettered,
    TimedOut,
    Cancelled,
    Rewound,
    Retained,
    EnqueueRate,
    DeliverRate,
    AckRate,
}

/// A column of `list-connections`: a field of the objects of `GET /api/connections`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "snake_case")]
pub(super) enum ConnectionColumn {
    Id,
    Peer,
    User,
    ContainerId,
    ConnectedAt,
    Sessions,
    Links,
    BytesIn,
    BytesOut,
}

/// A column of `list-scheduled`: a field of the objects of `GET /api/queues/{name}/scheduled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "snake_case")]
pub(super) enum ScheduledColumn {
    Id,
    Due,
    Bytes,
}

/// A column of `list-exchanges`: a field of the objects of `GET /api/exchanges`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "snake_case")]
pub(super) enum ExchangeColumn {
    Name,
    Type,
    Durable,
    Unroutable,
    Bindings,
}

/// A column of `list-bindings`: a field of the objects of `GET /api/bindings`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "snake_case")]
pub(super) enum BindingColumn {
    Exchange,
    Queue,
    Key,
}

/// What a table needs of a column type.
pub(super) trait Column: ValueEnum + Copy {
    /// Whether the values are numbers (right-aligned).
    fn numeric(self) -> bool;

    /// The name, as on the command line and in the header row.
    fn name(self) -> String {
        self.to_possible_value()
            .map(|v| v.get_name().to_owned())
            .unwrap_or_default()
    }

    /// Where the value is in a row object: `x_rate` is `rates.x`, anything else a field.
    fn pointer(self) -> String {
        let name = self.name();
        match name.strip_suffix("_rate") {
            Some(rate) => format!("/rates/{rate}"),
            None => format!("/{name}"),
        }
    }
}

impl Column for QueueColumn {
    fn numeric(self) -> bool {
        !matches!(
            self,
            QueueColumn::Name | QueueColumn::Durable | QueueColumn::Dynamic
        )
    }
}

impl Column for ConnectionColumn {
    fn numeric(self) -> bool {
        matches!(
            self,
            ConnectionColumn::Id
                | ConnectionColumn::Sessions
                | ConnectionColumn::Links
                | ConnectionColumn::BytesIn
                | ConnectionColumn::BytesOut
        )
    }
}

impl Column for ScheduledColumn {
    fn numeric(self) -> bool {
        !matches!(self, ScheduledColumn::Due)
    }
}

impl Column for ExchangeColumn {
    fn numeric(self) -> bool {
        matches!(self, ExchangeColumn::Bindings)
    }
}

impl Column for BindingColumn {
    fn numeric(self) -> bool {
        false
    }
}

pub(super) const EXCHANGE_COLUMNS: [ExchangeColumn; 5] = [
    ExchangeColumn::Name,
    ExchangeColumn::Type,
    ExchangeColumn::Durable,
    ExchangeColumn::Unroutable,
    ExchangeColumn::Bindings,
];

pub(super) const BINDING_COLUMNS: [BindingColumn; 3] = [
    BindingColumn::Exchange,
    BindingColumn::Queue,
    BindingColumn::Key,
];

pub(super) const QUEUE_DEFAULT: [QueueColumn; 4] = [
    QueueColumn::Name,
    QueueColumn::Ready,
    QueueColumn::Unacked,
    QueueColumn::Consumers,
];

pub(super) const CONNECTION_DEFAULT: [ConnectionColumn; 6] = [
    ConnectionColumn::Id,
    ConnectionColumn::Peer,
    ConnectionColumn::User,
    ConnectionColumn::ContainerId,
    ConnectionColumn::Sessions,
    ConnectionColumn::Links,
];

pub(super) const SCHEDULED_COLUMNS: [ScheduledColumn; 3] = [
    ScheduledColumn::Id,
    ScheduledColumn::Due,
    ScheduledColumn::Bytes,
];

/// An aligned text table: a header row, one row per object, numbers right-aligned, two
/// spaces between columns and no trailing blanks.
pub(super) fn table<C: Column>(rows: &[Value], columns: &[C]) -> String {
    let header: Vec<String> = columns.iter().map(|c| c.name()).collect();
    let pointers: Vec<String> = columns.iter().map(|c| c.pointer()).collect();
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| pointers.iter().map(|p| cell(row.pointer(p))).collect())
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &cells {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for line in std::iter::once(&header).chain(&cells) {
        let mut text = String::new();
        for (i, (cell, column)) in line.iter().zip(columns).enumerate() {
            if i > 0 {
                text.push_str("  ");
            }
            let width = widths[i];
            if column.numeric() {
                let _ = write!(text, "{cell:>width$}");
            } else {
                let _ = write!(text, "{cell:<width$}");
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    }
    out
}

/// One table cell: `-` for null or absent, rates with one decimal.
fn cell(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => "-".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) if n.is_f64() => format!("{:.1}", n.as_f64().unwrap_or(0.0)),
        Some(other) => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_align_numbers_right_and_text_left() {
        let rows = [
            json!({"name": "orders", "ready": 10, "unacked": 2, "rates": {"ack": 1.26}}),
            json!({"name": "a", "ready": 1234, "unacked": 0, "rates": {"ack": 0.0}}),
        ];
        let columns = [
            QueueColumn::Name,
            QueueColumn::Ready,
            QueueColumn::Unacked,
            QueueColumn::AckRate,
            QueueColumn::Durable,
        ];
        assert_eq!(
            table(&rows, &columns),
            "name    ready  unacked  ack_rate  durable\n\
             orders     10        2       1.3  -\n\
             a        1234        0       0.0  -\n"
        );
        assert_eq!(table(&[], &columns[..2]), "name  ready\n");
    }

    #[test]
    fn scheduled_messages_show_id_due_and_bytes() {
        let rows = [json!({
            "id": 1042, "due": "2026-11-23T17:21:00.000Z", "due_ms": 1763918460000_i64,
            "bytes": 212
        })];
        assert_eq!(
            table(&rows, &SCHEDULED_COLUMNS),
            "  id  due                       bytes\n\
             1042  2026-11-23T17:21:00.000Z    212\n"
        );
    }
}
