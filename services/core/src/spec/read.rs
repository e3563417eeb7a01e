//! Reading records by a [`ResourceSpec`]: each record's fields go straight
//! into one typed buffer per column ([`Columns`]), with no JSON value tree
//! in between, and a record that does not fit is turned away whole, with
//! the column and the JSON pointer at fault, leaving the buffers as they
//! were.
//!
//! A record is read from its own JSON text (one element of the array, or
//! one line of JSON Lines): the caller splits a body into elements, so that
//! a bad record costs only itself and its text can be quarantined as sent.

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;
use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime};

use super::{Allowed, Bound, Check, ColumnSpec, ColumnType, Epoch, Format, ResourceSpec, tokens};
use crate::record::strip_position;

#[cfg(test)]
mod tests;

/// The values of one column, a slot per row read; `None` is SQL `NULL`.
#[derive(Debug, Clone, PartialEq)]
pub enum Buffer {
    BigInt(Vec<Option<i64>>),
    Integer(Vec<Option<i32>>),
    Double(Vec<Option<f64>>),
    /// Decimal text exactly as sent (a JSON number or a decimal string),
    /// so that no digit is lost on the way to `numeric`.
    Numeric(Vec<Option<String>>),
    Boolean(Vec<Option<bool>>),
    Text(Vec<Option<String>>),
    Timestamptz(Vec<Option<OffsetDateTime>>),
    Date(Vec<Option<Date>>),
    Uuid(Vec<Option<uuid::Uuid>>),
    /// JSON text, as sent.
    Jsonb(Vec<Option<String>>),
}

