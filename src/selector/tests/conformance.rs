//! A table of selectors against one message: which select it, which do not, which are
//! refused. Semantics: JMS 2.0 §3.8.1 (SQL three-valued logic, numeric promotion, unlike
//! types compare false, strings and booleans only with = and <>).

use fe2o3_amqp_types::messaging::{
    ApplicationProperties, Header, Message as AmqpMessage, MessageAnnotations, Properties,
};
use fe2o3_amqp_types::primitives::{Binary, SimpleValue, Symbol, Timestamp, Value};

use super::super::{Dialect, Selector};
use super::{body, message};
use crate::message::Message;

/// What a selector does with the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Selects it.
    T,
    /// Does not select it (false or unknown).
    F,
    /// Is refused at parse time.
    E,
}
use Expect::{E, F, T};

fn the_message() -> Message {
    message(
        AmqpMessage::builder()
            .header(Header {
                durable: true,
                priority: 7.into(),
                ttl: Some(60_000),
                first_acquirer: false,
                delivery_count: 0,
            })
            .message_annotations(
                MessageAnnotations::builder()
                    .insert(Symbol::from("x-opt-tag"), Value::String("blue".into()))
                    .insert(Symbol::from("x-opt-n"), Value::Long(5)),
            )
            .properties(
                Properties::builder()
                    .message_id(String::from("ID:m1"))
                    .user_id(Binary::from(b"alice".to_vec()))
                    .to("orders")
                    .subject("news")
                    .reply_to("replies")
                    .correlation_id(String::from("c-42"))
                    .content_type(Symbol::from("text/plain"))
                    .creation_time(Timestamp::from_milliseconds(1_700_000_000_000))
                    .absolute_expiry_time(Timestamp::from_milliseconds(1_800_000_000_000))
                    .group_id(String::from("g1"))
                    .group_sequence(u32::MAX)
                    .build(),
            )
            .application_properties(
                ApplicationProperties::builder()
                    .insert("colour", "green")
                    .insert("size", SimpleValue::Int(10))
                    .insert("weight", SimpleValue::Double(2.5.into()))
                    .insert("count", SimpleValue::Long(0))
                    .insert("flag", true)
                    .insert("name", "O'Brien")
                    .insert("big", SimpleValue::Long(i64::MAX))
                    .insert("small", SimpleValue::Byte(-3))
                    .insert("pct", "100%")
                    .insert("under", "a_b")
                    .insert("empty", "")
                    .insert("a.b", "x")
                    .insert("x-y", SimpleValue::Uint(1))
                    .insert("blob", SimpleValue::Binary(Binary::from(vec![1, 2]))),
            )
            .body(super::body())
            .build(),
    )
}

