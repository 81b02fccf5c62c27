//! Our headers ↔ AMQP field tables, and what RabbitMQ adds (delivery count, dead-letter
//! history) read back into [`Delivery`] fields.

use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};

use crate::{DEAD_REASON_HEADER, Headers};

/// Persistent, typed MessagePack, with our headers.
pub(crate) fn properties(headers: &Headers) -> BasicProperties {
    let mut table = FieldTable::default();
    for (key, value) in headers {
        table.insert(
            ShortString::from(key.as_str()),
            AMQPValue::LongString(LongString::from(value.as_str())),
        );
    }
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/msgpack".into())
        .with_headers(table)
}

fn as_text(value: &AMQPValue) -> Option<String> {
    match value {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

fn as_count(value: &AMQPValue) -> Option<u64> {
    match value {
        AMQPValue::ShortShortUInt(v) => Some(u64::from(*v)),
        AMQPValue::ShortUInt(v) => Some(u64::from(*v)),
        AMQPValue::LongUInt(v) => Some(u64::from(*v)),
        AMQPValue::ShortShortInt(v) => u64::try_from(*v).ok(),
        AMQPValue::ShortInt(v) => u64::try_from(*v).ok(),
        AMQPValue::LongInt(v) => u64::try_from(*v).ok(),
        AMQPValue::LongLongInt(v) => u64::try_from(*v).ok(),
        _ => None,
    }
}

/// Reads a delivery's headers: ours back as text, RabbitMQ's `x-delivery-count` as the count
/// of earlier deliveries, and the most recent `x-death` reason as the dead-letter reason (unless
/// we set one ourselves).
pub(crate) fn read(properties: &BasicProperties) -> (Headers, u32) {
    let mut headers = Headers::new();
    let mut earlier_deliveries = 0u64;
    let Some(table) = properties.headers() else {
        return (headers, 1);
    };
    for (key, value) in table.inner() {
        let key = key.as_str();
        match key {
            "x-delivery-count" => earlier_deliveries = as_count(value).unwrap_or(0),
            "x-death" => {
                // Most recent death first; `count` per (queue, reason) pair.
                if let AMQPValue::FieldArray(deaths) = value
                    && let Some(AMQPValue::FieldTable(latest)) = deaths.as_slice().first()
                    && let Some(reason) = latest.inner().get("reason").and_then(as_text)
                {
                    headers.entry(DEAD_REASON_HEADER.into()).or_insert(reason);
                }
            }
            // Broker bookkeeping (x-first-death-*, …) is not ours to pass on.
            k if k.starts_with("x-") && !k.starts_with("x-clip-") => {}
            _ => {
                if let Some(text) = as_text(value) {
                    headers.insert(key.to_owned(), text);
                }
            }
        }
    }
    // A reason we set ourselves (explicit dead letter) wins over RabbitMQ's.
    if let Some(AMQPValue::LongString(ours)) = table.inner().get(DEAD_REASON_HEADER) {
        headers.insert(
            DEAD_REASON_HEADER.into(),
            String::from_utf8_lossy(ours.as_bytes()).into_owned(),
        );
    }
    let count = u32::try_from(earlier_deliveries.saturating_add(1)).unwrap_or(u32::MAX);
    (headers, count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::types::FieldArray;

    #[test]
    fn our_headers_round_trip_and_broker_ones_are_read() {
        let mut ours = Headers::new();
        ours.insert("traceparent".into(), "00-abc".into());
        ours.insert("x-clip-retries".into(), "2".into());
        let mut props = properties(&ours);
        let mut table = props.headers().clone().unwrap_or_default();
        table.insert("x-delivery-count".into(), AMQPValue::LongLongInt(3));
        let mut death = FieldTable::default();
        death.insert(
            "reason".into(),
            AMQPValue::LongString("delivery_limit".into()),
        );
        table.insert(
            "x-death".into(),
            AMQPValue::FieldArray(FieldArray::from(vec![AMQPValue::FieldTable(death)])),
        );
        table.insert(
            "x-first-death-reason".into(),
            AMQPValue::LongString("expired".into()),
        );
        props = props.with_headers(table);
        let (headers, count) = read(&props);
        assert_eq!(count, 4);
        assert_eq!(
            headers.get("traceparent").map(String::as_str),
            Some("00-abc")
        );
        assert_eq!(headers.get("x-clip-retries").map(String::as_str), Some("2"));
        assert_eq!(
            headers.get(DEAD_REASON_HEADER).map(String::as_str),
            Some("delivery_limit")
        );
        assert!(!headers.contains_key("x-first-death-reason"));
    }
}