impl Buffer {
    fn new(kind: ColumnType) -> Self {
        match kind {
            ColumnType::BigInt => Self::BigInt(Vec::new()),
            ColumnType::Integer => Self::Integer(Vec::new()),
            ColumnType::DoublePrecision => Self::Double(Vec::new()),
            ColumnType::Numeric => Self::Numeric(Vec::new()),
            ColumnType::Boolean => Self::Boolean(Vec::new()),
            ColumnType::Text => Self::Text(Vec::new()),
            ColumnType::Timestamptz => Self::Timestamptz(Vec::new()),
            ColumnType::Date => Self::Date(Vec::new()),
            ColumnType::Uuid => Self::Uuid(Vec::new()),
            ColumnType::Jsonb => Self::Jsonb(Vec::new()),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Self::BigInt(v) => v.len(),
            Self::Integer(v) => v.len(),
            Self::Double(v) => v.len(),
            Self::Numeric(v) | Self::Text(v) | Self::Jsonb(v) => v.len(),
            Self::Boolean(v) => v.len(),
            Self::Timestamptz(v) => v.len(),
            Self::Date(v) => v.len(),
            Self::Uuid(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn truncate(&mut self, len: usize) {
        match self {
            Self::BigInt(v) => v.truncate(len),
            Self::Integer(v) => v.truncate(len),
            Self::Double(v) => v.truncate(len),
            Self::Numeric(v) | Self::Text(v) | Self::Jsonb(v) => v.truncate(len),
            Self::Boolean(v) => v.truncate(len),
            Self::Timestamptz(v) => v.truncate(len),
            Self::Date(v) => v.truncate(len),
            Self::Uuid(v) => v.truncate(len),
        }
    }

    /// The values of a `jsonb` buffer.
    fn json_mut(&mut self) -> Option<&mut Vec<Option<String>>> {
        match self {
            Self::Jsonb(v) => Some(v),
            _ => None,
        }
    }

    fn push_null(&mut self) {
        match self {
            Self::BigInt(v) => v.push(None),
            Self::Integer(v) => v.push(None),
            Self::Double(v) => v.push(None),
            Self::Numeric(v) | Self::Text(v) | Self::Jsonb(v) => v.push(None),
            Self::Boolean(v) => v.push(None),
            Self::Timestamptz(v) => v.push(None),
            Self::Date(v) => v.push(None),
            Self::Uuid(v) => v.push(None),
        }
    }
}

/// The rows read so far: a buffer per column of the spec, in its order,
/// and the fields no column names (`_extra`), when the spec keeps them.
#[derive(Debug, Clone)]
pub struct Columns {
    pub buffers: Vec<Buffer>,
    /// A JSON object's text per row; `None` when it had no other field.
    /// Always [`Buffer::Jsonb`].
    pub extra: Option<Buffer>,
    rows: usize,
    /// The spec's pointers, made once.
    tree: Tree,
    /// Which columns the record being read has set.
    set: Vec<bool>,
}

impl PartialEq for Columns {
    fn eq(&self, other: &Self) -> bool {
        (self.rows, &self.buffers, &self.extra) == (other.rows, &other.buffers, &other.extra)
    }
}

impl Columns {
    pub fn new(spec: &ResourceSpec) -> Self {
        Self {
            buffers: spec.columns.iter().map(|c| Buffer::new(c.kind)).collect(),
            extra: spec.keep_extra.then(|| Buffer::new(ColumnType::Jsonb)),
            rows: 0,
            tree: Tree::of(spec),
            set: vec![false; spec.columns.len()],
        }
    }

    /// Rows read.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Reads one record from its JSON text into a new row; on `Err`, the
    /// reason, naming the column and pointer at fault, and no row added.
    pub fn read(&mut self, spec: &ResourceSpec, text: &str) -> Result<(), String> {
        let mut deserializer = serde_json::Deserializer::from_str(text);
        self.read_from(spec, &mut deserializer)
            .and_then(|()| deserializer.end().map_err(|e| e.to_string()))
    }

    /// Reads one record from `deserializer`, as [`Columns::read`] does.
    pub fn read_from<'de, D: Deserializer<'de>>(
        &mut self,
        spec: &ResourceSpec,
        deserializer: D,
    ) -> Result<(), String> {
        let Self {
            buffers,
            extra,
            rows,
            tree,
            set,
        } = self;
        set.fill(false);
        let mut record = Record {
            spec,
            buffers,
            kept: extra.as_mut().and_then(Buffer::json_mut),
            set,
            extra: Vec::new(),
        };
        let read = NodeSeed {
            tree,
            node: 0,
            record: &mut record,
            top: true,
        }
        .deserialize(deserializer)
        .map_err(|e| strip_position(&e.to_string()).to_owned())
        .and_then(|()| record.finish());
        match read {
            Ok(()) => {
                *rows += 1;
                Ok(())
            }
            Err(reason) => {
                for buffer in buffers.iter_mut() {
                    buffer.truncate(*rows);
                }
                if let Some(extra) = extra {
                    extra.truncate(*rows);
                }
                Err(reason)
            }
        }
    }
}

#[derive(Debug)]
/// Reads one element of an array as a record into `columns`; a record
/// that does not fit fails the whole array (the fast path: the caller then
/// reads the array again, record by record).
pub struct RecordSeed<'c, 's> {
    pub columns: &'c mut Columns,
    pub spec: &'s ResourceSpec,
}

impl<'de> DeserializeSeed<'de> for RecordSeed<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        self.columns
            .read_from(self.spec, deserializer)
            .map_err(serde::de::Error::custom)
    }
}

/// One record being read: which columns it has set, and its other fields.
struct Record<'a> {
    spec: &'a ResourceSpec,
    buffers: &'a mut Vec<Buffer>,
    /// Where the fields no column names go, when the spec keeps them.
    kept: Option<&'a mut Vec<Option<String>>>,
    set: &'a mut Vec<bool>,
    extra: Vec<(String, Box<RawValue>)>,
}

impl Record<'_> {
    /// Fills what the record did not say: null where allowed.
    fn finish(&mut self) -> Result<(), String> {
        for (i, column) in self.spec.columns.iter().enumerate() {
            if self.set[i] {
                continue;
            }
            if !column.nullable {
                return Err(format!("{}: missing", at(column)));
            }
            self.buffers[i].push_null();
        }
        if let Some(kept) = &mut self.kept {
            kept.push((!self.extra.is_empty()).then(|| {
                let fields: Vec<String> = self
                    .extra
                    .iter()
                    .map(|(k, v)| format!("{}:{}", serde_json::Value::from(k.as_str()), v.get()))
                    .collect();
                format!("{{{}}}", fields.join(","))
            }));
        }
        Ok(())
    }
}