const JMS: &[(&str, Expect)] = &[
    // Comparisons.
    ("colour = 'green'", T),
    ("colour = 'red'", F),
    ("colour <> 'red'", T),
    ("colour <> 'green'", F),
    ("colour != 'red'", T),
    ("size = 10", T),
    ("size > 9", T),
    ("size >= 10", T),
    ("size < 10", F),
    ("size <= 10", T),
    ("size <> 10", F),
    ("size = 10.0", T),
    ("weight = 2.5", T),
    ("weight > 2", T),
    ("weight < 2.6", T),
    ("weight = 5 / 2", F),
    ("weight = 5.0 / 2", T),
    ("size = '10'", F),
    ("NOT (size = '10')", T),
    ("flag = TRUE", T),
    ("flag", T),
    ("NOT flag", F),
    ("flag = FALSE", F),
    ("flag <> FALSE", T),
    ("count = 0", T),
    ("small = -3", T),
    ("small < 0", T),
    ("-small = 3", T),
    ("big = 9223372036854775807", T),
    ("big + 1 < 0", T),
    ("big > 9.2E18", T),
    ("name = 'O''Brien'", T),
    ("empty = ''", T),
    ("a.b = 'x'", T),
    ("\"x-y\" = 1", T),
    ("blob = 1", F),
    ("blob IS NULL", F),
    // NULL and unknown.
    ("missing = 1", F),
    ("NOT (missing = 1)", F),
    ("missing = 1 OR TRUE", T),
    ("missing = 1 AND FALSE", F),
    ("NOT (missing = 1 AND FALSE)", T),
    ("NOT (missing = 1 OR FALSE)", F),
    ("NOT (missing = 1 OR TRUE)", F),
    ("missing IS NULL", T),
    ("missing IS NOT NULL", F),
    ("colour IS NULL", F),
    ("colour IS NOT NULL", T),
    ("NOT missing IS NULL", F),
    ("missing > 1 OR size = 10", T),
    ("missing + 1 = 2", F),
    ("NOT (missing + 1 = 2)", F),
    ("missing BETWEEN 1 AND 2", F),
    ("NOT (missing BETWEEN 1 AND 2)", F),
    ("missing NOT BETWEEN 1 AND 2", F),
    ("missing IN ('a')", F),
    ("missing NOT IN ('a')", F),
    ("missing LIKE 'a%'", F),
    ("missing NOT LIKE 'a%'", F),
    ("TRUE AND missing = 1", F),
    ("NOT (TRUE AND missing = 1)", F),
    ("FALSE OR missing = 1", F),
    ("(missing = 1) IS NULL", T),
    ("missing", F),
    ("NOT missing", F),
    ("colour", F),
    ("NOT colour", F),
    // Arithmetic and precedence.
    ("size + 2 * 3 = 16", T),
    ("(size + 2) * 3 = 36", T),
    ("size - 2 - 3 = 5", T),
    ("size / 4 = 2", T),
    ("size / 4.0 = 2.5", T),
    ("size / 0 = 1", F),
    ("NOT (size / 0 = 1)", F),
    ("weight / 0 > 1000", T),
    ("-size = -10", T),
    ("- -size = 10", T),
    ("+size = 10", T),
    ("size * -1 = -10", T),
    ("2 + 3 * 4 = 14", T),
    ("10 - 4 / 2 = 8", T),
    ("size * 1.5 = 15", T),
    ("colour + 1 = 2", F),
    ("NOT (colour + 1 = 2)", F),
    ("1 = 1", T),
    ("1 = 2", F),
    ("'a' = 'a'", T),
    ("TRUE = TRUE", T),
    ("TRUE <> FALSE", T),
    ("size = 10 AND colour = 'green'", T),
    ("size = 10 AND colour = 'red'", F),
    ("size = 11 OR colour = 'green'", T),
    ("size = 11 OR colour = 'red'", F),
    ("NOT size = 11", T),
    ("NOT NOT size = 10", T),
    ("size = 10 OR size = 11 AND colour = 'red'", T),
    ("(size = 10 OR size = 11) AND colour = 'red'", F),
    ("NOT size = 10 OR colour = 'green'", T),
    ("size = 10 AND (colour = 'red' OR flag)", T),
    // BETWEEN.
    ("size BETWEEN 5 AND 15", T),
    ("size BETWEEN 10 AND 10", T),
    ("size BETWEEN 11 AND 20", F),
    ("size NOT BETWEEN 11 AND 20", T),
    ("size NOT BETWEEN 5 AND 15", F),
    ("weight BETWEEN 2 AND 3", T),
    ("size BETWEEN 15 AND 5", F),
    ("size BETWEEN 5 AND size + 1", T),
    ("colour BETWEEN 1 AND 2", F),
    ("size BETWEEN 1 AND 20 AND colour = 'green'", T),
    ("weight BETWEEN 2.5 AND 2.5", T),
    // IN.
    ("colour IN ('red', 'green')", T),
    ("colour IN ('red', 'blue')", F),
    ("colour NOT IN ('red', 'blue')", T),
    ("colour NOT IN ('green')", F),
    ("colour IN ('GREEN')", F),
    ("name IN ('O''Brien')", T),
    ("size IN (10, 11)", T),
    ("size IN ('10')", F),
    ("size NOT IN ('10')", T),
    ("JMSType IN ('news', 'sport')", T),
    // LIKE.
    ("colour LIKE 'gr%'", T),
    ("colour LIKE 'gr__n'", T),
    ("colour LIKE 'gr_n'", F),
    ("colour LIKE '%ee%'", T),
    ("colour LIKE 'green%'", T),
    ("colour LIKE '%'", T),
    ("empty LIKE '%'", T),
    ("empty LIKE '_'", F),
    ("colour NOT LIKE 'r%'", T),
    ("colour NOT LIKE 'g%'", F),
    ("pct LIKE '100\\%' ESCAPE '\\'", T),
    ("pct LIKE '100!%' ESCAPE '!'", T),
    ("colour LIKE 'gre!%' ESCAPE '!'", F),
    ("under LIKE 'a\\_b' ESCAPE '\\'", T),
    ("under LIKE 'a\\_c' ESCAPE '\\'", F),
    ("under LIKE '_%' ESCAPE '_'", F),
    ("name LIKE 'O''%'", T),
    ("colour LIKE 'GREEN'", F),
    ("size LIKE '1%'", F),
    ("NOT (size LIKE '1%')", T),
    // JMS header names and Qpid's amqp.<field>, Artemis's m.<annotation>.
    ("JMSType = 'news'", T),
    ("JMSMessageID = 'ID:m1'", T),
    ("JMSCorrelationID = 'c-42'", T),
    ("JMSPriority = 7", T),
    ("JMSPriority > 4", T),
    ("JMSDeliveryMode = 'PERSISTENT'", T),
    ("JMSDeliveryMode = 'NON_PERSISTENT'", F),
    ("JMSTimestamp = 1700000000000", T),
    ("JMSExpiration = 1800000000000", T),
    ("JMSDestination = 'orders'", T),
    ("JMSReplyTo = 'replies'", T),
    ("JMSXGroupID = 'g1'", T),
    ("JMSXGroupSeq = -1", T),
    ("JMSXDeliveryCount = 3", T),
    ("JMSRedelivered = TRUE", T),
    ("JMSXUserID = 'alice'", T),
    ("amqp.subject = 'news'", T),
    ("amqp.correlation_id = 'c-42'", T),
    ("amqp.content_type = 'text/plain'", T),
    ("amqp.priority = 7", T),
    ("amqp.durable = TRUE", T),
    ("amqp.ttl = 60000", T),
    ("amqp.delivery_count = 2", T),
    ("amqp.group_sequence = 4294967295", T),
    ("\"m.x-opt-tag\" = 'blue'", T),
    ("\"m.x-opt-n\" > 4", T),
    ("m.missing IS NULL", T),
    ("jmstype = 'news'", F),
    ("h.priority = 7", F),
    // Keywords in any case.
    ("colour = 'green' and size = 10", T),
    ("colour not in ('red')", T),
    ("size between 1 and 20", T),
    ("missing is null", T),
    ("flag = true", T),
    ("Colour = 'green'", F),
    // Numeric literals.
    ("size = 0xA", T),
    ("size = 012", T),
    ("size = 10L", T),
    ("weight = 25E-1", T),
    ("weight = .25e1", T),
    ("size = 1e1", T),
    ("weight = 2.5F", T),
    ("big = -(-9223372036854775807)", T),
    ("-9223372036854775808 < 0", T),
    // Unlike types.
    ("flag = 1", F),
    ("colour = TRUE", F),
    ("NOT (colour = TRUE)", T),
    ("weight <> 'x'", F),
    ("colour < size", F),
    ("colour = colour", T),
    // Refused.
    ("", E),
    ("   ", E),
    ("colour >", E),
    ("colour = ", E),
    ("colour = 'green", E),
    ("size +", E),
    ("(size = 10", E),
    ("size = 10)", E),
    ("colour LIKE size", E),
    ("colour LIKE 'a' ESCAPE 'ab'", E),
    ("colour LIKE 'a' ESCAPE ''", E),
    ("size BETWEEN 1", E),
    ("size BETWEEN 1 OR 2", E),
    ("colour IN ()", E),
    ("colour IN ('a' 'b')", E),
    ("colour IN (colour)", E),
    ("'green'", E),
    ("10", E),
    ("size + 1", E),
    ("TRUE AND 1", E),
    ("NOT 'a'", E),
    ("'a' + 1", E),
    ("size = 'a' + 1", E),
    ("1 = 'a'", E),
    ("TRUE > FALSE", E),
    ("colour > 'a'", E),
    ("size = 99999999999999999999", E),
    ("\"unterminated = 1", E),
    ("size = 10 #", E),
    ("IS NULL", E),
    ("colour IS NOT 'x'", E),
    ("NULL = 1", E),
    ("amqp.nosuch = 1", E),
    ("12abc = 1", E),
    ("size = 1.2.3", E),
    ("size == 10", E),
    ("5 LIKE 'a'", E),
    ("'a' BETWEEN 1 AND 2", E),
    ("m. = 1", E),
];