/// `column `c` (/from)`, as reasons name a column.
fn at(column: &ColumnSpec) -> String {
    format!(
        "column `{}` ({})",
        column.name,
        display_pointer(&column.from)
    )
}

fn display_pointer(pointer: &str) -> &str {
    if pointer.is_empty() {
        "the record"
    } else {
        pointer
    }
}

/// The columns' pointers as a tree of object keys: node 0 is the record.
#[derive(Debug, Clone)]
struct Tree {
    nodes: Vec<Node>,
}

#[derive(Debug, Clone, Default)]
struct Node {
    /// (key, child node) for keys that lead further down.
    branches: Vec<(String, usize)>,
    /// (key, column index) for keys that hold a column's value.
    leaves: Vec<(String, usize)>,
}

impl Tree {
    fn of(spec: &ResourceSpec) -> Self {
        let mut nodes = vec![Node::default()];
        for (index, column) in spec.columns.iter().enumerate() {
            let tokens = tokens(&column.from);
            // The spec refuses an empty pointer, and one inside another.
            let Some((last, path)) = tokens.split_last() else {
                continue;
            };
            let mut node = 0;
            for token in path {
                node = match nodes[node].branches.iter().find(|(k, _)| k == token) {
                    Some(&(_, child)) => child,
                    None => {
                        nodes.push(Node::default());
                        let child = nodes.len() - 1;
                        nodes[node].branches.push((token.clone(), child));
                        child
                    }
                };
            }
            nodes[node].leaves.push((last.clone(), index));
        }
        Self { nodes }
    }
}

/// An object's key, borrowed from the text unless it holds an escape.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_borrowed_str<E: serde::de::Error>(self, key: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(key))
    }

    fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(key.to_owned()))
    }
}

/// Reads the value at one node: an object whose keys lead to columns.
struct NodeSeed<'t, 'r, 'a> {
    tree: &'t Tree,
    node: usize,
    record: &'r mut Record<'a>,
    /// The record itself: its other fields are `_extra`.
    top: bool,
}

impl<'de> DeserializeSeed<'de> for NodeSeed<'_, '_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for NodeSeed<'_, '_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.top {
            "a JSON object (a record)"
        } else {
            "a JSON object"
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let node = &self.tree.nodes[self.node];
        while let Some(key) = map.next_key_seed(KeySeed)? {
            if let Some(&(_, index)) = node.leaves.iter().find(|(k, _)| *k == key) {
                // Decimals and JSON keep their text as sent; the rest is
                // read once, as what it is.
                let taken = if self.record.spec.columns[index].kind.keeps_text() {
                    let raw: &RawValue = map.next_value()?;
                    // Columns inside a jsonb column's value read it again.
                    if let Some(&(_, child)) = node.branches.iter().find(|(k, _)| *k == key) {
                        NodeSeed {
                            tree: self.tree,
                            node: child,
                            record: self.record,
                            top: false,
                        }
                        .deserialize(&mut serde_json::Deserializer::from_str(raw.get()))
                        .map_err(|e| serde::de::Error::custom(strip_position(&e.to_string())))?;
                    }
                    self.record.take(index, Some(raw.get()))
                } else {
                    let scalar = map.next_value_seed(ScalarSeed)?;
                    self.record.take_scalar(index, scalar)
                };
                taken.map_err(serde::de::Error::custom)?;
            } else if let Some(&(_, child)) = node.branches.iter().find(|(k, _)| *k == key) {
                map.next_value_seed(NodeSeed {
                    tree: self.tree,
                    node: child,
                    record: self.record,
                    top: false,
                })?;
            } else if self.top && self.record.kept.is_some() {
                let raw: Box<RawValue> = map.next_value()?;
                self.record.extra.push((key.into_owned(), raw));
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }

    /// `null` where an object was expected: what lies below is missing.
    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        if self.top {
            return Err(E::custom("the record is null, not a JSON object"));
        }
        Ok(())
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<(), E> {
        self.visit_unit()
    }
}

impl Record<'_> {
    /// Takes `raw` (a JSON value's text; `None` or `null`: no value) as the
    /// value of column `index`, checked.
    fn take(&mut self, index: usize, raw: Option<&str>) -> Result<(), String> {
        let column = &self.spec.columns[index];
        if self.set[index] {
            return Err(format!("{}: given twice", at(column)));
        }
        self.set[index] = true;
        let raw = raw.map(str::trim).filter(|r| *r != "null");
        let Some(raw) = raw else {
            if column.nullable {
                self.buffers[index].push_null();
                return Ok(());
            }
            return Err(format!("{}: null, but the column is required", at(column)));
        };
        value(column, raw, &mut self.buffers[index]).map_err(|why| format!("{}: {why}", at(column)))
    }
}

/// Parses `raw` (non-null JSON text) as a `numeric` or `jsonb` column's
/// value, checks it, and pushes it.
fn value(column: &ColumnSpec, raw: &str, buffer: &mut Buffer) -> Result<(), String> {
    let shown = || shorten(raw);
    match buffer {
        Buffer::Numeric(v) => {
            let text = match raw.as_bytes()[0] {
                b'"' => serde_json::from_str::<String>(raw).map_err(|e| e.to_string())?,
                _ => raw.to_owned(),
            };
            if !is_decimal(&text) {
                return Err(format!("{} is not a decimal number", shown()));
            }
            let approximate: f64 = text
                .parse()
                .map_err(|_| format!("{} is not a decimal number", shown()))?;
            check_number(column, Number::Fraction(approximate))?;
            let plain = plain_decimal(&text)
                .ok_or_else(|| format!("{} is out of the range of numeric", shown()))?;
            v.push(Some(plain));
        }
        Buffer::Jsonb(v) => {
            if raw.contains("\\u0000") {
                return Err("holds a NUL character (\\u0000), which jsonb cannot store".into());
            }
            v.push(Some(raw.to_owned()));
        }
        _ => unreachable!("only numeric and jsonb columns keep their text"),
    }
    Ok(())
}

/// A JSON value read once, as what it is; arrays and objects only as such.
#[derive(Debug)]
enum Scalar<'de> {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(Cow<'de, str>),
    Array,
    Object,
}

impl Scalar<'_> {
    /// As a reason shows it.
    fn shown(&self) -> String {
        match self {
            Self::Null => "null".into(),
            Self::Bool(b) => b.to_string(),
            Self::Int(n) => n.to_string(),
            Self::UInt(n) => n.to_string(),
            Self::Float(f) => serde_json::Value::from(*f).to_string(),
            Self::Str(s) => shorten_text(s),
            Self::Array => "an array".into(),
            Self::Object => "an object".into(),
        }
    }

    fn whole(&self) -> Option<i128> {
        match self {
            Self::Int(n) => Some((*n).into()),
            Self::UInt(n) => Some((*n).into()),
            _ => None,
        }
    }
}

struct ScalarSeed;

impl<'de> DeserializeSeed<'de> for ScalarSeed {
    type Value = Scalar<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ScalarSeed {
    type Value = Scalar<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Null)
    }

    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Null)
    }

    fn visit_bool<E>(self, b: bool) -> Result<Self::Value, E> {
        Ok(Scalar::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Self::Value, E> {
        Ok(Scalar::Int(n))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Self::Value, E> {
        Ok(Scalar::UInt(n))
    }

    fn visit_f64<E>(self, f: f64) -> Result<Self::Value, E> {
        Ok(Scalar::Float(f))
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Borrowed(s)))
    }

    fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(s.to_owned())))
    }

    fn visit_string<E>(self, s: String) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(s)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Scalar::Array)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Scalar::Object)
    }
}