const SQL: &[(&str, Expect)] = &[
    ("p.subject = 'news'", T),
    ("properties.subject = 'news'", T),
    ("p.message_id = 'ID:m1'", T),
    ("p.group_sequence = 4294967295", T),
    ("h.priority = 7", T),
    ("header.durable = TRUE", T),
    ("h.delivery_count = 2", T),
    ("h.first_acquirer = FALSE", T),
    ("a.colour = 'green'", T),
    ("application_properties.size = 10", T),
    ("colour = 'green'", T),
    ("\"m.x-opt-tag\" = 'blue'", T),
    ("\"message_annotations.x-opt-n\" = 5", T),
    ("JMSType = 'news'", F),
    ("p.nosuch = 1", E),
    ("h.nosuch = 1", E),
    ("d.x = 1", E),
];

fn check(table: &[(&str, Expect)], dialect: Dialect) -> usize {
    let message = the_message();
    let mut failures = Vec::new();
    for (text, expect) in table {
        let got = match Selector::parse(text, dialect) {
            Ok(selector) if selector.matches(&message, 2) => T,
            Ok(_) => F,
            Err(_) => E,
        };
        if got != *expect {
            failures.push(format!(
                "{text:?}: expected {expect:?}, got {got:?} ({:?})",
                Selector::parse(text, dialect).err()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    table.len()
}

#[test]
fn jms_selectors_conform() {
    assert!(check(JMS, Dialect::Jms) >= 150);
}

#[test]
fn sql_filter_identifiers_conform() {
    check(SQL, Dialect::Sql);
}

#[test]
fn the_seed_selector_selects_green() {
    let selector = Selector::parse("colour = 'green'", Dialect::Jms).unwrap();
    let with = |colour: &str| {
        message(
            AmqpMessage::builder()
                .application_properties(ApplicationProperties::builder().insert("colour", colour))
                .body(body())
                .build(),
        )
    };
    assert!(selector.matches(&with("green"), 0));
    assert!(!selector.matches(&with("red"), 0));
    let bare = message(AmqpMessage::builder().body(body()).build());
    assert!(
        !selector.matches(&bare, 0),
        "no colour: unknown, not selected"
    );
}

#[test]
fn errors_say_where() {
    let error = |text: &str| Selector::parse(text, Dialect::Jms).unwrap_err().to_string();
    assert_eq!(
        error("colour = "),
        "at column 10: expected an identifier, a literal or '(', found the end of the selector"
    );
    assert_eq!(
        error("colour = 'green"),
        "at column 10: unterminated string"
    );
    assert_eq!(
        error("size = 10 AND 'x'"),
        "at column 15: expected a condition, found a string"
    );
    assert_eq!(
        error("a = 1 OR amqp.nosuch = 2"),
        "at column 10: 'amqp.nosuch' names no header or properties field"
    );
    assert_eq!(
        error("colour > 'a'"),
        "at column 10: a string can only be compared with = and <>"
    );
    assert_eq!(
        error("size = 10 #"),
        "at column 11: unexpected character '#'"
    );
}

#[test]
fn deep_or_long_selectors_are_refused_not_a_crash() {
    let error = |text: &str| Selector::parse(text, Dialect::Jms).unwrap_err().to_string();
    let deep = format!("{}a = 1{}", "(".repeat(500), ")".repeat(500));
    assert!(error(&deep).contains("nested too deeply"));
    let nots = format!("{}a", "NOT ".repeat(500));
    assert!(error(&nots).contains("nested too deeply"));
    let signs = format!("a = {}1", "- ".repeat(500));
    assert!(error(&signs).contains("nested too deeply"));
    let long = vec!["a = 1"; 100_000].join(" AND ");
    assert!(error(&long).contains("too long"));
    // Within the limits, a long chain compiles and evaluates.
    let chain = vec!["size = 10"; 500].join(" AND ");
    let selector = Selector::parse(&chain, Dialect::Jms).unwrap();
    assert!(selector.matches(&the_message(), 0));
    let sum = format!("size = {}", vec!["1"; 1000].join(" + "));
    assert!(error(&sum).contains("more than 200 operations deep"));
    let sum = format!("size = {}", ["1"; 10].join(" + "));
    assert!(Selector::parse(&sum, Dialect::Jms)
        .unwrap()
        .matches(&the_message(), 0));
    let many = (0..900)
        .map(|i| format!("'v{i}'"))
        .collect::<Vec<_>>()
        .join(", ");
    assert!(
        Selector::parse(&format!("colour IN ({many}, 'green')"), Dialect::Jms)
            .unwrap()
            .matches(&the_message(), 0)
    );
}