impl Record<'_> {
    /// Takes `scalar` as the value of column `index` (not `numeric` or
    /// `jsonb`), checked.
    fn take_scalar(&mut self, index: usize, scalar: Scalar<'_>) -> Result<(), String> {
        let column = &self.spec.columns[index];
        if self.set[index] {
            return Err(format!("{}: given twice", at(column)));
        }
        self.set[index] = true;
        if matches!(scalar, Scalar::Null) {
            if column.nullable {
                self.buffers[index].push_null();
                return Ok(());
            }
            return Err(format!("{}: null, but the column is required", at(column)));
        }
        scalar_value(column, scalar, &mut self.buffers[index])
            .map_err(|why| format!("{}: {why}", at(column)))
    }
}

/// `scalar` (not null) as `column`'s type, checked, pushed.
fn scalar_value(
    column: &ColumnSpec,
    scalar: Scalar<'_>,
    buffer: &mut Buffer,
) -> Result<(), String> {
    let not = |what: &str| format!("{} is not {what}", scalar.shown());
    match buffer {
        Buffer::BigInt(v) => {
            let n = scalar
                .whole()
                .and_then(|n| i64::try_from(n).ok())
                .ok_or_else(|| not("a whole number that fits bigint"))?;
            check_number(column, Number::Whole(n))?;
            v.push(Some(n));
        }
        Buffer::Integer(v) => {
            let n = scalar
                .whole()
                .and_then(|n| i32::try_from(n).ok())
                .ok_or_else(|| not("a whole number that fits integer"))?;
            check_number(column, Number::Whole(n.into()))?;
            v.push(Some(n));
        }
        Buffer::Double(v) => {
            #[allow(clippy::cast_precision_loss)]
            let n = match scalar {
                Scalar::Int(n) => n as f64,
                Scalar::UInt(n) => n as f64,
                Scalar::Float(f) => f,
                _ => return Err(not("a number")),
            };
            check_number(column, Number::Fraction(n))?;
            v.push(Some(n));
        }
        Buffer::Boolean(v) => match scalar {
            Scalar::Bool(b) => v.push(Some(b)),
            _ => return Err(not("true or false")),
        },
        Buffer::Text(v) => {
            let Scalar::Str(text) = scalar else {
                return Err(not("a string"));
            };
            check_text(column, &text)?;
            v.push(Some(text.into_owned()));
        }
        Buffer::Timestamptz(v) => {
            let at = match (&scalar, column.epoch) {
                (Scalar::Str(text), _) => OffsetDateTime::parse(text, &Rfc3339)
                    .map_err(|e| format!("{} is not an RFC 3339 time: {e}", scalar.shown()))?,
                (Scalar::Int(_) | Scalar::UInt(_), Some(epoch)) => {
                    let n = scalar.whole().unwrap_or_default();
                    OffsetDateTime::from_unix_timestamp_nanos(n * epoch.nanos())
                        .map_err(|e| format!("{}: {e}", scalar.shown()))?
                }
                (_, Some(epoch)) => {
                    return Err(not(&format!("a whole number of {}", epoch.unit())));
                }
                (_, None) => {
                    return Err(format!(
                        "{} is not an RFC 3339 time (set `epoch` for numbers)",
                        scalar.shown()
                    ));
                }
            };
            v.push(Some(at));
        }
        Buffer::Date(v) => {
            let Scalar::Str(text) = &scalar else {
                return Err(not("a string"));
            };
            let date = Date::parse(
                text,
                time::macros::format_description!("[year]-[month]-[day]"),
            )
            .map_err(|e| format!("{} is not a date (YYYY-MM-DD): {e}", scalar.shown()))?;
            v.push(Some(date));
        }
        Buffer::Uuid(v) => {
            let Scalar::Str(text) = &scalar else {
                return Err(not("a string"));
            };
            let id = uuid::Uuid::parse_str(text)
                .map_err(|e| format!("{} is not a UUID: {e}", scalar.shown()))?;
            v.push(Some(id));
        }
        Buffer::Numeric(_) | Buffer::Jsonb(_) => {
            unreachable!("numeric and jsonb columns keep their text")
        }
    }
    Ok(())
}

/// A number as the checks compare it.
#[derive(Clone, Copy)]
enum Number {
    Whole(i64),
    Fraction(f64),
}

impl Number {
    fn below(self, bound: Bound) -> bool {
        match (self, bound) {
            (Self::Whole(n), Bound::Whole(b)) => n < b,
            (n, b) => n.as_f64() < bound_f64(b),
        }
    }

    fn above(self, bound: Bound) -> bool {
        match (self, bound) {
            (Self::Whole(n), Bound::Whole(b)) => n > b,
            (n, b) => n.as_f64() > bound_f64(b),
        }
    }

    #[allow(clippy::cast_precision_loss)]
    fn as_f64(self) -> f64 {
        match self {
            Self::Whole(n) => n as f64,
            Self::Fraction(f) => f,
        }
    }
}

#[allow(clippy::cast_precision_loss)]
fn bound_f64(bound: Bound) -> f64 {
    match bound {
        Bound::Whole(n) => n as f64,
        Bound::Fraction(f) => f,
    }
}

fn show_bound(bound: Bound) -> String {
    match bound {
        Bound::Whole(n) => n.to_string(),
        Bound::Fraction(f) => f.to_string(),
    }
}

fn check_number(column: &ColumnSpec, n: Number) -> Result<(), String> {
    for check in &column.checks {
        match *check {
            Check::Minimum(bound) if n.below(bound) => {
                return Err(format!(
                    "{} is less than the minimum {}",
                    show_number(n),
                    show_bound(bound)
                ));
            }
            Check::Maximum(bound) if n.above(bound) => {
                return Err(format!(
                    "{} is more than the maximum {}",
                    show_number(n),
                    show_bound(bound)
                ));
            }
            _ => {}
        }
    }
    if let Number::Whole(value) = n {
        check_allowed(column, Shown::Whole(value))?;
    }
    Ok(())
}

fn show_number(n: Number) -> String {
    match n {
        Number::Whole(n) => n.to_string(),
        Number::Fraction(f) => f.to_string(),
    }
}

fn check_text(column: &ColumnSpec, text: &str) -> Result<(), String> {
    if text.contains('\0') {
        return Err("holds a NUL character, which PostgreSQL text cannot store".into());
    }
    for check in &column.checks {
        match check {
            Check::MaxLength(max) => {
                let chars = text.chars().count() as u64;
                if chars > *max {
                    return Err(format!(
                        "is {chars} characters, more than the limit of {max}"
                    ));
                }
            }
            Check::MaxBytes(max) => {
                let bytes = text.len() as u64;
                if bytes > *max {
                    return Err(format!("is {bytes} bytes, more than the limit of {max}"));
                }
            }
            Check::Pattern(regex) if !regex.is_match(text) => {
                return Err(format!(
                    "{} does not match the pattern {:?}",
                    shorten_text(text),
                    regex.as_str()
                ));
            }
            Check::Format(Format::Email) if !email_address::EmailAddress::is_valid(text) => {
                return Err(format!("{} is not an e-mail address", shorten_text(text)));
            }
            Check::Format(Format::Uri) if url::Url::parse(text).is_err() => {
                return Err(format!("{} is not an absolute URI", shorten_text(text)));
            }
            _ => {}
        }
    }
    check_allowed(column, Shown::Text(text))
}

/// `one_of`, if the column has it.
fn check_allowed(column: &ColumnSpec, value: Shown<'_>) -> Result<(), String> {
    for check in &column.checks {
        let Check::OneOf(allowed) = check else {
            continue;
        };
        let found = allowed.iter().any(|a| match (a, value) {
            (Allowed::Whole(a), Shown::Whole(v)) => *a == v,
            (Allowed::Text(a), Shown::Text(v)) => a == v,
            _ => false,
        });
        if !found {
            let list: Vec<String> = allowed
                .iter()
                .map(|a| match a {
                    Allowed::Whole(n) => n.to_string(),
                    Allowed::Text(t) => format!("{t:?}"),
                })
                .collect();
            let shown = match value {
                Shown::Whole(n) => n.to_string(),
                Shown::Text(t) => shorten_text(t),
            };
            return Err(format!("{shown} is not one of {}", list.join(", ")));
        }
    }
    Ok(())
}

/// A value `one_of` compares, borrowed.
#[derive(Clone, Copy)]
enum Shown<'v> {
    Whole(i64),
    Text(&'v str),
}

/// A decimal as PostgreSQL's `numeric` reads one: optional sign, digits
/// with at most one point, an optional exponent.
fn is_decimal(text: &str) -> bool {
    let body = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(at) => (&body[..at], Some(&body[at + 1..])),
        None => (body, None),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        !e.is_empty() && digits(e)
    });
    !(whole.is_empty() && fraction.is_empty()) && digits(whole) && digits(fraction) && exponent_ok
}

/// Most digits `numeric` holds before the decimal point, and after it.
const NUMERIC_WHOLE_DIGITS: usize = 131_072;
const NUMERIC_FRACTION_DIGITS: usize = 16_383;

/// A decimal ([`is_decimal`]) without its exponent, as the writer encodes
/// it: `-1.50e2` is `-150` (the scale PostgreSQL gives it too, 0), `5e-3`
/// is `0.005`. `None` when `numeric` cannot hold it.
pub(crate) fn plain_decimal(text: &str) -> Option<String> {
    let (negative, body) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(at) => (&body[..at], body[at + 1..].parse::<i64>().ok()?),
        None => (body, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    // Where the point falls in `whole` + `fraction`, once shifted.
    let point = i64::try_from(whole.len()).ok()?.checked_add(exponent)?;
    let scale = i64::try_from(fraction.len())
        .ok()?
        .checked_sub(exponent)?
        .max(0);
    let leading_zeros = (whole.len() - whole.trim_start_matches('0').len()) as i64;
    if point - leading_zeros > NUMERIC_WHOLE_DIGITS as i64 || scale > NUMERIC_FRACTION_DIGITS as i64
    {
        return None;
    }
    let digits = format!("{whole}{fraction}");
    let (int, frac) = if point <= 0 {
        (
            String::new(),
            format!("{}{digits}", "0".repeat(point.unsigned_abs() as usize)),
        )
    } else if point as usize >= digits.len() {
        (
            format!("{digits}{}", "0".repeat(point as usize - digits.len())),
            String::new(),
        )
    } else {
        let (int, frac) = digits.split_at(point as usize);
        (int.to_owned(), frac.to_owned())
    };
    // The fraction to the scale, the whole part without leading zeros.
    let mut frac = frac;
    frac.truncate(scale as usize);
    while frac.len() < scale as usize {
        frac.push('0');
    }
    let int = int.trim_start_matches('0');
    let mut plain = String::with_capacity(int.len() + frac.len() + 3);
    if negative {
        plain.push('-');
    }
    plain.push_str(if int.is_empty() { "0" } else { int });
    if !frac.is_empty() {
        plain.push('.');
        plain.push_str(&frac);
    }
    Some(plain)
}

/// A value as a reason shows it: its JSON text, cut short.
fn shorten(raw: &str) -> String {
    const MAX: usize = 64;
    if raw.len() <= MAX {
        return raw.to_owned();
    }
    let mut end = MAX;
    while !raw.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &raw[..end])
}

fn shorten_text(text: &str) -> String {
    shorten(&serde_json::Value::from(text).to_string())
}

impl Epoch {
    fn unit(self) -> &'static str {
        match self {
            Self::Seconds => "seconds",
            Self::Milliseconds => "milliseconds",
        }
    }

    fn nanos(self) -> i128 {
        match self {
            Self::Seconds => 1_000_000_000,
            Self::Milliseconds => 1_000_000,
        }
    }
}
